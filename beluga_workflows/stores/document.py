"""The engine contract on top of a key/value backend that keeps one JSON document per run.

``DocumentStore`` implements every method of ``WorkflowStore`` with four primitives a backend
provides (``redis``, ``nats``, ``inngest``, ``dapr``):

- ``_read(id)``: the run's document (the Go layout of ``go_document.py``) and its *revision*, an
  opaque token (``None``-like when the id has no document);
- ``_write(id, doc, revision, state)``: store ``doc`` only if the document is still at
  ``revision`` (for a missing one: only if it is still missing); ``False`` when it is not;
- ``_remove(id)``: delete the document, unconditionally;
- ``_documents()``: every run's document, for ``list``/``count``/``due`` (backends with indexes
  override those instead).

Every operation that depends on a run's state is a read-modify-write retried while a concurrent
writer wins the compare-and-set: the condition (lease held, run open, ``wake_seq`` unchanged,
history contiguous) is checked again on each fresh read, so ``ConflictError`` means only what the
contract says (the lease is lost) and a signal or cancel is never dropped by a race. A backend
without compare-and-set (``supports_compare_and_set = False``) gets its read-modify-writes
serialised by a lock of this process instead: safe among threads, last-writer-wins across processes.

Each checkpoint rewrites the run's whole document (the price of Go's one-document layout): fine for
workflows of hundreds of steps, not for ones of hundreds of thousands.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from ..engine.errors import (
    ConflictError,
    InvalidInputError,
    StoreError,
    WorkflowAlreadyExistsError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ..engine.types import HistoryEvent, Signal, WorkflowFilter, WorkflowState, WorkflowStatus
from .base import RunEnd, WorkflowStore
from .go_document import decode_state, encode_state

__all__ = ["DocumentStore", "Run", "matches"]

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclasses.dataclass
class Run:
    """A decoded document: the run, and the last signal inbox id it handed out."""

    state: WorkflowState
    signal_seq: int = 0


def matches(state: WorkflowState, filter: WorkflowFilter) -> bool:
    """Whether ``state`` is one ``store.list(filter)`` returns (before ordering and paging)."""
    return ((filter.status is None or state.status == filter.status)
            and (not filter.workflow_type or state.workflow_type == filter.workflow_type)
            and (not filter.workflow_id_prefix
                 or state.workflow_id.startswith(filter.workflow_id_prefix))
            and (not filter.wait_kind or (state.is_open and state.wait_kind == filter.wait_kind)))


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


def guarded(operation: str) -> Callable[[_F], _F]:
    """Report the backend client's own exceptions in ``operation`` as ``StoreError``."""

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: DocumentStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except WorkflowError:
                raise
            except self.backend_errors as exc:
                raise StoreError(f"{self.backend_name}/{operation}: {exc}") from exc

        return wrapper  # type: ignore[return-value]

    return decorate


class DocumentStore(WorkflowStore):
    """Base of the stores that keep one Go-layout JSON document per run. See the module docstring."""

    # The name error messages start with ("redis/claim: ...").
    backend_name = "document"
    # The client library's exceptions, reported as StoreError naming the operation.
    backend_errors: tuple[type[BaseException], ...] = ()
    # Compare-and-set rounds lost in a row before an operation gives up with ConflictError.
    conflict_attempts = 100

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._process_lock = threading.RLock()

    # -- primitives a backend provides ---------------------------------------------------------

    @abc.abstractmethod
    def _read(self, workflow_id: str) -> tuple[dict | None, Any]:
        """The run's document (``None`` when missing) and its revision."""

    @abc.abstractmethod
    def _write(self, workflow_id: str, doc: dict, revision: Any, state: WorkflowState) -> bool:
        """Store ``doc`` if the document is still at ``revision``; ``False`` if it moved on."""

    @abc.abstractmethod
    def _remove(self, workflow_id: str) -> None:
        """Delete the run's document; a missing one is not an error."""

    @abc.abstractmethod
    def _documents(self) -> Iterable[dict]:
        """Every run's document (what ``list``, ``count`` and ``due`` look through)."""

    def ping(self) -> None:
        """Check that the backend answers.

        Raises:
            StoreError: it cannot be reached (the message says where and why).
        """

    # -- plumbing ------------------------------------------------------------------------------

    def _decode(self, workflow_id: str, doc: dict, *, with_history: bool = True) -> Run:
        try:
            state, seq = decode_state(doc, with_history=with_history)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreError(
                f"{self.backend_name}: the document of {workflow_id!r} is not a workflow run "
                f"in the Go Beluga layout: {exc}", workflow_id=workflow_id) from exc
        return Run(state, seq)

    def _states(self) -> Iterator[WorkflowState]:
        """Every run without its history (documents that are not runs are skipped)."""
        for doc in self._documents():
            with contextlib.suppress(StoreError):
                yield self._decode("?", doc, with_history=False).state

    @contextlib.contextmanager
    def _serialised(self) -> Iterator[None]:
        # Without compare-and-set, at least this process's threads take turns.
        if self.supports_compare_and_set:
            yield
        else:
            with self._process_lock:
                yield

    def _mutate(self, workflow_id: str, change: Callable[[Run | None], tuple[Run | None, Any]]
                ) -> Any:
        """Apply ``change`` to the run's current document until its write wins.

        ``change(run)`` returns ``(new_run, result)``; ``new_run is None`` writes nothing. It may
        raise to refuse (nothing is written). Its ``run`` is a fresh decode it may modify.
        """
        with self._serialised():
            for attempt in range(self.conflict_attempts):
                doc, revision = self._read(workflow_id)
                run = self._decode(workflow_id, doc) if doc is not None else None
                new, result = change(run)
                if new is None:
                    return result
                if self._write(workflow_id, encode_state(new.state, signal_seq=new.signal_seq),
                               revision, new.state):
                    return result
                if attempt >= 2:  # contended: back off a little, at random
                    time.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 7))))
        raise ConflictError(
            f"{self.backend_name}: {workflow_id!r} changed under {self.conflict_attempts} "
            f"compare-and-set attempts in a row", workflow_id=workflow_id)

    @staticmethod
    def _copy(state: WorkflowState, *, history: bool = True) -> WorkflowState:
        clone = dataclasses.replace(state)
        clone.history = list(state.history) if history else []
        clone.signals = list(state.signals)
        return clone

    @staticmethod
    def _number_signals(run: Run) -> None:
        """Give inbox ids to signals that have none, after every id the run handed out."""
        seq = max([run.signal_seq] + [s.id for s in run.state.signals if s.id is not None])
        numbered = []
        for signal in run.state.signals:
            if signal.id is None:
                seq += 1
                signal = dataclasses.replace(signal, id=seq)
            numbered.append(signal)
        run.state.signals, run.signal_seq = numbered, seq

    @staticmethod
    def _check_history(state: WorkflowState) -> None:
        ids = [e.id for e in state.history]
        if len(set(ids)) != len(ids):
            raise InvalidInputError(f"history of {state.workflow_id!r} has duplicate event ids",
                                    workflow_id=state.workflow_id)

    def _lease_lost(self, workflow_id: str) -> ConflictError:
        return ConflictError(f"lease on {workflow_id!r} lost", workflow_id=workflow_id)

    def _leased(self, run: Run | None, workflow_id: str, run_id: str, owner: str) -> Run:
        if (run is None or run.state.run_id != run_id or run.state.lease_owner != owner
                or not owner or not run.state.is_open):
            raise self._lease_lost(workflow_id)
        return run

    @staticmethod
    def _open(run: Run | None, workflow_id: str) -> Run:
        if run is None:
            raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}",
                                        workflow_id=workflow_id)
        if not run.state.is_open:
            raise WorkflowNotRunningError(
                f"workflow {workflow_id!r} has ended ({run.state.status.value})",
                workflow_id=workflow_id)
        return run

    @staticmethod
    def _wake(state: WorkflowState, now: datetime) -> None:
        """What a signal or cancel does: bump wake_seq and make the run due now."""
        state.wake_seq += 1
        if state.wake_at is None or state.wake_at > now:
            state.wake_at = now
        state.version += 1
        state.updated_at = now

    # -- the public contract -------------------------------------------------------------------

    @guarded("save")
    def save(self, state: WorkflowState) -> None:
        self._check_history(state)

        def change(run: Run | None):
            new = Run(self._copy(state), run.signal_seq if run else 0)
            new.state.version = run.state.version + 1 if run else max(state.version, 1)
            self._number_signals(new)
            return new, None

        self._mutate(state.workflow_id, change)

    @guarded("load")
    def load(self, workflow_id: str, *, with_history: bool = True) -> WorkflowState | None:
        doc, _ = self._read(workflow_id)
        if doc is None:
            return None
        return self._decode(workflow_id, doc, with_history=with_history).state

    @guarded("list")
    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        filter = filter or WorkflowFilter()
        return page((s for s in self._states() if matches(s, filter)), filter)

    @guarded("count")
    def count(self, filter: WorkflowFilter | None = None) -> int:
        filter = filter or WorkflowFilter()
        return sum(1 for s in self._states() if matches(s, filter))

    @guarded("count_by_status")
    def count_by_status(self) -> dict[str, int]:
        counts = {s.value: 0 for s in WorkflowStatus}
        for state in self._states():
            counts[state.status.value] += 1
        return counts

    @guarded("delete")
    def delete(self, workflow_id: str) -> None:
        with self._serialised():
            self._remove(workflow_id)

    # -- what the engine needs -----------------------------------------------------------------

    @guarded("create")
    def create(self, state: WorkflowState) -> None:
        self._check_history(state)

        def change(run: Run | None):
            if run is not None and run.state.is_open:
                raise WorkflowAlreadyExistsError(
                    f"workflow {state.workflow_id!r} already has an open run ({run.state.run_id})",
                    workflow_id=state.workflow_id)
            new = Run(self._copy(state), 0)
            new.state.version = 1
            self._number_signals(new)
            return new, None

        self._mutate(state.workflow_id, change)

    @guarded("claim")
    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> WorkflowState | None:
        def change(run: Run | None):
            if run is None or not run.state.is_open:
                return None, None
            state = run.state
            if state.lease_owner and state.lease_expires_at and state.lease_expires_at > now:
                return None, None
            state.lease_owner, state.lease_expires_at = owner, lease_until
            state.version += 1
            return run, self._copy(state)

        return self._mutate(workflow_id, change)

    @guarded("append")
    def append(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent], *,
               lease_until: datetime, consume_signal: int | None = None,
               end: RunEnd | None = None) -> WorkflowState:
        def change(run: Run | None):
            state = self._leased(run, workflow_id, run_id, owner).state
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
            return run, self._copy(state, history=False)

        return self._mutate(workflow_id, change)

    @guarded("suspend")
    def suspend(self, workflow_id: str, run_id: str, owner: str, *, seen_wake_seq: int,
                wake_at: datetime | None, wait_kind: str, wait_name: str,
                wait_until: datetime | None) -> bool:
        def change(run: Run | None):
            state = self._leased(run, workflow_id, run_id, owner).state
            if state.wake_seq != seen_wake_seq:
                return None, False
            state.lease_owner, state.lease_expires_at = "", None
            state.wake_at = wake_at
            state.wait_kind, state.wait_name, state.wait_until = wait_kind, wait_name, wait_until
            state.version += 1
            return run, True

        return self._mutate(workflow_id, change)

    @guarded("refresh")
    def refresh(self, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
        doc, _ = self._read(workflow_id)
        run = self._decode(workflow_id, doc, with_history=False) if doc is not None else None
        return self._copy(self._leased(run, workflow_id, run_id, owner).state, history=False)

    @guarded("renew")
    def renew(self, workflow_id: str, run_id: str, owner: str, lease_until: datetime) -> bool:
        def change(run: Run | None):
            try:
                state = self._leased(run, workflow_id, run_id, owner).state
            except ConflictError:
                return None, False
            state.lease_expires_at = lease_until
            return run, True

        return self._mutate(workflow_id, change)

    @guarded("add_signal")
    def add_signal(self, workflow_id: str, signal: Signal, now: datetime) -> Signal:
        def change(run: Run | None):
            run = self._open(run, workflow_id)
            run.signal_seq += 1
            accepted = dataclasses.replace(signal, id=run.signal_seq,
                                           sent_at=signal.sent_at or now)
            run.state.signals.append(accepted)
            self._wake(run.state, now)
            return run, accepted

        return self._mutate(workflow_id, change)

    @guarded("request_cancel")
    def request_cancel(self, workflow_id: str, now: datetime) -> WorkflowState:
        def change(run: Run | None):
            run = self._open(run, workflow_id)
            run.state.cancel_requested = True
            self._wake(run.state, now)
            return run, self._copy(run.state, history=False)

        return self._mutate(workflow_id, change)

    @guarded("due")
    def due(self, now: datetime, limit: int = 500) -> list[str]:
        if limit <= 0:
            return []
        ready = sorted((s for s in self._states() if is_due(s, now)), key=lambda s: s.wake_at)
        return [s.workflow_id for s in ready[:limit]]
