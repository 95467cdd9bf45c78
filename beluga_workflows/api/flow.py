"""The REST API's flow control: what each workflow type declares and the slots in use.

- ``GET /flow-control/`` lists every registered workflow type that declares flow control
  (API.md §9): its ``concurrency`` entries, ``throttle``, ``rate_limit``, ``debounce``,
  ``batch`` and ``priority`` as declared (periods in seconds), and its ``slots``: per
  concurrency entry and key, the slots open runs hold and the runs waiting for one (one
  ``store.flow_usage()``).
- ``GET /flow-control/{workflow_type}/`` is one such type; 404 for a type that is not registered
  or declares no flow control.

On a store that does not enforce flow control (``supports_flow_control`` false) the declarations
are listed with no slots and ``enforced`` is false. Both are reads: the read permission classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..engine.errors import WorkflowError
from ..engine.registry import get_workflow, registered_workflows
from .exceptions import NotFound
from .serializers import ErrorSerializer
from .views import WorkflowAPIView, _responses

if TYPE_CHECKING:
    from ..engine.flow import FlowControl

__all__ = ["FlowControlDetailView", "FlowControlListView", "flow_declaration"]

WORKFLOW_TYPE = OpenApiParameter(
    "workflow_type", {"type": "string", "minLength": 1, "maxLength": 255},
    OpenApiParameter.PATH,
    description="A registered workflow name that declares flow control; percent-encode what a "
                "URL path cannot hold.",
    examples=[OpenApiExample("orders", value="orders.fulfil")],
)


# -- responses -----------------------------------------------------------------------------------

class ConcurrencyLimitSerializer(serializers.Serializer):
    """At most ``limit`` open runs per value of ``key``."""

    limit = serializers.IntegerField()
    key = serializers.CharField(allow_null=True, help_text="An expression over `input` and "
                                                           "`event`; null: one key for all runs.")


class PeriodLimitSerializer(serializers.Serializer):
    """At most ``limit`` starts per ``period`` seconds per value of ``key`` (a throttle delays
    the others, a rate limit skips them)."""

    limit = serializers.IntegerField()
    period = serializers.FloatField(help_text="Seconds.")
    key = serializers.CharField(allow_null=True)


class DebounceSerializer(serializers.Serializer):
    """One run ``period`` seconds after the last event of a burst, at most ``timeout`` seconds
    after its first."""

    period = serializers.FloatField(help_text="Seconds.")
    key = serializers.CharField(allow_null=True)
    timeout = serializers.FloatField(allow_null=True, help_text="Seconds; null: no cap.")


class BatchSerializer(serializers.Serializer):
    """One run per up to ``max_size`` events, started when full or ``timeout`` seconds after the
    first."""

    max_size = serializers.IntegerField()
    timeout = serializers.FloatField(help_text="Seconds.")
    key = serializers.CharField(allow_null=True)


class SlotUsageSerializer(serializers.Serializer):
    """The slots of one concurrency entry and key: how many open runs hold one, and how many wait."""

    scope = serializers.CharField(help_text="`concurrency:0` or `concurrency:1`: which entry of "
                                            "`concurrency`.")
    key = serializers.CharField(help_text="The key's value (`null` for runs whose key is "
                                          "missing).")
    in_use = serializers.IntegerField()
    limit = serializers.IntegerField()
    waiting = serializers.IntegerField(help_text="Runs waiting for a slot (status `running`, "
                                                 "waiting for `concurrency`).")


class FlowControlSerializer(serializers.Serializer):
    """A workflow type's flow control as declared, and its slots in use."""

    workflow_type = serializers.CharField()
    concurrency = ConcurrencyLimitSerializer(many=True)
    throttle = PeriodLimitSerializer(allow_null=True)
    rate_limit = PeriodLimitSerializer(allow_null=True)
    debounce = DebounceSerializer(allow_null=True)
    batch = BatchSerializer(allow_null=True)
    priority = serializers.CharField(allow_null=True, help_text="The priority expression.")
    slots = SlotUsageSerializer(many=True, help_text="Per entry and key with slots in use or "
                                                     "runs waiting.")


class FlowControlListSerializer(serializers.Serializer):
    """Every registered workflow type that declares flow control, by name."""

    enforced = serializers.BooleanField(help_text="Whether the configured store enforces flow "
                                                  "control (false: no slots are listed).")
    results = FlowControlSerializer(many=True)


def flow_declaration(workflow_type: str, flow: FlowControl,
                     slots: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``FlowControl`` (and its type's ``flow_usage`` rows) as ``FlowControlSerializer`` data."""

    def fields(declared: Any, *names: str) -> dict[str, Any] | None:
        return None if declared is None else {name: getattr(declared, name) for name in names}

    return {
        "workflow_type": workflow_type,
        "concurrency": [{"limit": c.limit, "key": c.key} for c in flow.concurrency],
        "throttle": fields(flow.throttle, "limit", "period", "key"),
        "rate_limit": fields(flow.rate_limit, "limit", "period", "key"),
        "debounce": fields(flow.debounce, "period", "key", "timeout"),
        "batch": fields(flow.batch, "max_size", "timeout", "key"),
        "priority": flow.priority,
        "slots": slots,
    }


def _declared(workflow_type: str) -> FlowControl | None:
    try:
        return get_workflow(workflow_type).flow
    except WorkflowError:
        return None


class FlowControlAPIView(WorkflowAPIView):
    """What both flow-control views share: the slots of the configured store."""

    def usage(self, workflow_type: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """The store's ``flow_usage`` rows by workflow type (none when it does not enforce flow
        control)."""
        store = self.executor.store
        by_type: dict[str, list[dict[str, Any]]] = {}
        if not store.supports_flow_control:
            return by_type
        for row in store.flow_usage(workflow_type):
            by_type.setdefault(row["workflow_type"], []).append(
                {key: row[key] for key in ("scope", "key", "in_use", "limit", "waiting")})
        return by_type


class FlowControlListView(FlowControlAPIView):
    """``/flow-control/``: every workflow type's flow control."""

    operation = "flow_control_list"

    @extend_schema(
        operation_id="flow_control_list", summary="List flow control",
        description="Every registered workflow type that declares flow control (concurrency, "
                    "throttle, rate limit, debounce, batch, priority), by name, with the "
                    "concurrency slots its open runs hold and the runs waiting, per key.",
        responses=_responses(r200=FlowControlListSerializer), tags=["flow control"],
    )
    def get(self, request: Request) -> Response:
        """The declarations and slots of every type with flow control; 200."""
        usage = self.usage()
        results = [flow_declaration(name, flow, usage.get(name, []))
                   for name in registered_workflows() if (flow := _declared(name)) is not None]
        return Response(FlowControlListSerializer({
            "enforced": self.executor.store.supports_flow_control, "results": results}).data)


class FlowControlDetailView(FlowControlAPIView):
    """``/flow-control/{workflow_type}/``: one workflow type's flow control."""

    operation = "flow_control_detail"

    @extend_schema(
        operation_id="flow_control_retrieve", summary="A workflow type's flow control",
        description="What the workflow type declares (concurrency, throttle, rate limit, "
                    "debounce, batch, priority) and the concurrency slots its open runs hold "
                    "and the runs waiting, per key.",
        parameters=[WORKFLOW_TYPE],
        responses=_responses(r200=FlowControlSerializer, r404=OpenApiResponse(
            ErrorSerializer, description="No workflow type of that name is registered, or it "
                                         "declares no flow control.")),
        tags=["flow control"],
    )
    def get(self, request: Request, workflow_type: str) -> Response:
        """The type's declaration and slots; 404 when it is not registered or declares no flow
        control."""
        flow = _declared(workflow_type)
        if flow is None:
            registered = workflow_type in registered_workflows()
            raise NotFound(f"workflow {workflow_type!r} declares no flow control" if registered
                           else f"no workflow type {workflow_type!r} is registered")
        usage = self.usage(workflow_type).get(workflow_type, [])
        return Response(FlowControlSerializer(flow_declaration(workflow_type, flow, usage)).data)
