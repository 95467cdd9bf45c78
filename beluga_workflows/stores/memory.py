"""The ``memory`` store: runs kept in this process, for tests and scripts.

Thread-safe (one lock), with the same compare-and-set semantics as the durable stores, but nothing
survives the process and other processes see nothing: do not use it with Celery workers. Each
method is its state change of ``transitions.py`` applied under the lock.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from ..engine.types import HistoryEvent, Signal, WorkflowFilter, WorkflowState
from . import transitions
from .base import RunEnd, WorkflowStore

__all__ = ["MemoryStore"]


class MemoryStore(WorkflowStore):
    """Runs in a dict guarded by a lock. Returned states are copies: callers cannot alias them.

    Inbox ids are unique across the store's runs (one counter for them all).
    """

    backend_name = "memory"
    # Only this process sees the runs.
    supports_listing = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.RLock()
        self._runs: dict[str, WorkflowState] = {}
        self._last_signal_id = 0

    def _keep(self, state: WorkflowState) -> None:
        """Store ``state`` (a copy of the caller's) as its id's run, its signals numbered."""
        state.signals, self._last_signal_id = transitions.number_signals(
            state.signals, self._last_signal_id)
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
            self._runs.pop(workflow_id, None)

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
               end: RunEnd | None = None) -> WorkflowState:
        """Append the events, consume the signal and maybe end the run, under the lock.

        Raises:
            ConflictError: the lease is lost, or ``events`` do not follow the last one stored.
        """
        with self._lock:
            return transitions.append(self._runs.get(workflow_id), workflow_id, run_id, owner,
                                      events, lease_until=lease_until,
                                      consume_signal=consume_signal, end=end)

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
