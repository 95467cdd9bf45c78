"""The ``memory`` store: runs kept in this process, for tests and scripts.

Thread-safe (one lock), with the same compare-and-set semantics as the durable stores, but nothing
survives the process and other processes see nothing: do not use it with Celery workers. Each
method is its state change of ``transitions.py`` applied under the lock. It keeps events too
(events, the trigger ledger, the runs' event waits), each operation one step under the lock, and
enforces flow control (``memory_flow.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from datetime import datetime
from typing import Any

from ..engine.errors import RateLimitExceededError
from ..engine.events import (
    Event,
    EventRecord,
    EventWait,
    empty_outcome,
    event_match_key,
    merge_outcome,
)
from ..engine.flow import Admission
from ..engine.types import HistoryEvent, Signal, WorkflowFilter, WorkflowState, WorkflowStatus
from . import transitions
from .base import RunEnd, WorkflowStore, already_open, purge_filter
from .memory_flow import MemoryFlowControl

__all__ = ["MemoryStore"]


class MemoryStore(MemoryFlowControl, WorkflowStore):
    """Runs in a dict guarded by a lock. Returned states are copies: callers cannot alias them.

    Inbox ids are unique across the store's runs (one counter for them all).
    """

    backend_name = "memory"
    # Only this process sees the runs.
    supports_listing = True
    supports_events = True
    supports_purge = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.RLock()
        self._runs: dict[str, WorkflowState] = {}
        self._last_signal_id = 0
        self._events: dict[str, EventRecord] = {}
        self._waits: dict[str, dict[int, EventWait]] = {}  # run id -> op -> wait
        self._init_flow()

    def _keep(self, state: WorkflowState) -> None:
        """Store ``state`` (a copy of the caller's) as its id's run, its signals numbered; the
        waits of the run it replaces go with it."""
        state.signals, self._last_signal_id = transitions.number_signals(
            state.signals, self._last_signal_id)
        old = self._runs.get(state.workflow_id)
        if old is not None and old.run_id != state.run_id:
            self._waits.pop(old.run_id, None)
        self._runs[state.workflow_id] = state

    # -- public contract --------------------------------------------------------------------------

    def save(self, state: WorkflowState) -> None:
        """Overwrite the id's run with a copy of ``state``, one version on, under the lock.

        Signals without an inbox id get one from the store's counter.
        """
        with self._lock:
            self._keep(transitions.save(self._runs.get(state.workflow_id), state))

    def load(self, workflow_id: str, *, with_history: bool = True) -> WorkflowState | None:
        """A copy of the id's run (``with_history=False``: history empty), read under the lock."""
        with self._lock:
            state = self._runs.get(workflow_id)
            if state is None:
                return None
            return transitions.copy_state(state, history=with_history)

    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """Copies of the matching runs (no history), newest first and paged, under the lock."""
        filter = filter or WorkflowFilter()
        with self._lock:
            states = (s for s in self._runs.values() if transitions.matches(s, filter))
            return [transitions.copy_state(s, history=False)
                    for s in transitions.page(states, filter)]

    def delete(self, workflow_id: str) -> None:
        """Drop the id's run from the dict under the lock; a missing id is a no-op."""
        with self._lock:
            old = self._runs.pop(workflow_id, None)
            if old is not None:
                self._waits.pop(old.run_id, None)
                self._release(old.run_id)

    # -- engine -----------------------------------------------------------------------------------

    def create(self, state: WorkflowState) -> None:
        """Keep a copy of ``state`` at version 1 under the lock, replacing an ended run.

        Raises:
            WorkflowAlreadyExistsError: the id's run is still open.
        """
        with self._lock:
            self._keep(transitions.create(self._runs.get(state.workflow_id), state))

    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> WorkflowState | None:
        """Take the lease under the lock, so of two callers exactly one sees the run."""
        with self._lock:
            return transitions.claim(self._runs.get(workflow_id), owner, lease_until, now)

    def append(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent], *,
               lease_until: datetime, consume_signal: int | None = None,
               end: RunEnd | None = None, consume_signals: tuple[int, ...] = ()) -> WorkflowState:
        """Append the events, consume the signals and maybe end the run, under the lock.

        Raises:
            ConflictError: the lease is lost, or ``events`` do not follow the last one stored.
        """
        with self._lock:
            state = self._runs.get(workflow_id)
            control = transitions.append(state, workflow_id, run_id, owner,
                                         events, lease_until=lease_until,
                                         consume_signal=consume_signal, end=end)
            if consume_signals:  # the lease was checked: the run is state
                taken = set(consume_signals)
                state.signals = [s for s in state.signals if s.id not in taken]
                control.signals = [s for s in control.signals if s.id not in taken]
            if end is not None and end.release:
                end.freed = self._release(run_id)
            return control

    def continue_as_new(self, workflow_id: str, run_id: str, owner: str,
                        following: WorkflowState) -> None:
        """Replace the leased run by ``following`` under the lock; its slots and ``cancel_on``
        waits pass to the new run.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """
        with self._lock:
            new = transitions.continue_as_new(self._runs.get(workflow_id), workflow_id, run_id,
                                              owner, following)
            self._runs[workflow_id] = new
            for used in self._slots.values():
                for number, holder in list(used.items()):
                    if holder == run_id:
                        used[number] = new.run_id
            kept = {op: dataclasses.replace(wait, run_id=new.run_id)
                    for op, wait in self._waits.pop(run_id, {}).items() if op <= 0}
            if kept:
                self._waits[new.run_id] = kept

    def suspend(self, workflow_id: str, run_id: str, owner: str, *, seen_wake_seq: int,
                wake_at: datetime | None, wait_kind: str, wait_name: str,
                wait_until: datetime | None) -> bool:
        """Release the lease under the lock if ``wake_seq`` is still ``seen_wake_seq``.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """
        with self._lock:
            return transitions.suspend(self._runs.get(workflow_id), workflow_id, run_id, owner,
                                       seen_wake_seq=seen_wake_seq, wake_at=wake_at,
                                       wait_kind=wait_kind, wait_name=wait_name,
                                       wait_until=wait_until)

    def refresh(self, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
        """A history-less copy of the leased run, read under the lock.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """
        with self._lock:
            return transitions.refresh(self._runs.get(workflow_id), workflow_id, run_id, owner)

    def renew(self, workflow_id: str, run_id: str, owner: str, lease_until: datetime) -> bool:
        """Move the lease expiry to ``lease_until`` under the lock; ``False`` if it is lost."""
        with self._lock:
            return transitions.renew(self._runs.get(workflow_id), workflow_id, run_id, owner,
                                     lease_until)

    def add_signal(self, workflow_id: str, signal: Signal, now: datetime) -> Signal:
        """File ``signal`` under the store-wide next inbox id and wake the run, under the lock.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the run has ended.
        """
        with self._lock:
            accepted = transitions.add_signal(self._runs.get(workflow_id), workflow_id, signal,
                                              now, last_id=self._last_signal_id)
            self._last_signal_id = accepted.id
            return accepted

    def deliver_signal(self, workflow_id: str, signal: Signal, now: datetime
                       ) -> tuple[Signal, bool]:
        """``add_signal``, and whether its wake-up is covered (leased, or due already), under
        the lock."""
        with self._lock:
            accepted = self.add_signal(workflow_id, signal, now)
            state = self._runs.get(workflow_id)
            if state.lease_owner:
                return accepted, bool(state.lease_expires_at and state.lease_expires_at > now)
            return accepted, bool(state.wake_at is not None and state.wake_at < now)

    def request_cancel(self, workflow_id: str, now: datetime) -> WorkflowState:
        """Flag the open run cancel-requested and wake it, under the lock.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the run has ended.
        """
        with self._lock:
            return transitions.request_cancel(self._runs.get(workflow_id), workflow_id, now)

    def due(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of the due runs, soonest wake-up first, scanned under the lock."""
        with self._lock:
            return transitions.due(self._runs.values(), now, limit)

    # -- retention --------------------------------------------------------------------------------

    def _ended_before(self, before: datetime, status: WorkflowStatus | None = None,
                      workflow_type: str | None = None) -> list[WorkflowState]:
        """The ended runs whose ``ended_at`` is before ``before`` (of ``status`` and
        ``workflow_type`` when given), oldest end first (lock held)."""
        return sorted((s for s in self._runs.values()
                       if not s.is_open and s.ended_at is not None and s.ended_at < before
                       and (status is None or s.status == status)
                       and (workflow_type is None or s.workflow_type == workflow_type)),
                      key=lambda s: (s.ended_at, s.workflow_id))

    def purge_ended(self, before: datetime, *, limit: int = 500,
                    status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> list[str]:
        """Drop the oldest ended runs (as ``delete``), picked and dropped under one hold of the
        lock, so nothing can reopen them in between."""
        status, workflow_type = purge_filter(status, workflow_type)
        with self._lock:
            gone = [s.workflow_id for s in
                    self._ended_before(before, status, workflow_type)[:max(limit, 0)]]
            for workflow_id in gone:
                self.delete(workflow_id)
            return gone

    def count_ended(self, before: datetime, *, status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> int:
        """Count the ended runs before ``before`` under the lock."""
        status, workflow_type = purge_filter(status, workflow_type)
        with self._lock:
            return len(self._ended_before(before, status, workflow_type))

    # -- events -----------------------------------------------------------------------------------

    def add_event(self, event: Event, received_at: datetime, *,
                  triggers: list[dict[str, str]] = (), skipped: list[dict[str, str]] = ()
                  ) -> bool:
        """Keep a copy of the event under the lock unless its id is taken (``False``)."""
        with self._lock:
            if event.id in self._events:
                return False
            self._events[event.id] = EventRecord(copy.deepcopy(event), received_at,
                                                 outcome=empty_outcome(skipped),
                                                 triggers=[dict(t) for t in triggers])
            return True

    def get_event(self, event_id: str) -> EventRecord | None:
        """A copy of the event's record, read under the lock."""
        with self._lock:
            record = self._events.get(event_id)
            return copy.deepcopy(record) if record is not None else None

    def _events_of(self, name: str | None) -> list[EventRecord]:
        return [r for r in self._events.values() if name is None or r.event.name == name]

    def list_events(self, *, name: str | None = None, limit: int = 50, offset: int = 0
                    ) -> list[EventRecord]:
        """Copies of the events, newest first and paged, sorted under the lock."""
        with self._lock:
            ordered = sorted(self._events_of(name), key=lambda r: (r.received_at, r.event.id),
                             reverse=True)[max(offset, 0):]
            return copy.deepcopy(ordered[:limit] if limit > 0 else ordered)

    def count_events(self, *, name: str | None = None) -> int:
        """How many events (of ``name``) the dict holds."""
        with self._lock:
            return len(self._events_of(name))

    def find_events(self, name: str, *, since: datetime | None,
                    after: tuple[datetime, str] | None = None,
                    match: tuple[tuple[str, Any], ...] = (), limit: int = 100
                    ) -> list[tuple[Event, datetime]]:
        """Events ``name`` since ``since`` after the cursor, oldest first, scanned under the lock
        (``match`` is not used: the caller checks it)."""
        with self._lock:
            found = sorted(
                ((r.received_at, r.event.id, r.event) for r in self._events_of(name)
                 if (since is None or r.received_at >= since)
                 and (after is None or (r.received_at, r.event.id) > after)),
                key=lambda item: item[:2])
            return [(copy.deepcopy(event), at) for at, _, event in found[:limit]]

    def unfanned_events(self, older_than: datetime, limit: int = 1000) -> list[str]:
        """Ids of the events not fanned out and received by ``older_than``, oldest first."""
        with self._lock:
            pending = sorted((r.received_at, r.event.id) for r in self._events.values()
                             if r.fanned_out_at is None and r.received_at <= older_than)
            return [event_id for _, event_id in pending[:max(limit, 0)]]

    def record_outcome(self, event_id: str, outcome: dict[str, list],
                       fanned_out_at: datetime) -> None:
        """Merge ``outcome`` into the event's and mark it fanned out, under the lock."""
        with self._lock:
            record = self._events.get(event_id)
            if record is not None:
                record.outcome = merge_outcome(record.outcome, copy.deepcopy(outcome))
                record.fanned_out_at = record.fanned_out_at or fanned_out_at

    def record_delivery(self, event_id: str, workflow_type: str, state: WorkflowState, *,
                        waits: list[EventWait] = (), admission: Admission | None = None) -> bool:
        """Under the lock: ``False`` if the ledger has (event, type), else create the run with
        its waits and admission and add the ledger entry (a rate-limited run: the entry only,
        recording the skip, and ``False``).

        Raises:
            WorkflowAlreadyExistsError: ``state``'s id has an open run.
        """
        with self._lock:
            if (event_id, workflow_type) in self._ledger:
                return False
            existing = self._runs.get(state.workflow_id)
            if existing is not None and existing.is_open:
                raise already_open(state.workflow_id, existing.run_id)
            try:
                self._start_admitted(state, list(waits), admission)
            except RateLimitExceededError as refused:
                self._deliver(event_id, workflow_type, outcome="skipped", reason=str(refused))
                return False
            self._deliver(event_id, workflow_type, workflow_id=state.workflow_id,
                          run_id=state.run_id)
            return True

    def create_with_waits(self, state: WorkflowState, waits: list[EventWait], *,
                          admission: Admission | None = None) -> None:
        """``create`` with the admission enforced, and keep the waits, under the lock.

        Raises:
            WorkflowAlreadyExistsError: the id's run is still open.
            RateLimitExceededError: the rate limit refuses the run (nothing changed).
        """
        with self._lock:
            existing = self._runs.get(state.workflow_id)
            if existing is not None and existing.is_open:
                raise already_open(state.workflow_id, existing.run_id)
            self._start_admitted(state, list(waits), admission)

    def append_with_waits(self, workflow_id: str, run_id: str, owner: str,
                          events: list[HistoryEvent], *, lease_until: datetime,
                          add_waits: list[EventWait] = (), drop_waits: tuple[int, ...] = (),
                          end: RunEnd | None = None) -> WorkflowState:
        """``append``, then the run's waits changed, under the lock (nothing if it raises).

        Raises:
            ConflictError: the lease is lost, or ``events`` do not follow the last one stored.
        """
        with self._lock:
            control = self.append(workflow_id, run_id, owner, events, lease_until=lease_until,
                                  end=end)
            if end is not None:
                self._waits.pop(run_id, None)
                return control
            waits = self._waits.setdefault(run_id, {})
            for op in drop_waits:
                waits.pop(op, None)
            for wait in add_waits:
                waits[wait.op] = wait
            return control

    def matching_waits(self, event: Event) -> list[EventWait]:
        """The waits on the event's name whose match key it has, scanned under the lock."""
        with self._lock:
            keys: dict[str, str | None] = {}
            found = []
            for waits in self._waits.values():
                for wait in waits.values():
                    if wait.name != event.name:
                        continue
                    paths = wait.match_paths
                    if paths not in keys:
                        keys[paths] = event_match_key(event, paths)
                    if keys[paths] is not None and keys[paths] == wait.match_key:
                        found.append(wait)
            return found

    def wake_runs(self, runs: list[tuple[str, str]], now: datetime) -> dict[str, str]:
        """Wake each open run of ``runs`` as a signal does, under the lock."""
        woken = {}
        with self._lock:
            for workflow_id, run_id in runs:
                state = self._runs.get(workflow_id)
                if (state is None or state.run_id != run_id
                        or state.status is not WorkflowStatus.RUNNING):
                    continue
                transitions.wake(state, now)
                woken[workflow_id] = state.queue or ""
        return woken
