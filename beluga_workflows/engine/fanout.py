"""The fan-out of an accepted event, and why no event falls between its sender and a waiting run.

``executor.send_event`` stores the event (in the caller's transaction, if any) with the runs its
triggers start, decided then (``plan_triggers``), and asks the runtime to fan it out
(``schedule_fan_out``: a Celery task, a thread, or in the caller's thread in the time-skipping
test environment). ``fan_out`` then, safe to run any number of times, at any moment:

1. starts each planned run: its creation and its ``EventDelivery`` ledger row, unique on
   (event, workflow type), are one store write (``record_delivery``), so a second fan-out finds
   the row and starts nothing: one run per (event, workflow), whatever crashes or retries;
2. finds the event waits it may satisfy (``matching_waits``: by name and match key), keeps those
   that accept it (anchor, values, ``where``), bumps the ``wake_seq`` of the waiting runs
   (``wake_runs``, as a signal does) and schedules them; cancels the runs whose ``cancel_on``
   matches (as ``executor.cancel``; an ended run is left alone);
3. records what it did (``record_outcome``), which also marks the event fanned out.

A fan-out that dies is finished by the sweep (``executor.sweep`` / ``recover``): events not
fanned out ``fan_out_grace`` seconds after they were received are fanned out again (an outbox).

**The ordering argument.** Two writers, each writing then reading:

- the waiting run (``WorkflowContext.wait_for_event``) writes its ``EventWait`` in the same store
  write that records the wait (``event_wait_started``), and only after that write has committed
  reads the events received since its anchor (``find_events``); if none matches it suspends,
  fenced on ``wake_seq`` (a suspension refused because ``wake_seq`` moved replays at once);
- the sender commits the event, and the fan-out reads the waits (``matching_waits``) only after
  that commit, then bumps ``wake_seq``.

Suppose the run's read missed the event: the event was not committed when that read began, so it
committed after the wait had committed; the fan-out's read began after the event's commit, hence
after the wait's, and finds the wait: the run is woken (its suspension is refused or it is
scheduled again) and reads again, now seeing the event. Whichever side reads second sees the
other's write. Nothing here orders by an id sequence: an event's place is its ``received_at``
(compared with the wait's anchor, a time), and which events a run consumed is in its history.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import (
    InvalidInputError,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from .events import Event, EventRecord, EventWait, empty_outcome, trigger_workflow_id
from .registry import WorkflowDefinition, get_workflow, triggered_by

if TYPE_CHECKING:
    from .executor import WorkflowExecutor
    from .types import WorkflowState

__all__ = ["cancel_waits", "fan_out", "plan_triggers"]

logger = logging.getLogger("beluga_workflows.events")


def plan_triggers(event: Event) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The runs ``event``'s triggers start (``[{"workflow_type", "workflow_id"}]``) and the
    workflows it skips (``[{"workflow_type", "reason"}]``: every trigger's ``where`` false)."""
    planned, skipped = [], []
    for definition in triggered_by(event.name):
        triggers = [t for t in definition.triggers if t.event == event.name]
        if any(t.accepts(event) for t in triggers):
            planned.append({"workflow_type": definition.name,
                            "workflow_id": trigger_workflow_id(definition.name, event.id)})
        else:
            wheres = " / ".join(repr(t.where) for t in triggers)
            skipped.append({"workflow_type": definition.name,
                            "reason": f"its trigger's where {wheres} is false for this event"})
    return planned, skipped


def cancel_waits(definition: WorkflowDefinition, state: WorkflowState) -> list[EventWait]:
    """The event waits that ``definition``'s ``cancel_on`` keeps for the new run ``state``."""
    waits = []
    for index, cancel in enumerate(definition.cancel_on):
        wait = cancel.wait_for(state.workflow_id, state.run_id, state.input, index)
        if wait is not None:
            waits.append(wait)
    return waits


def fan_out(executor: WorkflowExecutor, event_id: str) -> dict[str, list] | None:
    """Start, wake and cancel what event ``event_id`` should; idempotent (see the module).

    Returns what this pass did (an outcome), or ``None`` when the event is not visible (not
    committed yet, or rolled back) or one of its triggers' workflows is not registered in this
    process (the event is left for a fan-out elsewhere: the sweep sends it again).
    """
    store = executor.store
    record = store.get_event(event_id)
    if record is None:
        return None
    outcome = empty_outcome()
    for planned in record.triggers:
        if not _start(executor, record, planned, outcome):
            return None
    _wake_and_cancel(executor, record, outcome)
    store.record_outcome(event_id, outcome, executor.clock.now())
    return outcome


def _start(executor: WorkflowExecutor, record: EventRecord, planned: dict[str, str],
           outcome: dict[str, list]) -> bool:
    """Start the planned run (once, whatever happened before); ``False`` if its type is unknown."""
    workflow_type, workflow_id = planned["workflow_type"], planned["workflow_id"]
    try:
        definition = get_workflow(workflow_type)
    except InvalidInputError:
        logger.error("event %r triggers workflow type %r, which is not registered in this "
                     "process; leaving its fan-out to another", record.event.id, workflow_type)
        return False
    state = executor.new_state(workflow_type, workflow_id, record.event.to_dict())
    try:
        executor.store.record_delivery(record.event.id, workflow_type, state,
                                       waits=cancel_waits(definition, state))
    except WorkflowAlreadyExistsError:
        outcome["skipped"].append({
            "workflow_type": workflow_type,
            "reason": f"a run with id {workflow_id!r} was already open (not started by this event)"})
        return True
    # Scheduled even when an earlier fan-out started it: that one may have died before sending.
    executor.schedule_start(workflow_id)
    outcome["started"].append(workflow_id)
    return True


def _wake_and_cancel(executor: WorkflowExecutor, record: EventRecord,
                     outcome: dict[str, list]) -> None:
    """Wake the runs whose waits accept the event; cancel those whose ``cancel_on`` does."""
    store, event = executor.store, record.event
    wake: dict[str, str] = {}
    cancel: dict[str, str] = {}
    for wait in store.matching_waits(event):
        input: Any = None
        if wait.where:  # its expression may read the run's input
            state = store.load(wait.workflow_id, with_history=False)
            if state is None or state.run_id != wait.run_id or not state.is_open:
                continue
            input = state.input
        if wait.accepts(event, record.received_at, input):
            (cancel if wait.cancels else wake)[wait.workflow_id] = wait.run_id
    if wake:
        woken = store.wake_runs(list(wake.items()), executor.clock.now())
        for workflow_id, queue in woken.items():
            executor.schedule(workflow_id, queue=queue)
            outcome["woken"].append(workflow_id)
    for workflow_id, run_id in cancel.items():
        state = store.load(workflow_id, with_history=False)
        if state is None or state.run_id != run_id or not state.is_open:
            continue
        try:
            executor.cancel(workflow_id)
        except (WorkflowNotFoundError, WorkflowNotRunningError):  # it ended meanwhile
            continue
        outcome["canceled"].append(workflow_id)
