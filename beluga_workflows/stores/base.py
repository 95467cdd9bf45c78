"""The store contract: where runs, their histories and their signal inboxes live.

A store keeps the latest run of each workflow id. Four methods are the public contract of the Go
package (``save``, ``load``, ``list``, ``delete``); the others are what the engine needs to hold its
guarantees under concurrency:

- ``create`` refuses a second open run of an id;
- ``claim`` gives a run's lease to exactly one worker (compare-and-set on the lease);
- ``append`` adds events to a run's history without rewriting it, only while the caller still
  holds the lease (fencing), and may consume one signal and end the run in the same write;
- ``suspend`` releases the lease only if no signal or cancel arrived since the worker last looked
  (compare-and-set on ``wake_seq``), so a signal that races a suspension is never stranded;
- ``add_signal`` / ``request_cancel`` append to the inbox and bump ``wake_seq`` atomically;
- ``due`` lists runs a worker should pick up: not leased (or lease expired) and ``wake_at`` passed.

Backends that cannot do compare-and-set set ``supports_compare_and_set = False`` and say so.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from datetime import datetime
from typing import Any

from ..engine.types import (
    HistoryEvent,
    RunEnd,
    Signal,
    WorkflowFilter,
    WorkflowState,
    WorkflowStatus,
)

__all__ = ["RunEnd", "RunWatch", "WorkflowStore"]


class RunWatch:
    """A subscription to the end of one run (``WorkflowStore.watch``); use it as a context manager.

    This base watch cannot be told anything (``pushed`` is ``False``): ``wait`` just sleeps, and
    the waiter polls. A store that pushes run ends returns a watch whose ``wait`` returns early.
    """

    @property
    def pushed(self) -> bool:
        """``True`` while the store pushes ends: ``wait`` then returns as soon as one may have come."""
        return False

    def wait(self, seconds: float) -> None:
        """Return after ``seconds``, or sooner when the run may have ended."""
        time.sleep(seconds)

    def close(self) -> None:
        """End the subscription."""

    def __enter__(self) -> RunWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WorkflowStore(abc.ABC):
    """Base class of every store backend. Options come from ``BELUGA_WORKFLOWS["STORE"]["OPTIONS"]``."""

    # Writes are conditional (versions / compare-and-set), so concurrent workers cannot clobber
    # each other and the lease is exclusive.
    supports_compare_and_set: bool = True
    # ``list`` reads the backend itself, so every process sees every run.
    supports_listing: bool = True

    def __init__(self, **options: Any) -> None:
        self.options = options

    # -- the public contract -------------------------------------------------------------------

    @abc.abstractmethod
    def save(self, state: WorkflowState) -> None:
        """Store ``state`` (with its history and inbox) as the latest run of its id, overwriting."""

    @abc.abstractmethod
    def load(self, workflow_id: str, *, with_history: bool = True) -> WorkflowState | None:
        """The latest run of ``workflow_id`` with its history and unconsumed signals, or ``None``."""

    @abc.abstractmethod
    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """Runs matching ``filter``, newest first, without their histories."""

    @abc.abstractmethod
    def delete(self, workflow_id: str) -> None:
        """Remove every run of ``workflow_id``; a missing id is not an error."""

    # -- what the engine needs ------------------------------------------------------------------

    @abc.abstractmethod
    def create(self, state: WorkflowState) -> None:
        """Store a new run (its history holds ``workflow_started``).

        Raises:
            WorkflowAlreadyExistsError: a run of that id is still open. An ended run is replaced.
        """

    @abc.abstractmethod
    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> WorkflowState | None:
        """Take the lease of the open run of ``workflow_id`` if nobody holds an unexpired one.

        Returns the run with its history and unconsumed signals, or ``None`` when the run is ended,
        missing, or leased by another worker. Two callers can never both win.
        """

    @abc.abstractmethod
    def append(
        self,
        workflow_id: str,
        run_id: str,
        owner: str,
        events: list[HistoryEvent],
        *,
        lease_until: datetime,
        consume_signal: int | None = None,
        end: RunEnd | None = None,
    ) -> WorkflowState:
        """Append ``events`` to the run's history, extending the lease to ``lease_until``.

        ``consume_signal`` removes that signal from the inbox in the same write; ``end`` ends the
        run and releases the lease. Returns the run's control fields (``cancel_requested``,
        ``wake_seq``, ``deadline``), not its history.

        Raises:
            ConflictError: ``owner`` no longer holds the lease (nothing was written).
        """

    @abc.abstractmethod
    def suspend(
        self,
        workflow_id: str,
        run_id: str,
        owner: str,
        *,
        seen_wake_seq: int,
        wake_at: datetime | None,
        wait_kind: str,
        wait_name: str,
        wait_until: datetime | None,
    ) -> bool:
        """Release the lease and record what the run waits for.

        Returns ``False`` (and changes nothing) when a signal or cancel arrived after the worker
        saw ``seen_wake_seq``: the worker must look again instead of sleeping on it.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """

    def append_and_suspend(
        self,
        workflow_id: str,
        run_id: str,
        owner: str,
        events: list[HistoryEvent],
        *,
        lease_until: datetime,
        seen_wake_seq: int,
        wake_at: datetime | None,
        wait_kind: str,
        wait_name: str,
        wait_until: datetime | None,
    ) -> tuple[WorkflowState, bool]:
        """``append(events)`` then ``suspend(...)``: the run's control fields and whether it was
        released. The events are appended either way. A backend that can do both in one write
        overrides this (a sleep then costs one checkpoint instead of two).

        Raises:
            ConflictError: ``owner`` no longer holds the lease (nothing was written).
        """
        control = self.append(workflow_id, run_id, owner, events, lease_until=lease_until)
        return control, self.suspend(workflow_id, run_id, owner, seen_wake_seq=seen_wake_seq,
                                     wake_at=wake_at, wait_kind=wait_kind, wait_name=wait_name,
                                     wait_until=wait_until)

    @abc.abstractmethod
    def refresh(self, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
        """The run's current control fields and unconsumed signals (no history), lease held.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """

    @abc.abstractmethod
    def renew(self, workflow_id: str, run_id: str, owner: str, lease_until: datetime) -> bool:
        """Extend the lease; ``False`` when ``owner`` no longer holds it."""

    @abc.abstractmethod
    def add_signal(self, workflow_id: str, signal: Signal, now: datetime) -> Signal:
        """Put ``signal`` in the open run's inbox, bump ``wake_seq`` and make the run due now.

        Returns the signal with its inbox ``id``.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the latest run has ended.
        """

    @abc.abstractmethod
    def request_cancel(self, workflow_id: str, now: datetime) -> WorkflowState:
        """Flag the open run as cancel-requested, bump ``wake_seq`` and make it due now.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the latest run has ended.
        """

    @abc.abstractmethod
    def due(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of open runs a worker should pick up now: unleased or lease expired, ``wake_at <= now``."""

    def history(self, workflow_id: str, *, after: int = 0, limit: int = 0) -> list[HistoryEvent]:
        """The run's events with ``id > after``, in order, at most ``limit`` (``<= 0``: all)."""
        state = self.load(workflow_id)
        if state is None:
            return []
        events = [e for e in state.history if e.id > after]
        return events[:limit] if limit > 0 else events

    def count(self, filter: WorkflowFilter | None = None) -> int:
        """How many runs match ``filter`` (its ``limit`` and ``offset`` ignored)."""
        filter = filter or WorkflowFilter()
        return len(self.list(dataclasses.replace(filter, limit=0, offset=0)))

    def count_by_status(self) -> dict[str, int]:
        """How many runs are in each status (every status present, zeros included)."""
        counts = {s.value: 0 for s in WorkflowStatus}
        for state in self.list(WorkflowFilter()):
            counts[state.status.value] += 1
        return counts

    def watch(self, workflow_id: str) -> RunWatch:
        """Subscribe to the end of ``workflow_id``'s run, for waiters (``handle.result()``).

        Subscribe before reading the run, so an end that comes in between still wakes the waiter.
        The default cannot push (its watch only sleeps); a store that can tell overrides this.
        """
        return RunWatch()

    def close(self) -> None:  # noqa: B027 - optional hook: most stores hold nothing to release
        """Release connections held by the store (optional)."""
