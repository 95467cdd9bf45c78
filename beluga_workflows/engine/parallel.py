"""Parallel steps (API.md §10): started activities and child workflows, as futures.

``ctx.start_activity`` takes an operation number at the call and records ``activity_scheduled``
(the input and options) before the activity is handed to a worker (``dispatch_activity``: a Celery
task of its own, a thread of the ``local`` runtime). The worker runs the attempts
(``run_started_activity``) and delivers the outcome to the run's inbox, as a signal named
``activity_inbox(run_id, op)``, waking the run. The run records the outcome under the activity's
own operation when workflow code asks for it (``result``, ``gather``, ``wait_any``, ``done``),
consuming the inbox entry in the same write: so a replay finds every outcome at its operation,
whatever order the work finished in, and never runs a recorded activity again.

Both records are held for the activation's next write (``ActivationPort.record_soon``): a burst
of ``start_activity`` calls is one write, its activities handed out once it is durable, and
the outcomes a pass settles are recorded (their inbox entries consumed) in one write, the one
that records ``gather``'s marker or suspends the run. A worker reads only its operation and its
inbox entry (``store.load_operation``), and wakes the run only when neither the run's lease
holder (which cannot suspend past the outcome) nor a wake-up already on its way will take it
(``store.deliver_signal``): 1,000 outcomes cost a few activations, not 1,000.

``result`` / ``gather`` / ``wait_any`` / ``done`` take an operation of their own, recorded as a
marker once they return (``wait_any``'s marker names the winner, ``done``'s the answer), so a
replay returns what the live code saw even if, in the replay's world, another future is done.

A started activity whose outcome never comes (its message lost with a worker) is handed out
again when its ``activity_scheduled`` event's ``fire_at`` passes: the run's suspension wakes it
then. A child run (``ctx.start_child``) records its parent in its ``workflow_started`` event; its
end is delivered to the parent's inbox (``child_inbox``) as a wake-up, and the parent, which
also reads the child's state itself, records how it ended. A parent that ends cancels its open
children.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import ActivityError, ChildWorkflowError
from .types import EventType, HistoryEvent

if TYPE_CHECKING:
    from .context import WorkflowContext

__all__ = [
    "ActivityFuture",
    "ChildWorkflowHandle",
    "activity_inbox",
    "child_inbox",
    "outcome_events",
    "outcome_inbox",
    "parent_of",
]

ACTIVITY_INBOX = "beluga.activity/"
CHILD_INBOX = "beluga.child/"
_FINAL = (EventType.ACTIVITY_COMPLETED, EventType.CHILD_WORKFLOW_COMPLETED,
          EventType.CHILD_WORKFLOW_FAILED)


def activity_inbox(run_id: str, op: int) -> str:
    """The inbox name of started activity ``op``'s outcome in run ``run_id``."""
    return f"{ACTIVITY_INBOX}{run_id}/{op}"


def child_inbox(run_id: str, op: int) -> str:
    """The inbox name of the end of the child started by operation ``op`` of run ``run_id``."""
    return f"{CHILD_INBOX}{run_id}/{op}"


def outcome_inbox(name: str) -> bool:
    """Whether inbox entry ``name`` is the outcome of a started activity or a child, addressed
    to one run (a run that continues as new, or is resumed, leaves these behind: they belong
    to the run that started the work)."""
    return name.startswith((ACTIVITY_INBOX, CHILD_INBOX))


def final_event(events: list[HistoryEvent] | None) -> HistoryEvent | None:
    """The event that ends a started activity's or a child's operation, if recorded."""
    for event in events or ():
        if event.type in _FINAL or (event.type is EventType.ACTIVITY_FAILED and event.fire_at is None):
            return event
    return None


def outcome_events(name: str, payload: dict[str, Any]) -> list[HistoryEvent]:
    """The history events of a started activity's attempts, from the worker's ``payload``:
    ``activity_started`` + ``activity_failed`` per failed attempt (the last one final when the
    activity failed), then ``activity_started`` + ``activity_completed`` when it succeeded."""
    events = []
    for tried in payload.get("attempts", ()):
        started, ended = _time(tried["started"]), _time(tried["ended"])
        events.append(HistoryEvent(id=0, type=EventType.ACTIVITY_STARTED, timestamp=started,
                                   activity_name=name, attempt=tried["attempt"]))
        events.append(HistoryEvent(
            id=0, type=EventType.ACTIVITY_FAILED, timestamp=ended, activity_name=name,
            attempt=tried["attempt"], error=tried["error"],
            duration=(ended - started).total_seconds(),
            fire_at=_time(tried["retry_at"]) if tried.get("retry_at") else None))
    if "result" in payload:
        started, ended = _time(payload["started"]), _time(payload["ended"])
        events.append(HistoryEvent(id=0, type=EventType.ACTIVITY_STARTED, timestamp=started,
                                   activity_name=name, attempt=payload["attempt"]))
        events.append(HistoryEvent(id=0, type=EventType.ACTIVITY_COMPLETED, timestamp=ended,
                                   activity_name=name, attempt=payload["attempt"],
                                   result=payload["result"],
                                   duration=(ended - started).total_seconds()))
    return events


def parent_of(history: list[HistoryEvent]) -> dict[str, Any] | None:
    """The parent link a child run's ``workflow_started`` event holds: ``{"workflow_id",
    "run_id", "op"}``, or ``None`` for a run without a parent."""
    if not history or history[0].type is not EventType.WORKFLOW_STARTED:
        return None
    link = history[0].signal_payload
    return link if isinstance(link, dict) and "workflow_id" in link else None


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def later(now: datetime, seconds: float) -> datetime:
    """``now`` plus ``seconds``."""
    return now + timedelta(seconds=seconds)


class _Future:
    """What ``ActivityFuture`` and ``ChildWorkflowHandle`` share: the operation that started the
    work, and the context that waits for it."""

    kind = "work"

    def __init__(self, ctx: WorkflowContext, op: int, name: str) -> None:
        self._ctx = ctx
        self.op = op
        self.name = name

    def result(self) -> Any:
        """Wait (durably: the run suspends, holding no worker) until the work has ended, then
        return its result or raise its error."""
        return self._ctx.gather(self)[0]

    def done(self) -> bool:
        """Whether the work has ended, as recorded at this point of the run (a replay answers
        what the live run answered)."""
        return self._ctx._done(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} op={self.op}>"


class ActivityFuture(_Future):
    """A started activity (``ctx.start_activity``)."""

    kind = "activity"

    def outcome(self, events: list[HistoryEvent], workflow_id: str) -> tuple[bool, Any]:
        """(ok, result or error) from the operation's recorded final event."""
        last = final_event(events)
        if last.type is EventType.ACTIVITY_COMPLETED:
            return True, last.result
        cause = last.error or {}
        return False, ActivityError(
            f"activity {self.name!r} failed after {last.attempt} attempt(s): "
            f"{cause.get('type', 'Error')}: {cause.get('message', '')}",
            workflow_id=workflow_id, activity_name=self.name, attempts=last.attempt,
            cause=cause)


class ChildWorkflowHandle(_Future):
    """A started child workflow (``ctx.start_child``): a future, and a full run of its own.

    Attributes:
        id: the child's workflow id. run_id: its run id.
    """

    kind = "child"

    def __init__(self, ctx: WorkflowContext, op: int, name: str, child_id: str, run_id: str) -> None:
        super().__init__(ctx, op, name)
        self.id = child_id
        self.run_id = run_id

    def outcome(self, events: list[HistoryEvent], workflow_id: str) -> tuple[bool, Any]:
        """(ok, result or ``ChildWorkflowError``) from the operation's recorded final event."""
        last = final_event(events)
        if last.type is EventType.CHILD_WORKFLOW_COMPLETED:
            return True, last.result
        cause = last.error or {}
        status = cause.get("status", "failed")
        return False, ChildWorkflowError(
            f"child workflow {self.id!r} ({self.name}) {status.replace('_', ' ')}: "
            f"{cause.get('type', 'Error')}: {cause.get('message', '')}",
            workflow_id=workflow_id, child_id=self.id, status=status, cause=cause)


def run_started_activity(executor: Any, workflow_id: str, run_id: str, op: int, attempt: int,
                         attempts: list[dict[str, Any]]) -> str:
    """Run started activity ``op`` of run ``run_id`` (a worker handed it by ``dispatch_activity``)
    and deliver its outcome to the run's inbox, waking the run unless the store says a worker
    will see it anyway (``deliver_signal``).

    Nothing runs when the run has ended or been replaced, or the outcome is recorded or already
    delivered (a duplicate message). Attempts follow the activity's recorded retry policy and
    timeout: a backoff up to the executor's ``in_place_wait`` is slept here, a longer one hands
    the next attempt out again at its due time (``attempts`` carries the failed ones). Returns
    ``"completed"``, ``"failed"``, ``"retrying"`` or why it did nothing.
    """
    from .context import _call_activity  # the context runs activities the same way
    from .errors import (
        InvalidInputError,
        RetryAfterError,
        WorkflowNotFoundError,
        WorkflowNotRunningError,
        describe_exception,
    )
    from .hooks import stored_trace_context
    from .registry import find_activity
    from .retry import RetryPolicy
    from .serialization import to_json_value
    from .types import Signal

    store, clock, hooks = executor.store, executor.clock, executor.hooks
    inbox = activity_inbox(run_id, op)
    state = store.load_operation(workflow_id, op, inbox)  # not the whole run: only this op
    if state is None or state.run_id != run_id or not state.is_open:
        return "gone"
    events = state.history
    scheduled = [e for e in events if e.type is EventType.ACTIVITY_SCHEDULED]
    if not scheduled:
        return "unknown"
    if final_event(events) is not None:
        return "recorded"
    if state.signals:
        return "delivered"
    name, spec = scheduled[-1].activity_name, scheduled[-1].input or {}
    policy = RetryPolicy.from_dict(spec.get("retry") or {})
    tried = list(attempts)

    def deliver(payload: dict[str, Any]) -> None:
        now = clock.now()
        try:
            _, covered = store.deliver_signal(
                workflow_id, Signal(name=inbox, payload=payload, sent_at=now), now)
        except (WorkflowNotFoundError, WorkflowNotRunningError):
            return
        if not covered:  # else the run's holder, or a wake-up on its way, takes the outcome
            executor.schedule(workflow_id, queue=state.queue or "")

    try:
        definition = find_activity(name)
    except InvalidInputError as exc:
        now = clock.now().isoformat()
        tried.append({"attempt": attempt, "started": now, "ended": now,
                      "error": describe_exception(exc, ""), "retry_at": None})
        deliver({"attempts": tried})
        return "failed"
    # Its span continues the trace stored with the run (one more read, only when tracing).
    parent = stored_trace_context(store.history(workflow_id, limit=1)) if hooks.span else None
    attributes = {"workflow.id": workflow_id, "workflow.type": state.workflow_type,
                  "workflow.run_id": run_id, "activity.name": name}
    while True:
        started = clock.now()
        hooks.fire("on_activity_start", workflow_id, name, spec.get("input"))
        try:
            with hooks.trace("activity.run", attributes, parent):
                result = _call_activity(definition, spec.get("input"), spec.get("timeout"), name)
            result = to_json_value(result, f"result of activity {name!r}",
                                   max_bytes=executor.max_payload_bytes)
        except Exception as exc:  # noqa: BLE001 - an attempt's failure is recorded, not raised
            ended = clock.now()
            final = (attempt >= policy.max_attempts or not policy.is_retryable(exc)
                     or isinstance(exc, InvalidInputError))
            delay = None if final else (exc.delay if isinstance(exc, RetryAfterError)
                                        else policy.interval(attempt))
            retry_at = None if final else later(ended, delay)
            tried.append({"attempt": attempt, "started": started.isoformat(),
                          "ended": ended.isoformat(), "error": describe_exception(exc),
                          "retry_at": retry_at.isoformat() if retry_at else None})
            hooks.fire("on_activity_fail", workflow_id, name, exc)
            if final:
                deliver({"attempts": tried})
                return "failed"
            hooks.fire("on_retry", workflow_id, name, exc, attempt, delay)
            attempt += 1
            if delay <= executor.in_place_wait:
                clock.sleep(delay)
                continue
            executor.dispatch_activity(workflow_id, run_id, op, queue=spec.get("queue"),
                                       attempt=attempt, attempts=tried, at=retry_at)
            return "retrying"
        ended = clock.now()
        deliver({"attempts": tried, "attempt": attempt, "started": started.isoformat(),
                 "ended": ended.isoformat(), "result": result})
        hooks.fire("on_activity_complete", workflow_id, name, result)
        return "completed"
