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

Retention (``purge_ended``) needs one more, ``_remove_at(id, revision)``: delete the document only
if it is still at ``revision``. Each candidate is read, checked (ended before the cutoff) and
removed at the revision read, so a run that moved on in between (resumed, replaced) is kept.

Every operation that depends on a run's state is a read-modify-write retried while a concurrent
writer wins the compare-and-set (``_mutate``), whose change is the operation's transition of
``transitions.py`` applied to the fresh decode: the condition (lease held, run open, ``wake_seq`` unchanged,
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
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from ..engine.errors import ConflictError, StoreError
from ..engine.retention import purge_filters
from ..engine.types import HistoryEvent, Signal, WorkflowFilter, WorkflowState, WorkflowStatus
from . import transitions
from .base import RunEnd, WorkflowStore, check_history, guarded
from .go_document import decode_state, encode_state

__all__ = ["DocumentStore", "Run"]


@dataclasses.dataclass
class Run:
    """A decoded document: the run (``None`` while the id has none) and the last signal inbox id
    it handed out."""

    state: WorkflowState | None = None
    signal_seq: int = 0


class DocumentStore(WorkflowStore):
    """Base of the stores that keep one Go-layout JSON document per run. See the module docstring."""

    # The name error messages start with ("redis/claim: ...").
    backend_name = "document"
    # Compare-and-set rounds lost in a row before an operation gives up with ConflictError.
    conflict_attempts = 100
    # Ended runs are found by end time from ``_documents()`` (or an index: ``_ended``).
    supports_purge = True

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

    # -- plumbing ------------------------------------------------------------------------------

    def _decode(self, workflow_id: str, doc: dict | None, *, with_history: bool = True) -> Run:
        if doc is None:
            return Run()
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

    def _mutate(self, workflow_id: str, change: Callable[[Run], tuple[bool, Any]]) -> Any:
        """Apply ``change`` to the run's current document until its write wins.

        ``change(run)`` may modify ``run`` (a fresh decode) and returns ``(write, result)``;
        ``write`` false writes nothing. It may raise to refuse (nothing is written).
        """
        with self._serialised():
            for attempt in range(self.conflict_attempts):
                doc, revision = self._read(workflow_id)
                run = self._decode(workflow_id, doc)
                write, result = change(run)
                if not write:
                    return result
                if self._write(workflow_id, encode_state(run.state, signal_seq=run.signal_seq),
                               revision, run.state):
                    return result
                if attempt >= 2:  # contended: back off a little, at random
                    time.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 7))))
        raise ConflictError(
            f"{self.backend_name}: {workflow_id!r} changed under {self.conflict_attempts} "
            f"compare-and-set attempts in a row", workflow_id=workflow_id)

    # -- the public contract -------------------------------------------------------------------

    @guarded("save")
    def save(self, state: WorkflowState) -> None:
        """Overwrite the id's document with ``state``, one version on, in compare-and-set rounds.

        Signals without an inbox id get one from the document's own counter.

        Raises:
            InvalidInputError: two events of the history share an id.
        """
        check_history(state)

        def change(run: Run) -> tuple[bool, None]:
            run.state = transitions.save(run.state, state)
            run.state.signals, run.signal_seq = transitions.number_signals(run.state.signals,
                                                                           run.signal_seq)
            return True, None

        self._mutate(state.workflow_id, change)

    @guarded("load")
    def load(self, workflow_id: str, *, with_history: bool = True) -> WorkflowState | None:
        """One read of the id's document, decoded (``with_history=False``: history left out).

        Raises:
            StoreError: the document is not a run in the Go layout.
        """
        doc, _ = self._read(workflow_id)
        return self._decode(workflow_id, doc, with_history=with_history).state

    @guarded("list")
    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """Every document decoded (non-runs skipped), filtered, newest first and paged."""
        filter = filter or WorkflowFilter()
        return transitions.page((s for s in self._states() if transitions.matches(s, filter)),
                                filter)

    @guarded("count")
    def count(self, filter: WorkflowFilter | None = None) -> int:
        """Count the matching runs in one pass over every document (no history decoded)."""
        filter = filter or WorkflowFilter()
        return sum(1 for s in self._states() if transitions.matches(s, filter))

    @guarded("count_by_status")
    def count_by_status(self) -> dict[str, int]:
        """Tally the runs by status in one pass over every document."""
        counts = {s.value: 0 for s in WorkflowStatus}
        for state in self._states():
            counts[state.status.value] += 1
        return counts

    @guarded("delete")
    def delete(self, workflow_id: str) -> None:
        """Remove the id's document unconditionally (under the process lock without CAS)."""
        with self._serialised():
            self._remove(workflow_id)

    # -- what the engine needs -----------------------------------------------------------------

    @guarded("create")
    def create(self, state: WorkflowState) -> None:
        """Write the new run at version 1 in compare-and-set rounds, replacing an ended run.

        Raises:
            WorkflowAlreadyExistsError: the id's run is still open.
            InvalidInputError: two events of the history share an id.
        """
        check_history(state)

        def change(run: Run) -> tuple[bool, None]:
            run.state = transitions.create(run.state, state)
            run.state.signals, run.signal_seq = transitions.number_signals(run.state.signals, 0)
            return True, None

        self._mutate(state.workflow_id, change)

    @guarded("claim")
    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> WorkflowState | None:
        """Take the lease in compare-and-set rounds: a free lease is written only if the document
        has not moved since it was read, so one caller wins.

        Raises:
            ConflictError: ``conflict_attempts`` rounds in a row were lost to other writers.
        """
        def change(run: Run) -> tuple[bool, WorkflowState | None]:
            claimed = transitions.claim(run.state, owner, lease_until, now)
            return claimed is not None, claimed

        return self._mutate(workflow_id, change)

    @guarded("append")
    def append(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent], *,
               lease_until: datetime, consume_signal: int | None = None,
               end: RunEnd | None = None, consume_signals: tuple[int, ...] = ()) -> WorkflowState:
        """Append, consume and maybe end in compare-and-set rounds, the lease re-checked on each
        fresh read.

        Raises:
            ConflictError: the lease is lost, the history moved on, or ``conflict_attempts``
                rounds in a row were lost to other writers.
        """
        def change(run: Run) -> tuple[bool, WorkflowState]:
            control = transitions.append(run.state, workflow_id, run_id, owner, events,
                                         lease_until=lease_until,
                                         consume_signal=consume_signal, end=end)
            if consume_signals:  # the lease was checked: the run is run.state
                taken = set(consume_signals)
                run.state.signals = [s for s in run.state.signals if s.id not in taken]
                control.signals = [s for s in control.signals if s.id not in taken]
            return True, control

        return self._mutate(workflow_id, change)

    @guarded("continue_as_new")
    def continue_as_new(self, workflow_id: str, run_id: str, owner: str,
                        following: WorkflowState) -> None:
        """Replace the leased run's document by ``following``'s in compare-and-set rounds (the
        lease re-checked on each fresh read); the inbox and its counter carry over.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """
        def change(run: Run) -> tuple[bool, None]:
            run.state = transitions.continue_as_new(run.state, workflow_id, run_id, owner,
                                                    following)
            return True, None

        self._mutate(workflow_id, change)

    @guarded("suspend")
    def suspend(self, workflow_id: str, run_id: str, owner: str, *, seen_wake_seq: int,
                wake_at: datetime | None, wait_kind: str, wait_name: str,
                wait_until: datetime | None) -> bool:
        """Release the lease in compare-and-set rounds if ``wake_seq`` is still the one seen; a
        refusal writes nothing.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """
        def change(run: Run) -> tuple[bool, bool]:
            released = transitions.suspend(run.state, workflow_id, run_id, owner,
                                           seen_wake_seq=seen_wake_seq, wake_at=wake_at,
                                           wait_kind=wait_kind, wait_name=wait_name,
                                           wait_until=wait_until)
            return released, released

        return self._mutate(workflow_id, change)

    @guarded("refresh")
    def refresh(self, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
        """One read of the document, checked for the lease (nothing is written).

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """
        doc, _ = self._read(workflow_id)
        state = self._decode(workflow_id, doc, with_history=False).state
        return transitions.refresh(state, workflow_id, run_id, owner)

    @guarded("renew")
    def renew(self, workflow_id: str, run_id: str, owner: str, lease_until: datetime) -> bool:
        """Move the lease expiry in compare-and-set rounds; ``False`` (no write) if it is lost."""
        def change(run: Run) -> tuple[bool, bool]:
            renewed = transitions.renew(run.state, workflow_id, run_id, owner, lease_until)
            return renewed, renewed

        return self._mutate(workflow_id, change)

    @guarded("add_signal")
    def add_signal(self, workflow_id: str, signal: Signal, now: datetime) -> Signal:
        """File ``signal`` under the document's next inbox id and wake the run, in
        compare-and-set rounds, so a racing writer cannot drop it.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the run has ended.
        """
        def change(run: Run) -> tuple[bool, Signal]:
            accepted = transitions.add_signal(run.state, workflow_id, signal, now,
                                              last_id=run.signal_seq)
            run.signal_seq = accepted.id
            return True, accepted

        return self._mutate(workflow_id, change)

    @guarded("request_cancel")
    def request_cancel(self, workflow_id: str, now: datetime) -> WorkflowState:
        """Flag the open run cancel-requested and wake it, in compare-and-set rounds.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the run has ended.
        """
        def change(run: Run) -> tuple[bool, WorkflowState]:
            return True, transitions.request_cancel(run.state, workflow_id, now)

        return self._mutate(workflow_id, change)

    @guarded("due")
    def due(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of the due runs, soonest wake-up first, from one pass over every document."""
        return transitions.due(self._states(), now, limit)

    # -- retention -----------------------------------------------------------------------------

    def _remove_at(self, workflow_id: str, revision: Any) -> bool:
        """Delete the run's document if it is still at ``revision``; ``False`` if it moved on.

        A backend with compare-and-set implements it (retention needs it); the default says so.
        """
        raise NotImplementedError(
            f"the {self.backend_name} workflow store cannot delete a run at a revision")

    def _ended(self, before: datetime, limit: int, status: WorkflowStatus | None = None,
               workflow_type: str | None = None) -> list[str]:
        """Ids of ended runs whose ``ended_at`` is before ``before`` (of ``status`` and
        ``workflow_type`` when given), oldest end first, at most ``limit`` (``limit <= 0``: all);
        a backend with an index of end times overrides it."""
        ended = sorted((s.ended_at, s.workflow_id) for s in self._states()
                       if _ended_before(s, before, status, workflow_type))
        return [workflow_id for _, workflow_id in (ended[:limit] if limit > 0 else ended)]

    def _remove_if_ended(self, workflow_id: str, before: datetime,
                         status: WorkflowStatus | None = None,
                         workflow_type: str | None = None) -> bool:
        """Delete the run if, read afresh, it ended before ``before`` (with ``status`` and
        ``workflow_type`` when given); at the revision read."""
        with self._serialised():
            for _ in range(self.conflict_attempts):
                doc, revision = self._read(workflow_id)
                try:
                    state = self._decode(workflow_id, doc, with_history=False).state
                except StoreError:
                    return False  # not a run: not ours to delete
                if not _ended_before(state, before, status, workflow_type):
                    return False
                if self._remove_at(workflow_id, revision):
                    return True
        return False  # it keeps changing: the next pass looks again

    @guarded("purge_ended")
    def purge_ended(self, before: datetime, *, limit: int = 500,
                    status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> list[str]:
        """The candidates of ``_ended``, each read again and removed at the revision read (so
        one that was resumed or replaced meanwhile, or no longer matches the filters, stays)."""
        if not self.supports_purge:
            raise self.purge_unsupported("purge_ended")
        filters = purge_filters(status, workflow_type)  # only those given: ``_ended`` as before
        if limit <= 0:
            return []
        return [i for i in self._ended(before, limit, **filters)
                if self._remove_if_ended(i, before, **filters)]

    @guarded("count_ended")
    def count_ended(self, before: datetime, *, status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> int:
        """How many ids ``_ended`` finds (nothing is read twice or written)."""
        if not self.supports_purge:
            raise self.purge_unsupported("count_ended")
        return len(self._ended(before, 0, **purge_filters(status, workflow_type)))


def _ended_before(state: WorkflowState | None, before: datetime, status: WorkflowStatus | None,
                  workflow_type: str | None) -> bool:
    """Whether ``state`` is an ended run with an end time before ``before``, of ``status`` and
    ``workflow_type`` when given (what retention deletes)."""
    return (state is not None and not state.is_open and state.ended_at is not None
            and state.ended_at < before and (status is None or state.status == status)
            and (workflow_type is None or state.workflow_type == workflow_type))
