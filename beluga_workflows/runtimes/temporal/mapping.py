"""Translations between Temporal's vocabulary and ours: statuses, retry policies, failures, events.

Pure functions over the SDK's types, shared by the executor, the workflow and the store.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from temporalio.api.enums.v1 import EventType as TEvent
from temporalio.api.enums.v1 import WorkflowExecutionStatus as TStatus
from temporalio.common import RetryPolicy as TRetryPolicy

from ...engine.retry import RetryPolicy
from ...engine.types import EventType, HistoryEvent, WorkflowStatus

__all__ = [
    "STATUS_QUERY",
    "decode_payloads",
    "failure_error",
    "map_history",
    "status_of",
    "temporal_retry",
]

# Temporal's execution statuses as ours. Terminated (an operator's hand) counts as failed and
# continued-as-new (the run handed over to its next run) as completed, as on our engine.
_STATUSES = {
    TStatus.WORKFLOW_EXECUTION_STATUS_RUNNING: WorkflowStatus.RUNNING,
    TStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED: WorkflowStatus.COMPLETED,
    TStatus.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW: WorkflowStatus.COMPLETED,
    TStatus.WORKFLOW_EXECUTION_STATUS_FAILED: WorkflowStatus.FAILED,
    TStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED: WorkflowStatus.FAILED,
    TStatus.WORKFLOW_EXECUTION_STATUS_CANCELED: WorkflowStatus.CANCELED,
    TStatus.WORKFLOW_EXECUTION_STATUS_TIMED_OUT: WorkflowStatus.TIMED_OUT,
}

# Our statuses as visibility query clauses.
STATUS_QUERY = {
    WorkflowStatus.RUNNING: 'ExecutionStatus = "Running"',
    WorkflowStatus.COMPLETED: '(ExecutionStatus = "Completed" OR ExecutionStatus = "ContinuedAsNew")',
    WorkflowStatus.FAILED: '(ExecutionStatus = "Failed" OR ExecutionStatus = "Terminated")',
    WorkflowStatus.CANCELED: 'ExecutionStatus = "Canceled"',
    WorkflowStatus.TIMED_OUT: 'ExecutionStatus = "TimedOut"',
}

# How the SDK's message of a non-determinism failure begins.
NONDETERMINISM_CODE = "[TMPRL1100]"
# The names Temporal's SDK gives failures that our API spells otherwise.
_ERROR_TYPES = {"NondeterminismError": "NonDeterminismError"}


def status_of(status: Any) -> WorkflowStatus:
    """Our status for a Temporal ``WorkflowExecutionStatus`` (the SDK's enum or the proto int)."""
    return _STATUSES.get(int(status), WorkflowStatus.RUNNING)


def temporal_retry(policy: RetryPolicy) -> TRetryPolicy:
    """Temporal's retry policy for ours.

    Temporal adds no jitter to the backoff, needs a coefficient of at least 1 (ours below 1 is
    raised to 1) and stops retrying on an error whose *type name* is listed (no subclasses:
    ``non_retryable_errors`` given as classes are listed by their names).
    """
    names = [kind if isinstance(kind, str) else kind.__name__ for kind in policy.non_retryable_errors]
    return TRetryPolicy(
        initial_interval=timedelta(seconds=float(policy.initial_interval)),
        backoff_coefficient=max(float(policy.backoff_coefficient), 1.0),
        maximum_interval=timedelta(seconds=max(float(policy.max_interval),
                                               float(policy.initial_interval))),
        maximum_attempts=int(policy.max_attempts),
        non_retryable_error_types=[name.rpartition(".")[2] for name in names]
        + ["NonRetryableError", "NonRetriableError", "InvalidInputError"],
    )


def decode_payloads(payloads: Any) -> list[Any]:
    """The JSON values of a proto ``Payloads`` (or a list of ``Payload``), best effort."""
    items = getattr(payloads, "payloads", payloads) or []
    values = []
    for payload in items:
        data = payload.data
        try:
            values.append(json.loads(data) if data else None)
        except (ValueError, UnicodeDecodeError):
            values.append(data.decode("utf-8", "replace"))
    return values


def _first(payloads: Any) -> Any:
    values = decode_payloads(payloads)
    return values[0] if values else None


def failure_error(failure: Any) -> dict[str, Any]:
    """Our ``{"type", "message", "traceback"}`` for a proto ``Failure`` (its innermost
    application failure: the error raised in workflow or activity code)."""
    cause = failure
    while cause is not None and cause.HasField("cause") and not cause.HasField(
            "application_failure_info"):
        cause = cause.cause
    cause = cause or failure
    if cause.HasField("application_failure_info"):
        details = _first(cause.application_failure_info.details)
        if isinstance(details, dict) and "type" in details:
            return {key: details.get(key, "") for key in ("type", "message", "traceback")}
        kind = cause.application_failure_info.type or (
            # The SDK fails a run whose replay diverged with an untyped failure of this code.
            "NondeterminismError" if cause.message.startswith(NONDETERMINISM_CODE) else "Error")
    elif cause.HasField("timeout_failure_info"):
        kind = "TimeoutError"
    elif cause.HasField("canceled_failure_info"):
        kind = "CanceledError"
    else:
        kind = "Error"
    return {"type": _ERROR_TYPES.get(kind, kind), "message": cause.message,
            "traceback": cause.stack_trace}


def _aware(value: Any) -> datetime:
    dt = value.ToDatetime()
    return dt.replace(tzinfo=timezone.utc)


def _seconds(duration: Any) -> float | None:
    seconds = duration.ToTimedelta().total_seconds()
    return seconds or None


def map_history(events: list[Any]) -> list[HistoryEvent]:
    """Our history for a run's Temporal events, numbered from 1.

    Workflow task events are left out; an activity's scheduling, start and end (a local
    activity's marker: its scheduling and end), timers, signals, markers (side effects and
    patches), the cancel request and the run's start and
    end map to our event types. ``op`` ties the events of one activity or timer together (the
    Temporal event id that scheduled it). Temporal writes an activity's start only once it
    ended (with the last attempt's number): earlier failed attempts leave no event.
    """
    out: list[HistoryEvent] = []
    scheduled: dict[int, tuple[str, Any]] = {}
    timers: dict[int, float | None] = {}

    def add(type_: EventType, event: Any, **fields: Any) -> None:
        out.append(HistoryEvent(id=len(out) + 1, type=type_, timestamp=_aware(event.event_time),
                                **fields))

    for event in events:
        kind = event.event_type
        if kind == TEvent.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attrs = event.workflow_execution_started_event_attributes
            add(EventType.WORKFLOW_STARTED, event, activity_name=attrs.workflow_type.name,
                input=_first(attrs.input))
        elif kind == TEvent.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, _first(attrs.input))
            add(EventType.ACTIVITY_SCHEDULED, event, activity_name=attrs.activity_type.name,
                input=_first(attrs.input), op=event.event_id)
        elif kind == TEvent.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            name, data = scheduled.get(attrs.scheduled_event_id, ("", None))
            add(EventType.ACTIVITY_STARTED, event, activity_name=name, input=data,
                attempt=attrs.attempt, op=attrs.scheduled_event_id)
        elif kind == TEvent.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            name, _ = scheduled.get(attrs.scheduled_event_id, ("", None))
            add(EventType.ACTIVITY_COMPLETED, event, activity_name=name, result=_first(attrs.result),
                op=attrs.scheduled_event_id, duration=_since_started(out, attrs.scheduled_event_id,
                                                                     event))
        elif kind in (TEvent.EVENT_TYPE_ACTIVITY_TASK_FAILED,
                      TEvent.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
                      TEvent.EVENT_TYPE_ACTIVITY_TASK_CANCELED):
            attrs = (event.activity_task_failed_event_attributes
                     if kind == TEvent.EVENT_TYPE_ACTIVITY_TASK_FAILED
                     else event.activity_task_timed_out_event_attributes
                     if kind == TEvent.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT
                     else event.activity_task_canceled_event_attributes)
            name, _ = scheduled.get(attrs.scheduled_event_id, ("", None))
            error = (failure_error(attrs.failure) if attrs.HasField("failure") else
                     {"type": "CanceledError", "message": "activity canceled", "traceback": ""})
            add(EventType.ACTIVITY_FAILED, event, activity_name=name, error=error,
                op=attrs.scheduled_event_id)
        elif kind == TEvent.EVENT_TYPE_TIMER_STARTED:
            attrs = event.timer_started_event_attributes
            timers[event.event_id] = _seconds(attrs.start_to_fire_timeout)
            add(EventType.TIMER_STARTED, event, activity_name="sleep",
                duration=timers[event.event_id], op=event.event_id)
        elif kind == TEvent.EVENT_TYPE_TIMER_FIRED:
            attrs = event.timer_fired_event_attributes
            add(EventType.TIMER_FIRED, event, activity_name="sleep",
                duration=timers.get(attrs.started_event_id), op=attrs.started_event_id)
        elif kind == TEvent.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            add(EventType.SIGNAL_RECEIVED, event, signal_name=attrs.signal_name,
                signal_payload=_first(attrs.input))
        elif kind == TEvent.EVENT_TYPE_MARKER_RECORDED:
            attrs = event.marker_recorded_event_attributes
            if _marker_name(attrs) == f"patched:{WAIT_PATCH}":
                continue  # ours: it guards the wait memo (workflow.py), not the user's patch
            local = _local_activity(attrs)
            if local is not None:  # one of ours run as a local activity: its whole life at once
                name, attempt = local
                add(EventType.ACTIVITY_SCHEDULED, event, activity_name=name, op=event.event_id)
                if attrs.HasField("failure"):
                    add(EventType.ACTIVITY_FAILED, event, activity_name=name, attempt=attempt,
                        error=failure_error(attrs.failure), op=event.event_id)
                else:
                    add(EventType.ACTIVITY_COMPLETED, event, activity_name=name, attempt=attempt,
                        result=_marker_value(attrs), op=event.event_id)
                continue
            add(EventType.SIDE_EFFECT_RECORDED, event, activity_name=_marker_name(attrs),
                result=_marker_value(attrs))
        elif kind == TEvent.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            add(EventType.CANCEL_REQUESTED, event)
        else:
            _map_end(event, add)
    return out


def _map_end(event: Any, add: Any) -> None:
    kind = event.event_type
    if kind == TEvent.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        add(EventType.WORKFLOW_COMPLETED, event,
            result=_first(event.workflow_execution_completed_event_attributes.result))
    elif kind == TEvent.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        add(EventType.WORKFLOW_COMPLETED, event, result=None)
    elif kind == TEvent.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        add(EventType.WORKFLOW_FAILED, event,
            error=failure_error(event.workflow_execution_failed_event_attributes.failure))
    elif kind == TEvent.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        reason = event.workflow_execution_terminated_event_attributes.reason
        add(EventType.WORKFLOW_FAILED, event, error={
            "type": "Terminated", "message": reason or "terminated in Temporal", "traceback": ""})
    elif kind == TEvent.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        add(EventType.WORKFLOW_CANCELED, event)
    elif kind == TEvent.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        add(EventType.WORKFLOW_TIMED_OUT, event, error=TIMED_OUT_ERROR)


TIMED_OUT_ERROR = {"type": "WorkflowTimeoutError", "traceback": "",
                   "message": "the run passed its workflow timeout (Temporal's execution timeout)"}


def _since_started(out: list[HistoryEvent], op: int, event: Any) -> float | None:
    for earlier in reversed(out):
        if earlier.op == op and earlier.type is EventType.ACTIVITY_STARTED:
            return (_aware(event.event_time) - earlier.timestamp).total_seconds()
    return None


# The local activity that records a side effect's value (it returns its input).
RECORD_VALUE = "beluga.record_value"
# The patch that guards the run's wait memo (workflow.py): left out of the histories we show.
WAIT_PATCH = "beluga.wait-memo"


def _local_activity(attrs: Any) -> tuple[str, int] | None:
    """``(activity name, attempt)`` of a local activity marker of one of our activities (not
    ``side_effect``'s), else ``None``."""
    if attrs.marker_name != "core_local_activity" or "data" not in attrs.details:
        return None
    data = _first(attrs.details["data"])
    if not isinstance(data, dict) or data.get("activity_type") in (None, RECORD_VALUE):
        return None
    return str(data["activity_type"]), int(data.get("attempt") or 1)


def _marker_name(attrs: Any) -> str:
    if attrs.marker_name == "core_patch":
        key = next((k for k in ("patch-data", "patch_data") if k in attrs.details), None)
        patch = _first(attrs.details[key]) if key is not None else None
        return f"patched:{patch.get('id')}" if isinstance(patch, dict) else "patched"
    return "side_effect" if attrs.marker_name == "core_local_activity" else attrs.marker_name


def _marker_value(attrs: Any) -> Any:
    if "result" in attrs.details:
        return _first(attrs.details["result"])
    if attrs.marker_name == "core_patch":
        return True
    return None
