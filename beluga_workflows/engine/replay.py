"""Replay: a run's history indexed by operation, and the errors of code that no longer matches it.

Workflow code numbers its context calls 1, 2, 3... (operations); every event a call records
carries that number (``HistoryEvent.op``, 0 for workflow-level events). A replay looks each
operation up by number and compares what the code asks for now with what the first recorded event
says it asked for then: another kind or name is a ``NonDeterminismError``. A cancel recorded at an
operation matches any call (it was delivered to whatever the code called there).
"""

from __future__ import annotations

from collections import defaultdict

from .errors import NonDeterminismError
from .types import EventType, HistoryEvent

__all__ = ["OPERATION_KIND", "diverged_error", "index_by_op", "returned_early_error"]

# The kind of context call an operation's first event stands for.
OPERATION_KIND = {
    EventType.ACTIVITY_STARTED: "activity",
    EventType.ACTIVITY_COMPLETED: "activity",
    EventType.ACTIVITY_FAILED: "activity",
    EventType.SIGNAL_WAIT_STARTED: "signal",
    EventType.SIGNAL_RECEIVED: "signal",
    EventType.SIGNAL_TIMED_OUT: "signal",
    EventType.TIMER_STARTED: "timer",
    EventType.TIMER_FIRED: "timer",
    EventType.SIDE_EFFECT_RECORDED: "marker",
    EventType.CANCEL_REQUESTED: "cancel",
    EventType.EVENT_WAIT_STARTED: "event",
    EventType.EVENT_RECEIVED: "event",
    EventType.EVENT_TIMED_OUT: "event",
    EventType.EVENT_SENT: "send_event",
    EventType.ACTIVITY_SCHEDULED: "started activity",
    EventType.CHILD_WORKFLOW_STARTED: "child",
    EventType.CHILD_WORKFLOW_COMPLETED: "child",
    EventType.CHILD_WORKFLOW_FAILED: "child",
}


def index_by_op(history: list[HistoryEvent]) -> tuple[defaultdict[int, list[HistoryEvent]], int | None]:
    """Group ``history``'s operation events by operation number, in history order.

    Returns:
        The events of each operation (a ``defaultdict``: appending to a new operation needs no
        check), and the operation at which a cancel was delivered, or ``None``.
    """
    ops: defaultdict[int, list[HistoryEvent]] = defaultdict(list)
    cancel_op = None
    for event in history:
        if event.op:
            ops[event.op].append(event)
            if event.type is EventType.CANCEL_REQUESTED and cancel_op is None:
                cancel_op = event.op
    return ops, cancel_op


def diverged_error(workflow_type: str, workflow_id: str, op: int, kind: str, name: str,
                   first: HistoryEvent) -> NonDeterminismError:
    """The error of operation ``op`` calling ``kind name`` where the history recorded ``first``."""
    return NonDeterminismError(
        f"workflow {workflow_type!r} diverged from its history at step {op}: "
        f"the code now calls {kind} {name!r} but the history recorded "
        f"{OPERATION_KIND[first.type]} {first.name!r} (event {first.id}); the workflow code "
        f"changed while this run was open, or it is not deterministic",
        workflow_id=workflow_id,
    )


def returned_early_error(workflow_type: str, workflow_id: str, op: int,
                         last_op: int) -> NonDeterminismError:
    """The error of workflow code returning after operation ``op`` of a history of ``last_op``."""
    return NonDeterminismError(
        f"workflow {workflow_type!r} returned after step {op} but its history records "
        f"{last_op} steps; the workflow code changed while this run was open, or it is not "
        f"deterministic",
        workflow_id=workflow_id,
    )
