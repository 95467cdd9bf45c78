"""The admin's "Flow control" page: each workflow type's declared limits and the slots in use.

The declarations are the registry's (``get_workflow(name).flow``, API.md §9), read in words
("concurrency 2 per input.customer", "throttle 5 per 1s"); the slots in use and the runs waiting
for them, per key, are one ``store.flow_usage()``. A type whose slots are listed but that declares
no flow control any more (a deploy removed it) is shown too: the sweep frees those slots. Each
key's waiting runs link to the run list filtered by type and wait kind (the store filters runs
by wait kind, not by key). A store that does not enforce flow control gets a note instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse

from ..engine.errors import WorkflowError
from ..engine.registry import get_workflow, registered_workflows
from .base import WorkflowAdminBase

if TYPE_CHECKING:
    from ..engine.flow import FlowControl

__all__ = ["FlowControlPages", "declared_flow", "describe_limits", "period_text"]

# The units a period is written in, largest first: the first that divides it evenly is used.
_UNITS = (("w", 7 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0),
          ("ms", 0.001))


def period_text(seconds: float) -> str:
    """A period as its declaration would spell it: ``1h``, ``90s``, ``500ms`` (else ``1.25s``)."""
    for unit, size in _UNITS:
        count = seconds / size
        if unit == "ms" and seconds >= 1:
            break  # 1.25s, not 1250ms
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def _per(key: str | None) -> str:
    return f" per {key}" if key else ""


def describe_limits(flow: FlowControl) -> list[str]:
    """The declaration in words, one limit a line: ``concurrency 2 per input.customer``,
    ``throttle 5 per 1s``, ``rate limit 1 per 1h per event.data.user``, ``debounce 1s (timeout
    3s)``, ``batch 10 / 1s``, ``priority input.priority``."""
    lines = [f"concurrency {entry.limit}{_per(entry.key)}" for entry in flow.concurrency]
    if flow.throttle is not None:
        t = flow.throttle
        lines.append(f"throttle {t.limit} per {period_text(t.period)}{_per(t.key)}")
    if flow.rate_limit is not None:
        r = flow.rate_limit
        lines.append(f"rate limit {r.limit} per {period_text(r.period)}{_per(r.key)}")
    if flow.debounce is not None:
        d = flow.debounce
        timeout = f" (timeout {period_text(d.timeout)})" if d.timeout is not None else ""
        lines.append(f"debounce {period_text(d.period)}{_per(d.key)}{timeout}")
    if flow.batch is not None:
        b = flow.batch
        lines.append(f"batch {b.max_size} / {period_text(b.timeout)}{_per(b.key)}")
    if flow.priority is not None:
        lines.append(f"priority {flow.priority}")
    return lines


def declared_flow(workflow_type: str) -> FlowControl | None:
    """The flow control the registered workflow ``workflow_type`` declares (``None``: none, or no
    such workflow registered in this process)."""
    try:
        return get_workflow(workflow_type).flow
    except WorkflowError:
        return None


class FlowControlPages(WorkflowAdminBase):
    """The "Flow control" page of ``WorkflowStateAdmin``."""

    def flow_control_view(self, request: HttpRequest) -> HttpResponse:
        """Per workflow type with flow control: its limits in words and, per key, the slots in
        use (of the limit) and the runs waiting, linked to the run list.

        Raises:
            PermissionDenied: the user may not view runs (403).
        """
        self.require_view(request)
        declared = {name: flow for name in registered_workflows()
                    if (flow := declared_flow(name)) is not None}
        if not self.store.supports_flow_control:
            return self.render(request, "flow_control.html", "Flow control",
                               types=[self._type(name, flow, []) for name, flow in
                                      declared.items()],
                               unsupported=type(self.store).__name__)
        usage: dict[str, list[dict[str, Any]]] = {}
        for row in self.store.flow_usage():
            usage.setdefault(row["workflow_type"], []).append(row)
        types = [self._type(name, declared.get(name), usage.get(name, []))
                 for name in sorted(set(declared) | set(usage))]
        return self.render(request, "flow_control.html", "Flow control", types=types,
                           unsupported="")

    def waiting_runs_url(self, workflow_type: str) -> str:
        """The run list of ``workflow_type``'s runs waiting for a concurrency slot."""
        return f"{self.url('changelist')}?{urlencode({'type': workflow_type, 'wait': 'concurrency'})}"

    def _type(self, name: str, flow: FlowControl | None, usage: list[dict[str, Any]]
              ) -> dict[str, Any]:
        entries = flow.concurrency if flow is not None else ()
        slots = []
        for row in usage:
            index = row["scope"].partition(":")[2]
            entry = entries[int(index)] if index.isdigit() and int(index) < len(entries) else None
            slots.append({**row, "entry": (f"concurrency {entry.limit}{_per(entry.key)}"
                                           if entry is not None else row["scope"]),
                          "full": row["in_use"] >= row["limit"] > 0})
        return {"workflow_type": name, "declared": flow is not None,
                "limits": describe_limits(flow) if flow is not None else [],
                "concurrency": bool(entries), "slots": slots,
                "in_use": sum(s["in_use"] for s in slots),
                "waiting": sum(s["waiting"] for s in slots),
                "runs_url": f"{self.url('changelist')}?{urlencode({'type': name})}",
                "waiting_url": self.waiting_runs_url(name)}
