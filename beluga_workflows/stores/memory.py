"""The ``memory`` store: runs kept in this process, for tests and scripts.

Thread-safe (one lock), with the same compare-and-set semantics as the durable stores, but nothing
survives the process and other processes see nothing: do not use it with Celery workers.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
from datetime import datetime
from typing import Any

from ..engine.errors import (
    ConflictError,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ..engine.types import HistoryEvent, Signal, WorkflowFilter, WorkflowState, WorkflowStatus
from .base import RunEnd, WorkflowStore

__all__ = ["MemoryStore"]


class MemoryStore(WorkflowStore):
    """Runs in a dict guarded by a lock. Returned states are copies: callers cannot alias them."""

    # Only this process sees the runs.
    supports_listing = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.RLock()
        self._runs: dict[str, WorkflowState] = {}
        self._signal_ids = itertools.count(1)

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _copy(state: WorkflowState, *, history: bool = True) -> WorkflowState:
        clone = copy.copy(state)
        clone.history = list(state.history) if history else []
        clone.signals = list(state.signals)
        return clone

    def _leased(self, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
        state = self._runs.get(workflow_id)
        if (state is None or state.run_id != run_id or state.lease_owner != owner
                or not state.is_open):
            raise ConflictError(f"lease on {workflow_id!r} lost", workflow_id=workflow_id)
        return state

    def _open(self, workflow_id: str) -> WorkflowState:
        state = self._runs.get(workflow_id)
        if state is None:
            raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}", workflow_id=workflow_id)
        if not state.is_open:
            raise WorkflowNotRunningError(
                f"workflow {workflow_id!r} has ended ({state.status.value})", workflow_id=workflow_id
            )
        return state

    def _number_signals(self, state: WorkflowState) -> None:
        # A signal without an inbox id could never be consumed (consume_signal names it by id).
        state.signals = [s if s.id is not None else dataclasses.replace(s, id=next(self._signal_ids))
                         for s in state.signals]

    @staticmethod
    def _touch(state: WorkflowState, now: datetime) -> None:
        state.version += 1
        state.updated_at = now

    # -- public contract --------------------------------------------------------------------------

    def save(self, state: WorkflowState) -> None:
        with self._lock:
            existing = self._runs.get(state.workflow_id)
            clone = self._copy(state)
            clone.version = (existing.version + 1) if existing else max(state.version, 1)
            self._number_signals(clone)
            self._runs[state.workflow_id] = clone

    def load(self, workflow_id: str, *, with_history: bool = True) -> WorkflowState | None:
        with self._lock:
            state = self._runs.get(workflow_id)
            return self._copy(state, history=with_history) if state is not None else None

    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        filter = filter or WorkflowFilter()
        with self._lock:
            states = [
                s for s in self._runs.values()
                if (filter.status is None or s.status == filter.status)
                and (not filter.workflow_type or s.workflow_type == filter.workflow_type)
                and (not filter.workflow_id_prefix
                     or s.workflow_id.startswith(filter.workflow_id_prefix))
                and (not filter.wait_kind or (s.is_open and s.wait_kind == filter.wait_kind))
            ]
            states.sort(key=lambda s: (s.created_at, s.run_id), reverse=True)
            states = states[max(filter.offset, 0):]
            if filter.limit > 0:
                states = states[: filter.limit]
            return [self._copy(s, history=False) for s in states]

    def delete(self, workflow_id: str) -> None:
        with self._lock:
            self._runs.pop(workflow_id, None)

    # -- engine -----------------------------------------------------------------------------------

    def create(self, state: WorkflowState) -> None:
        with self._lock:
            existing = self._runs.get(state.workflow_id)
            if existing is not None and existing.is_open:
                raise WorkflowAlreadyExistsError(
                    f"workflow {state.workflow_id!r} already has an open run ({existing.run_id})",
                    workflow_id=state.workflow_id,
                )
            clone = self._copy(state)
            clone.version = 1
            self._number_signals(clone)
            self._runs[state.workflow_id] = clone

    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> WorkflowState | None:
        with self._lock:
            state = self._runs.get(workflow_id)
            if state is None or not state.is_open:
                return None
            if state.lease_owner and state.lease_expires_at and state.lease_expires_at > now:
                return None
            state.lease_owner = owner
            state.lease_expires_at = lease_until
            state.version += 1
            return self._copy(state)

    def append(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent], *,
               lease_until: datetime, consume_signal: int | None = None,
               end: RunEnd | None = None) -> WorkflowState:
        with self._lock:
            state = self._leased(workflow_id, run_id, owner)
            if events and state.history and events[0].id != state.history[-1].id + 1:
                raise ConflictError(f"history of {workflow_id!r} moved on", workflow_id=workflow_id)
            now = events[-1].timestamp if events else state.updated_at
            state.history.extend(events)
            if consume_signal is not None:
                state.signals = [s for s in state.signals if s.id != consume_signal]
            state.lease_expires_at = lease_until
            if end is not None:
                state.status = end["status"]
                state.result = end["result"]
                state.error = end["error"]
                state.ended_at = now
                state.lease_owner = ""
                state.lease_expires_at = None
                state.wake_at = None
                state.wait_kind = state.wait_name = ""
                state.wait_until = None
            self._touch(state, now)
            return self._copy(state, history=False)

    def suspend(self, workflow_id: str, run_id: str, owner: str, *, seen_wake_seq: int,
                wake_at: datetime | None, wait_kind: str, wait_name: str,
                wait_until: datetime | None) -> bool:
        with self._lock:
            state = self._leased(workflow_id, run_id, owner)
            if state.wake_seq != seen_wake_seq:
                return False
            state.lease_owner = ""
            state.lease_expires_at = None
            state.wake_at = wake_at
            state.wait_kind, state.wait_name, state.wait_until = wait_kind, wait_name, wait_until
            state.version += 1
            return True

    def refresh(self, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
        with self._lock:
            return self._copy(self._leased(workflow_id, run_id, owner), history=False)

    def renew(self, workflow_id: str, run_id: str, owner: str, lease_until: datetime) -> bool:
        with self._lock:
            try:
                state = self._leased(workflow_id, run_id, owner)
            except ConflictError:
                return False
            state.lease_expires_at = lease_until
            return True

    def add_signal(self, workflow_id: str, signal: Signal, now: datetime) -> Signal:
        with self._lock:
            state = self._open(workflow_id)
            accepted = copy.copy(signal)
            accepted.id = next(self._signal_ids)
            accepted.sent_at = accepted.sent_at or now
            state.signals.append(accepted)
            self._wake(state, now)
            return accepted

    def request_cancel(self, workflow_id: str, now: datetime) -> WorkflowState:
        with self._lock:
            state = self._open(workflow_id)
            state.cancel_requested = True
            self._wake(state, now)
            return self._copy(state, history=False)

    def _wake(self, state: WorkflowState, now: datetime) -> None:
        state.wake_seq += 1
        if state.wake_at is None or state.wake_at > now:
            state.wake_at = now
        self._touch(state, now)

    def due(self, now: datetime, limit: int = 500) -> list[str]:
        with self._lock:
            ready = [
                s for s in self._runs.values()
                if s.status is WorkflowStatus.RUNNING
                and s.wake_at is not None and s.wake_at <= now
                and (not s.lease_owner or (s.lease_expires_at and s.lease_expires_at <= now))
            ]
            ready.sort(key=lambda s: s.wake_at)
            return [s.workflow_id for s in ready[:limit]]
