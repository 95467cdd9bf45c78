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
    from datetime import datetime

    from .executor import WorkflowExecutor
    from .types import WorkflowState

__all__ = ["Intake", "cancel_waits", "fan_out", "fire_groups", "intake", "plan_triggers"]

logger = logging.getLogger("beluga_workflows.events")


def plan_triggers(event: Event) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The runs ``event``'s triggers start (``[{"workflow_type", "workflow_id"}]``) and the
    workflows it skips (``[{"workflow_type", "reason"}]``: every trigger's ``where`` false)."""
    planned, skipped = [], []
    for definition in triggered_by(event.name):
        triggers = [t for t in definition.triggers if t.event == event.name]
        if any(t.accepts(event) for t in triggers):
            grouped = definition.flow is not None and definition.flow.groups_events
            planned.append({"workflow_type": definition.name,  # a group's run gets its id later
                            "workflow_id": "" if grouped else trigger_workflow_id(
                                definition.name, event.id)})
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
    """Start the planned run (once, whatever happened before), or put the event in its group;
    ``False`` if its type is unknown here."""
    workflow_type = planned["workflow_type"]
    try:
        definition = get_workflow(workflow_type)
    except InvalidInputError:
        logger.error("event %r triggers workflow type %r, which is not registered in this "
                     "process; leaving its fan-out to another", record.event.id, workflow_type)
        return False
    flow = definition.flow
    if flow is not None and flow.groups_events:
        _group(executor, record, definition, outcome)
        return True
    workflow_id = trigger_workflow_id(workflow_type, record.event.id)
    event = record.event.to_dict()
    state = executor.new_state(workflow_type, workflow_id, event)
    admission = None if flow is None else flow.admission(
        workflow_type, flow.bindings(event, event), state.created_at)
    store = executor.store
    try:
        started = store.record_delivery(record.event.id, workflow_type, state,
                                        waits=cancel_waits(definition, state),
                                        admission=admission)
    except WorkflowAlreadyExistsError:
        outcome["skipped"].append({
            "workflow_type": workflow_type,
            "reason": f"a run with id {workflow_id!r} was already open (not started by this event)"})
        return True
    if started:
        executor.schedule_new(state, admission)
    elif admission is not None:  # decided before (or skipped now): the ledger says how
        delivery = store.get_delivery(record.event.id, workflow_type) or {}
        if delivery.get("outcome") == "skipped":
            outcome["skipped"].append({"workflow_type": workflow_type,
                                       "reason": delivery.get("reason", "")})
            return True
        executor.schedule(workflow_id)  # an earlier fan-out may have died before sending
    else:
        # Scheduled even when an earlier fan-out started it: that one may have died before sending.
        executor.schedule_start(workflow_id)
    outcome["started"].append(workflow_id)
    return True


def _group(executor: WorkflowExecutor, record: EventRecord, definition: WorkflowDefinition,
           outcome: dict[str, list]) -> dict:
    """Put the event in its debounce or batch group (once); schedule the group's firing."""
    flow = definition.flow
    event = record.event.to_dict()
    declared = flow.debounce or flow.batch
    kind = "debounce" if flow.debounce is not None else "batch"
    result = executor.store.group_event(
        record.event, record.received_at, definition.name, kind,
        flow.group_key(flow.bindings(event, event)),
        period=flow.debounce.period if flow.debounce is not None else flow.batch.timeout,
        timeout=getattr(declared, "timeout", None) if kind == "debounce" else None,
        max_size=flow.batch.max_size if flow.batch is not None else 0)
    if result["outcome"] == "skipped":
        outcome["skipped"].append({"workflow_type": definition.name, "reason": result["reason"]})
    elif result.get("due_at") is not None:
        executor.schedule_groups(result["due_at"])
    return result


class Intake:
    """What ``intake`` decided in the sender's thread: the workflow types it ``held`` (decided
    here), the runs it ``started``, the workflows that ``skipped`` the event and those that
    ``deferred`` it (a group)."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.started: list[str] = []
        self.skipped: list[dict[str, str]] = []
        self.deferred: list[dict[str, str]] = []


def intake(executor: WorkflowExecutor, event: Event, received_at: datetime,
           planned: list[dict[str, str]]) -> Intake:
    """Decide, in the sender's thread, the triggers whose outcome the sender should learn: a
    rate limit (start or skip) and a debounce or batch (the group). The fan-out finds them
    decided (the trigger ledger) and only schedules what they started."""
    decided = Intake()
    for item in planned:
        try:
            definition = get_workflow(item["workflow_type"])
        except InvalidInputError:
            continue  # the fan-out logs it
        flow = definition.flow
        if flow is None or (flow.rate_limit is None and not flow.groups_events):
            continue
        decided.held.add(definition.name)
        outcome = empty_outcome()
        record = EventRecord(event, received_at)
        if flow.groups_events:
            result = _group(executor, record, definition, outcome)
            if result["outcome"] != "skipped":
                decided.deferred.append({
                    "workflow_type": definition.name,
                    "reason": f"held in a {'debounce' if flow.debounce else 'batch'} group",
                    "due_at": result["due_at"].isoformat() if result.get("due_at") else ""})
        else:
            _start(executor, record, item, outcome)
        decided.started.extend(outcome["started"])
        decided.skipped.extend(outcome["skipped"])
    return decided


def fire_groups(executor: WorkflowExecutor, now: datetime, limit: int) -> list[str]:
    """Start one run per debounce or batch group due by ``now`` (``store.fire_group``: once,
    fenced on the group's version); returns the ids of the runs started."""
    store = executor.store
    started = []
    for group in store.due_groups(now, limit):
        events = group["events"]
        try:
            definition = get_workflow(group["workflow_type"])
        except InvalidInputError:
            logger.error("event group %s is for workflow type %r, which is not registered in "
                         "this process; leaving it to another", group["id"], group["workflow_type"])
            continue
        if not events or definition.flow is None:
            continue
        if group["kind"] == "debounce":
            input = events[0].to_dict()
            workflow_id = trigger_workflow_id(definition.name, events[0].id)
        else:
            input = [e.to_dict() for e in events]
            workflow_id = f"{definition.name}:batch:{group['id']}"
        state = executor.new_state(definition.name, workflow_id, input)
        admission = definition.flow.admission(
            definition.name, definition.flow.bindings(input, events[0].to_dict()),
            state.created_at)
        try:
            fired = store.fire_group(group, state, waits=cancel_waits(definition, state),
                                     admission=admission)
        except WorkflowAlreadyExistsError:
            logger.error("event group %s: run %r is already open; the group is kept",
                         group["id"], workflow_id)
            continue
        if fired:
            executor.schedule_new(state, admission)
            started.append(workflow_id)
    return started


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
