"""Runs that continue an ended run (API.md §11): ``resume`` and ``fork`` keep a prefix of its history.

A new run replays the events it keeps and goes live where they stop, so a recorded step is not
executed again. What is kept is whole operations only:

- ``resume`` keeps every operation that finished (an activity with its outcome, a fired timer, a
  received or timed-out signal, a marker, ...), except the step that failed the run (the one
  with the last final failure, when no step begun after it finished but the markers of
  ``gather`` / ``wait_any`` / ``done`` that saw it) and the steps begun after it, and, for a
  canceled run, the operation the cancel was
  delivered to and everything after it (the clean-up that ran then). Steps that were still going
  (an activity started in parallel, a timer, a signal wait) start again.
- ``fork`` keeps the events before ``from_event``, which must be the first event of an operation
  whose every event lies on one side of it.

The kept events are numbered 1, 2, ... again; the run's first event (``workflow_started``)
records where the run came from in its ``result``: ``{"resumed_from": run id}`` or
``{"forked_from": {"workflow_id", "run_id", "from_event"}}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import InvalidInputError, WorkflowError
from .types import EventType, HistoryEvent, WorkflowState, WorkflowStatus

__all__ = ["finished", "forked_history", "resumed_history"]

# The events that say an operation is over, by the kind of its first event.
_ENDS = {
    EventType.ACTIVITY_STARTED: {EventType.ACTIVITY_COMPLETED},
    EventType.ACTIVITY_SCHEDULED: {EventType.ACTIVITY_COMPLETED},
    EventType.TIMER_STARTED: {EventType.TIMER_FIRED},
    EventType.SIGNAL_WAIT_STARTED: {EventType.SIGNAL_RECEIVED, EventType.SIGNAL_TIMED_OUT},
    EventType.EVENT_WAIT_STARTED: {EventType.EVENT_RECEIVED, EventType.EVENT_TIMED_OUT},
    EventType.CHILD_WORKFLOW_STARTED: {EventType.CHILD_WORKFLOW_COMPLETED,
                                       EventType.CHILD_WORKFLOW_FAILED},
}
# Events recorded on their own, finished as they are.
_AT_ONCE = {EventType.SIDE_EFFECT_RECORDED, EventType.EVENT_SENT, EventType.SIGNAL_RECEIVED,
            EventType.SIGNAL_TIMED_OUT, EventType.ACTIVITY_COMPLETED}
_FAILURES = {EventType.CHILD_WORKFLOW_FAILED, EventType.SIGNAL_TIMED_OUT}
# The markers of waiting for parallel steps (parallel.py): they record what the code saw.
_WAIT_MARKERS = {"gather", "wait_any", "done"}


def conflict(message: str, workflow_id: str) -> InvalidInputError:
    """The error of resuming or forking a run that cannot be (``.code == "conflict"``)."""
    return InvalidInputError(message, workflow_id=workflow_id, code="conflict")


def finished(events: list[HistoryEvent]) -> bool:
    """Whether an operation with ``events`` is over (a final activity failure included)."""
    first = events[0]
    if first.type is EventType.CANCEL_REQUESTED:
        return False
    ends = _ENDS.get(first.type)
    if ends is None:
        return first.type in _AT_ONCE
    return any(e.type in ends or _final_failure(e) for e in events)


def _final_failure(event: HistoryEvent) -> bool:
    return (event.type is EventType.ACTIVITY_FAILED and event.fire_at is None) or \
        event.type in _FAILURES


def _failed_steps(history: list[HistoryEvent], ops: dict[int, list[HistoryEvent]]) -> set[int]:
    """The steps a resumed run of a failed run runs again: the step with the last final
    failure and every step begun after it (clean-up in an ``except``, ``gather``'s marker),
    unless a step begun after it finished but the markers of waiting for parallel steps (the
    code caught that failure and went on: the run failed of something else, nothing is cut).
    Parallel steps begun before the failure keep what they finished."""
    failures = [e for e in history if e.op and _final_failure(e)]
    if not failures:
        return set()
    failed = failures[-1]
    later = {op for op, events in ops.items() if events[0].id > failed.id}
    for op in later:
        first = ops[op][0]
        waited = (first.type is EventType.SIDE_EFFECT_RECORDED
                  and first.activity_name in _WAIT_MARKERS)
        if finished(ops[op]) and not waited:
            return set()
    return {failed.op} | later


def _by_op(history: list[HistoryEvent]) -> dict[int, list[HistoryEvent]]:
    ops: dict[int, list[HistoryEvent]] = {}
    for event in history:
        if event.op:
            ops.setdefault(event.op, []).append(event)
    return ops


def _renumbered(started: HistoryEvent, kept: list[HistoryEvent], origin: dict[str, Any]
                ) -> list[HistoryEvent]:
    first = dataclasses.replace(started, id=1, result=origin)
    return [first] + [dataclasses.replace(e, id=n) for n, e in enumerate(kept, start=2)]


def _first(state: WorkflowState) -> HistoryEvent:
    if not state.history or state.history[0].type is not EventType.WORKFLOW_STARTED:
        raise WorkflowError(f"the history of {state.workflow_id!r} does not start with "
                            f"workflow_started", workflow_id=state.workflow_id)
    return state.history[0]


def resumed_history(state: WorkflowState) -> list[HistoryEvent]:
    """The history a resumed run of the ended ``state`` starts with (see the module docstring).

    Raises:
        InvalidInputError: (``code == "conflict"``) the run is open or completed.
    """
    if state.is_open or state.status is WorkflowStatus.COMPLETED:
        raise conflict(f"workflow {state.workflow_id!r} is {state.status.value}: only a failed, "
                       f"canceled or timed-out run can be resumed", state.workflow_id)
    started = _first(state)
    ops = _by_op(state.history)
    again: set[int] = set()
    if state.status is WorkflowStatus.CANCELED:
        canceled = [op for op, events in ops.items()
                    if any(e.type is EventType.CANCEL_REQUESTED for e in events)]
        if canceled:
            again = {op for op in ops if op >= min(canceled)}
    elif state.status is WorkflowStatus.FAILED:
        again = _failed_steps(state.history, ops)
    keep = {op for op, events in ops.items() if op not in again and finished(events)}
    kept = [e for e in state.history if e.op in keep]
    return _renumbered(started, kept, {"resumed_from": state.run_id})


def forked_history(state: WorkflowState, from_event: Any) -> list[HistoryEvent]:
    """The history a fork of the ended ``state`` starts with: its events before ``from_event``.

    Raises:
        InvalidInputError: ``from_event`` is no event id of the history past its first, or not
            the first event of an operation (an operation has events on both sides of it);
            (``code == "conflict"``) the run is open.
    """
    if state.is_open:
        raise conflict(f"workflow {state.workflow_id!r} is still running: fork an ended run "
                       f"(or cancel it first)", state.workflow_id)
    started = _first(state)
    last = state.history[-1].id
    if isinstance(from_event, bool) or not isinstance(from_event, int) \
            or not 2 <= from_event <= last:
        raise InvalidInputError(
            f"from_event must be an event id of {state.workflow_id!r} from 2 to {last} (the "
            f"run is replayed up to, not including, that event), not {from_event!r}",
            workflow_id=state.workflow_id)
    for op, events in _by_op(state.history).items():
        if events[0].id < from_event <= events[-1].id:
            raise InvalidInputError(
                f"event {from_event} of {state.workflow_id!r} is inside step {op} (events "
                f"{events[0].id}-{events[-1].id}): fork from the first event of a step",
                workflow_id=state.workflow_id)
    ops = _by_op([e for e in state.history if e.id < from_event])
    canceled = [op for op, events in ops.items()
                if any(e.type is EventType.CANCEL_REQUESTED for e in events)]
    cut = min(canceled, default=None)
    keep = {op for op, events in ops.items() if (cut is None or op < cut) and finished(events)}
    kept = [e for e in state.history if e.op in keep]
    origin = {"forked_from": {"workflow_id": state.workflow_id, "run_id": state.run_id,
                              "from_event": from_event}}
    return _renumbered(started, kept, origin)
