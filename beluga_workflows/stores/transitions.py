"""The store contract's state changes on a ``WorkflowState``, shared by the ``memory`` store and
the document stores (``document.py``).

Each store method that changes a run has its transition here, of the same name, taking the run as
the store holds it now (``None`` when the id has none) and the method's own arguments. A
transition checks what the method fences (the lease, an open run, ``wake_seq``), then changes the
run in place and returns what the method returns, or raises the contract's error and changes
nothing. None does I/O or takes a lock: the memory store calls them under its lock, a document
store inside its compare-and-set round (``DocumentStore._mutate``), which writes the changed run
back only if nobody wrote in between.

What a caller gets back is a copy (``copy_state``): it cannot alias the run the store keeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from ..engine.errors import ConflictError
from ..engine.parallel import outcome_inbox
from ..engine.types import HistoryEvent, Signal, WorkflowFilter, WorkflowState, WorkflowStatus
from .base import RunEnd, already_open, lease_lost, no_open_run

__all__ = [
    "add_signal",
    "append",
    "claim",
    "continue_as_new",
    "copy_state",
    "create",
    "due",
    "is_due",
    "leased",
    "matches",
    "number_signals",
    "open_run",
    "page",
    "refresh",
    "renew",
    "request_cancel",
    "save",
    "suspend",
    "wake",
]


# -- reading ----------------------------------------------------------------------------------

def copy_state(state: WorkflowState, *, history: bool = True) -> WorkflowState:
    """A copy of ``state`` whose history and inbox lists are its own (``history=False``: empty)."""
    clone = dataclasses.replace(state)
    clone.history = list(state.history) if history else []
    clone.signals = list(state.signals)
    return clone


def matches(state: WorkflowState, filter: WorkflowFilter) -> bool:
    """Whether ``state`` is one ``store.list(filter)`` returns (before ordering and paging)."""
    return ((filter.status is None or state.status == filter.status)
            and (not filter.workflow_type or state.workflow_type == filter.workflow_type)
            and (not filter.workflow_id_prefix
                 or state.workflow_id.startswith(filter.workflow_id_prefix))
            and (not filter.wait_kind or (state.is_open and state.wait_kind == filter.wait_kind))
            and (not filter.parent_id or state.parent_id == filter.parent_id))


def page(states: Iterable[WorkflowState], filter: WorkflowFilter) -> list[WorkflowState]:
    """``states`` newest first, then ``filter``'s offset and limit applied."""
    ordered = sorted(states, key=lambda s: (s.created_at, s.run_id), reverse=True)
    ordered = ordered[max(filter.offset, 0):]
    return ordered[: filter.limit] if filter.limit > 0 else ordered


def is_due(state: WorkflowState, now: datetime) -> bool:
    """Open, unleased (or its lease expired) and its wake-up time passed."""
    return (state.status is WorkflowStatus.RUNNING and state.wake_at is not None
            and state.wake_at <= now
            and (not state.lease_owner
                 or (state.lease_expires_at is not None and state.lease_expires_at <= now)))


def due(states: Iterable[WorkflowState], now: datetime, limit: int) -> list[str]:
    """Ids of the ``states`` that are due, soonest wake-up first, at most ``limit`` (``<= 0``: none).

    ``states`` is not iterated when ``limit <= 0``.
    """
    if limit <= 0:
        return []
    ready = sorted((s for s in states if is_due(s, now)), key=lambda s: s.wake_at)
    return [s.workflow_id for s in ready[:limit]]


# -- what fences a write -------------------------------------------------------------------

def leased(state: WorkflowState | None, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
    """``state`` if it is the open run ``run_id`` and ``owner`` (not empty) holds its lease.

    Raises:
        ConflictError: it is not (``lease_lost``).
    """
    if (state is None or state.run_id != run_id or state.lease_owner != owner or not owner
            or not state.is_open):
        raise lease_lost(workflow_id)
    return state


def open_run(state: WorkflowState | None, workflow_id: str) -> WorkflowState:
    """``state`` if it is an open run.

    Raises:
        WorkflowNotFoundError: ``state`` is ``None``.
        WorkflowNotRunningError: the run has ended.
    """
    if state is None or not state.is_open:
        raise no_open_run(workflow_id, None if state is None else state.status.value)
    return state


def number_signals(signals: list[Signal], last_id: int) -> tuple[list[Signal], int]:
    """Give inbox ids to the signals that have none, counting on from ``last_id`` and every id
    already present (a signal without an id could never be consumed: ``consume_signal`` names it).

    Returns the signals, in order, and the last id handed out or seen.
    """
    seq = max([last_id] + [s.id for s in signals if s.id is not None])
    numbered = []
    for signal in signals:
        if signal.id is None:
            seq += 1
            signal = dataclasses.replace(signal, id=seq)
        numbered.append(signal)
    return numbered, seq


# -- the transitions -----------------------------------------------------------------------

def save(existing: WorkflowState | None, state: WorkflowState) -> WorkflowState:
    """The run ``save(state)`` stores over ``existing``: a copy, one version after it (a new id:
    ``state.version``, at least 1). Its signals still need ``number_signals``."""
    new = copy_state(state)
    new.version = existing.version + 1 if existing is not None else max(state.version, 1)
    return new


def create(existing: WorkflowState | None, state: WorkflowState) -> WorkflowState:
    """The run ``create(state)`` stores: a copy at version 1 (an ended ``existing`` is replaced).
    Its signals still need ``number_signals``.

    Raises:
        WorkflowAlreadyExistsError: ``existing`` is still open.
    """
    if existing is not None and existing.is_open:
        raise already_open(state.workflow_id, existing.run_id)
    new = copy_state(state)
    new.version = 1
    return new


def claim(state: WorkflowState | None, owner: str, lease_until: datetime, now: datetime
          ) -> WorkflowState | None:
    """Give ``owner`` the lease of the open run unless someone holds an unexpired one.

    Returns a copy of the claimed run, or ``None`` (and changes nothing): missing, ended, leased.
    """
    if state is None or not state.is_open:
        return None
    if state.lease_owner and state.lease_expires_at and state.lease_expires_at > now:
        return None
    state.lease_owner, state.lease_expires_at = owner, lease_until
    state.version += 1
    return copy_state(state)


def append(state: WorkflowState | None, workflow_id: str, run_id: str, owner: str,
           events: list[HistoryEvent], *, lease_until: datetime,
           consume_signal: int | None = None, end: RunEnd | None = None) -> WorkflowState:
    """Add ``events`` to the leased run, extend its lease, consume a signal, maybe end the run.

    Returns a copy of the run without its history (its control fields).

    Raises:
        ConflictError: the lease is lost, or ``events`` do not follow the last recorded event.
    """
    state = leased(state, workflow_id, run_id, owner)
    if events and state.history and events[0].id != state.history[-1].id + 1:
        raise ConflictError(f"history of {workflow_id!r} moved on", workflow_id=workflow_id)
    now = events[-1].timestamp if events else state.updated_at
    state.history.extend(events)
    if consume_signal is not None:
        state.signals = [s for s in state.signals if s.id != consume_signal]
    state.lease_expires_at = lease_until
    if end is not None:
        state.status, state.result, state.error = end["status"], end["result"], end["error"]
        state.ended_at = now
        state.lease_owner, state.lease_expires_at = "", None
        state.wake_at = state.wait_until = None
        state.wait_kind = state.wait_name = ""
    state.version += 1
    state.updated_at = now
    return copy_state(state, history=False)


def continue_as_new(state: WorkflowState | None, workflow_id: str, run_id: str, owner: str,
                    following: WorkflowState) -> WorkflowState:
    """The run that replaces the leased run ``state`` when it continues as ``following``: a
    copy of it with ``state``'s unconsumed signals (their inbox ids kept; outcomes of started
    activities and children left behind) and its cancel request, one version on.

    Raises:
        ConflictError: the lease is lost.
    """
    old = leased(state, workflow_id, run_id, owner)
    new = copy_state(following)
    new.signals = [s for s in old.signals if not outcome_inbox(s.name)]
    # A cancel that came after the worker last looked is the next run's to deliver.
    new.cancel_requested = old.cancel_requested
    new.wake_seq = old.wake_seq
    new.version = old.version + 1
    return new


def suspend(state: WorkflowState | None, workflow_id: str, run_id: str, owner: str, *,
            seen_wake_seq: int, wake_at: datetime | None, wait_kind: str, wait_name: str,
            wait_until: datetime | None) -> bool:
    """Release the lease and record the wait, unless a signal or cancel came after
    ``seen_wake_seq``: then ``False``, and nothing changed.

    Raises:
        ConflictError: the lease is lost.
    """
    state = leased(state, workflow_id, run_id, owner)
    if state.wake_seq != seen_wake_seq:
        return False
    state.lease_owner, state.lease_expires_at = "", None
    state.wake_at = wake_at
    state.wait_kind, state.wait_name, state.wait_until = wait_kind, wait_name, wait_until
    state.version += 1
    return True


def refresh(state: WorkflowState | None, workflow_id: str, run_id: str, owner: str
            ) -> WorkflowState:
    """A copy of the leased run without its history (it changes nothing).

    Raises:
        ConflictError: the lease is lost.
    """
    return copy_state(leased(state, workflow_id, run_id, owner), history=False)


def renew(state: WorkflowState | None, workflow_id: str, run_id: str, owner: str,
          lease_until: datetime) -> bool:
    """Extend the lease to ``lease_until``; ``False`` (nothing changed) when it is lost."""
    try:
        state = leased(state, workflow_id, run_id, owner)
    except ConflictError:
        return False
    state.lease_expires_at = lease_until
    return True


def add_signal(state: WorkflowState | None, workflow_id: str, signal: Signal, now: datetime, *,
               last_id: int) -> Signal:
    """File ``signal`` in the open run's inbox under id ``last_id + 1`` and wake the run.

    Returns the accepted signal (its ``sent_at`` defaults to ``now``).

    Raises:
        WorkflowNotFoundError, WorkflowNotRunningError: no open run (``open_run``).
    """
    state = open_run(state, workflow_id)
    accepted = dataclasses.replace(signal, id=last_id + 1, sent_at=signal.sent_at or now)
    state.signals.append(accepted)
    wake(state, now)
    return accepted


def request_cancel(state: WorkflowState | None, workflow_id: str, now: datetime) -> WorkflowState:
    """Flag the open run as cancel-requested and wake it; a copy without its history.

    Raises:
        WorkflowNotFoundError, WorkflowNotRunningError: no open run (``open_run``).
    """
    state = open_run(state, workflow_id)
    state.cancel_requested = True
    wake(state, now)
    return copy_state(state, history=False)


def wake(state: WorkflowState, now: datetime) -> None:
    """What a signal, a cancel or a matching event does: bump ``wake_seq``, make the run due now."""
    state.wake_seq += 1
    if state.wake_at is None or state.wake_at > now:
        state.wake_at = now
    state.version += 1
    state.updated_at = now
