"""The REST API's schedules: list, make, show, change, delete, pause, resume, trigger now.

- ``GET /schedules/?workflow_type=`` lists the schedules (by id, a page at a time), after syncing
  the ones declared in code; ``POST /schedules/`` makes one (201; 400 for a bad field, naming it:
  a bad cron expression, an unknown time zone...; 409 for a taken id).
- ``GET /schedules/{id}/`` shows one; ``PATCH`` changes its fields (400; 409 for a schedule
  declared in code, whose timetable is the code's); ``DELETE`` removes it (204; 409 while the
  code declares it).
- ``POST /schedules/{id}/pause/`` and ``.../resume/`` answer 200 with the schedule;
  ``POST /schedules/{id}/trigger/`` ``{"overlap"?}`` starts a run now (202 with what happened;
  409 when the schedule's overlap policy skipped it because its previous run is still open).

Every operation is ``beluga_workflows.schedules``'; reads check the read permission classes,
writes the write classes (with ``HasWorkflowModelPermission``: ``start_workflow``, as a schedule
starts runs). Schedule ids may hold ``#`` (``"<type>#2"``): percent-encode it (``%23``).
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from ..engine.errors import InvalidInputError
from ..engine.schedules import OVERLAP_POLICIES
from ..schedules import (
    InvalidScheduleError,
    create_schedule,
    delete_schedule,
    get_schedule,
    pause_schedule,
    resume_schedule,
    schedule_rows,
    schedule_state,
    sync_declared_schedules,
    trigger_schedule,
    update_schedule,
)
from .events import StrictSerializer
from .exceptions import BadRequest, Conflict
from .fields import AnyJSONField, FilterTextField, QueryIntegerField, TextField, WorkflowTypeField
from .serializers import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_POSITION, ErrorSerializer
from .views import URL_NAMESPACE, WorkflowAPIView, _page_links, _responses

__all__ = ["ScheduleDetailView", "ScheduleListView", "SchedulePauseView", "ScheduleResumeView",
           "ScheduleTriggerView"]

SCHEDULE_ID = OpenApiParameter(
    "schedule_id", {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^/]+$"},
    OpenApiParameter.PATH,
    description="The schedule's id (a declared one's is its workflow type, then `<type>#2`...: "
                "percent-encode `#`).",
    examples=[OpenApiExample("nightly", value="nightly-report")],
)
_CRON_HELP = ("A cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 "
              "with a leading seconds field, or `@hourly`, `@daily`, `@weekly`, `@monthly`, "
              "`@yearly`.")


# -- bodies and answers --------------------------------------------------------------------------

class JSONBooleanField(serializers.BooleanField):
    """A JSON ``true`` or ``false`` (not ``"yes"``, ``1`` or ``"true"``, which DRF would take)."""

    def to_internal_value(self, data: Any) -> bool:
        """The boolean as sent.

        Raises:
            ValidationError: the value is not a JSON boolean.
        """
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class ScheduleSerializer(serializers.Serializer):
    """A schedule: its timetable, the input of its runs, its state and its last tick."""

    id = serializers.CharField()
    workflow_type = serializers.CharField()
    cron = serializers.CharField(help_text=_CRON_HELP)
    timezone = serializers.CharField(help_text="The IANA time zone the expression reads.")
    input = AnyJSONField(help_text="The input of every run.")
    overlap = serializers.ChoiceField(choices=OVERLAP_POLICIES)
    catch_up = serializers.BooleanField()
    paused = serializers.BooleanField()
    declared = serializers.BooleanField(help_text="Declared in code with "
                                                  "`@workflow(schedule=...)`.")
    state = serializers.ChoiceField(choices=["active", "paused", "removed_from_code", "stopped"])
    next_fire_at = serializers.DateTimeField(allow_null=True)
    last_fire_at = serializers.DateTimeField(allow_null=True, help_text="The last tick handled.")
    last_workflow_id = serializers.CharField(allow_blank=True, help_text="The last run started.")
    last_outcome = serializers.CharField(allow_blank=True, help_text=(
        "What the last tick did: `started`, `skipped`, `missed` or `failed`."))
    last_note = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, row: Any) -> dict[str, Any]:
        """The row as JSON, with its ``state``."""
        fields = {name: getattr(row, name) for name in self.fields if name != "state"}
        return super().to_representation({**fields, "state": schedule_state(row)})


class SchedulePageSerializer(serializers.Serializer):
    """A page of schedules, by id."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ScheduleSerializer(many=True)


class ScheduleListQuerySerializer(serializers.Serializer):
    """The query string of ``GET /schedules/``."""

    workflow_type = FilterTextField(required=False, allow_blank=True,
                                    help_text="Only schedules of this workflow (empty: any).")
    limit = QueryIntegerField(required=False, default=DEFAULT_PAGE_SIZE, min_value=1,
                              max_value=MAX_PAGE_SIZE, help_text="How many per page.")
    offset = QueryIntegerField(required=False, default=0, min_value=0, max_value=MAX_POSITION,
                               help_text="How many to skip.")


class ScheduleChangeSerializer(StrictSerializer):
    """The body of ``PATCH /schedules/{id}/``: the fields to change."""

    workflow_type = WorkflowTypeField(required=False, help_text="The workflow it starts.")
    cron = TextField(required=False, min_length=1, max_length=255, help_text=_CRON_HELP)
    timezone = TextField(required=False, min_length=1, max_length=64,
                         help_text="An IANA time zone, e.g. `Europe/Berlin` (default `UTC`).")
    input = AnyJSONField(required=False, help_text="The input of every run (default `null`).")
    overlap = serializers.ChoiceField(required=False, choices=OVERLAP_POLICIES, help_text=(
        "A tick while the previous run is open: `skip` it (default), `allow` a second run, or "
        "`cancel_previous`."))
    catch_up = JSONBooleanField(required=False, help_text=(
        "Run the ticks missed while nothing fired late (default false: skip them)."))
    paused = JSONBooleanField(required=False)


class ScheduleCreateSerializer(ScheduleChangeSerializer):
    """The body of ``POST /schedules/``."""

    id = TextField(min_length=1, max_length=100, help_text=(
        "A slug (letters, digits, `_`, `-`); its runs get the ids `<id>@<tick>`."))
    workflow_type = WorkflowTypeField(help_text="The workflow it starts.")
    cron = TextField(min_length=1, max_length=255, help_text=_CRON_HELP)


class TriggerSerializer(StrictSerializer):
    """The body of ``POST /schedules/{id}/trigger/`` (may be empty)."""

    overlap = serializers.ChoiceField(required=False, choices=OVERLAP_POLICIES, help_text=(
        "Overrides the schedule's overlap policy for this run."))


class TriggeredSerializer(serializers.Serializer):
    """The run "trigger now" started."""

    schedule_id = serializers.CharField()
    outcome = serializers.CharField(help_text="`started`.")
    workflow_id = serializers.CharField(help_text="The run's id: `<schedule id>@now-<time>Z`.")
    note = serializers.CharField(allow_blank=True)


def _refused(exc: InvalidInputError) -> Exception:
    """The API error for a refused schedule operation: 400 naming the field, 409 a conflict."""
    if exc.code == "conflict":
        return Conflict(str(exc))
    if isinstance(exc, InvalidScheduleError):
        return BadRequest(f"{exc.field}: {exc}", errors={exc.field: [str(exc)]})
    return BadRequest(str(exc))


# -- views ---------------------------------------------------------------------------------------

class ScheduleAPIView(WorkflowAPIView):
    """A schedules view: writes need ``start_workflow`` (with ``HasWorkflowModelPermission``)."""

    workflow_action = "start"

    def schedule(self, schedule_id: str) -> Any:
        return get_schedule(self.executor.store, schedule_id)

    def location(self, schedule_id: str) -> str:
        return reverse(f"{URL_NAMESPACE}:schedule-detail", kwargs={"schedule_id": schedule_id})


class ScheduleListView(ScheduleAPIView):
    """``/schedules/``: list the schedules, make one."""

    @extend_schema(
        operation_id="schedules_list", summary="List schedules",
        description="Every schedule (the ones declared in code first synced in), by id.",
        parameters=[ScheduleListQuerySerializer],
        responses=_responses(r200=SchedulePageSerializer, r400=ErrorSerializer),
        tags=["schedules"],
    )
    def get(self, request: Request) -> Response:
        """A page of schedules; 400 for a bad query parameter."""
        params = self.parse(ScheduleListQuerySerializer, request.query_params)
        limit, offset = params["limit"], params["offset"]
        store = self.executor.store
        sync_declared_schedules(store, self.executor.clock.now())
        rows = schedule_rows(store)
        if params.get("workflow_type"):
            rows = rows.filter(workflow_type=params["workflow_type"])
        count = rows.count()
        next_url, previous_url = _page_links(request, offset, limit, count)
        return Response({"count": count, "next": next_url, "previous": previous_url,
                         "results": ScheduleSerializer(rows[offset:offset + limit], many=True).data})

    @extend_schema(
        operation_id="schedules_create", summary="Make a schedule",
        description="A schedule of a registered workflow, due at its next tick (unless paused).",
        request=ScheduleCreateSerializer,
        responses=_responses(r201=ScheduleSerializer, r400=ErrorSerializer, r409=ErrorSerializer),
        examples=[OpenApiExample("nightly", request_only=True, value={
            "id": "nightly-report", "workflow_type": "demo.hello", "cron": "30 2 * * *",
            "timezone": "Europe/Berlin", "input": "Ann"})],
        tags=["schedules"],
    )
    def post(self, request: Request) -> Response:
        """Make the schedule; 201 with it, 400 for a bad field, 409 for a taken id."""
        body = dict(self.parse(ScheduleCreateSerializer, request.data))
        schedule_id = body.pop("id")
        try:
            row = create_schedule(self.executor, schedule_id, **body)
        except InvalidInputError as exc:
            raise _refused(exc) from None
        return Response(ScheduleSerializer(row).data, status=status.HTTP_201_CREATED,
                        headers={"Location": self.location(row.pk)})


class ScheduleDetailView(ScheduleAPIView):
    """``/schedules/{id}/``: one schedule; change or delete it."""

    @extend_schema(
        operation_id="schedules_retrieve", summary="Show a schedule", parameters=[SCHEDULE_ID],
        responses=_responses(r200=ScheduleSerializer, r404=ErrorSerializer), tags=["schedules"],
    )
    def get(self, request: Request, schedule_id: str) -> Response:
        """The schedule; 404 when there is none."""
        return Response(ScheduleSerializer(self.schedule(schedule_id)).data)

    @extend_schema(
        operation_id="schedules_update", summary="Change a schedule", parameters=[SCHEDULE_ID],
        description="Change the given fields; a new timetable is due at its next tick from "
                    "now. A schedule declared in code may only be paused or resumed (409).",
        request=ScheduleChangeSerializer,
        responses=_responses(r200=ScheduleSerializer, r400=ErrorSerializer, r404=ErrorSerializer,
                             r409=ErrorSerializer),
        tags=["schedules"],
    )
    def patch(self, request: Request, schedule_id: str) -> Response:
        """Change the schedule; 200 with it, 400 for a bad field, 404, 409 (declared in code)."""
        self.schedule(schedule_id)
        body = self.parse(ScheduleChangeSerializer, request.data)
        try:
            row = update_schedule(self.executor, schedule_id, **body)
        except InvalidInputError as exc:
            raise _refused(exc) from None
        return Response(ScheduleSerializer(row).data)

    @extend_schema(
        operation_id="schedules_destroy", summary="Delete a schedule", parameters=[SCHEDULE_ID],
        description="Its runs stay. A schedule the code declares cannot be deleted (409).",
        responses=_responses(r204=OpenApiResponse(None, description="Deleted."),
                             r404=ErrorSerializer, r409=ErrorSerializer),
        tags=["schedules"],
    )
    def delete(self, request: Request, schedule_id: str) -> Response:
        """Delete the schedule; 204, 404, or 409 while the code declares it."""
        try:
            delete_schedule(self.executor, schedule_id)
        except InvalidInputError as exc:
            raise _refused(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class ScheduleStepView(ScheduleAPIView):
    """``/schedules/{id}/pause/``, ``.../resume/`` and ``.../trigger/`` (``step`` says which)."""

    step = ""

    def post(self, request: Request, schedule_id: str) -> Response:
        """Pause or resume (200 with the schedule), or trigger (202 with the run started; 409
        when its overlap policy skipped it); 404 for an unknown schedule."""
        if self.step == "trigger":
            body = self.parse(TriggerSerializer, request.data or {})
            try:
                fired = trigger_schedule(self.executor, schedule_id, overlap=body.get("overlap"))
            except InvalidInputError as exc:
                raise _refused(exc) from None
            if fired.outcome != "started":
                raise Conflict(f"schedule {schedule_id!r} was not triggered: {fired.note} "
                               f"(its overlap policy is \"skip\"; send \"overlap\": \"allow\" "
                               f"to start a run anyway)")
            return Response({"schedule_id": fired.schedule_id, "outcome": fired.outcome,
                             "workflow_id": fired.workflow_id, "note": fired.note},
                            status=status.HTTP_202_ACCEPTED)
        act = pause_schedule if self.step == "pause" else resume_schedule
        return Response(ScheduleSerializer(act(self.executor, schedule_id)).data)


def _step_view(step: str, summary: str, description: str, **schema: Any) -> type[ScheduleStepView]:
    def post(self: ScheduleStepView, request: Request, schedule_id: str) -> Response:
        return ScheduleStepView.post(self, request, schedule_id)

    post.__doc__ = ScheduleStepView.post.__doc__
    documented = extend_schema(operation_id=f"schedules_{step}", summary=summary,
                               description=description, parameters=[SCHEDULE_ID],
                               tags=["schedules"], **schema)(post)
    return type(f"Schedule{step.capitalize()}View", (ScheduleStepView,),
                {"step": step, "post": documented, "__doc__": f"``/schedules/{{id}}/{step}/``."})


SchedulePauseView = _step_view(
    "pause", "Pause a schedule", "No tick fires until it is resumed.", request=None,
    responses=_responses(r200=ScheduleSerializer, r404=ErrorSerializer))
ScheduleResumeView = _step_view(
    "resume", "Resume a schedule",
    "Due at its next tick from now; the ticks while it was paused are not run.", request=None,
    responses=_responses(r200=ScheduleSerializer, r404=ErrorSerializer))
ScheduleTriggerView = _step_view(
    "trigger", "Trigger a schedule now",
    "Start a run now (even if paused), without moving the timetable.", request=TriggerSerializer,
    responses=_responses(r202=TriggeredSerializer, r400=ErrorSerializer, r404=ErrorSerializer,
                         r409=ErrorSerializer))
