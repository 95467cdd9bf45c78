"""The ``django`` store (the default): runs, histories and signal inboxes in a Django database.

Tables (``beluga_workflows.models``): one ``WorkflowState`` row per workflow id holding its latest
run, one ``HistoryEvent`` row per event (appended, never rewritten) and one ``PendingSignal`` row
per signal not yet consumed (consuming deletes it). Starting a new run of an ended id deletes the
old run with its events and signals in the same transaction, as the store contract says.

Every write that depends on the run's state is a conditional ``UPDATE`` whose row count decides:

- ``claim`` sets the lease only where nobody holds an unexpired one, so one caller wins;
- ``append``, ``suspend``, ``renew`` are fenced on ``lease_owner`` (and ``append`` on the last
  event's number, ``suspend`` on ``wake_seq``), so a worker that lost its lease writes nothing;
- ``add_signal`` / ``request_cancel`` bump ``wake_seq`` only where the run is still open, in the
  same transaction as the inbox insert, so a signal can neither land in an ended run nor slip past
  a suspension.

This module runs them through the ORM, as short transactions. On SQLite, ``DjangoStore(...)``
builds an ``SqliteDjangoStore`` (``sqlite.py``): each write operation one transaction holding the
write lock from its start, and a busy or locked database retried. On PostgreSQL, ``DjangoStore(...)`` builds a
``PostgresDjangoStore`` (``postgres.py``) instead, whose hot operations are single statements: one
round trip and one commit per checkpoint. Each hot operation's database work is a method of its
own here (``_take_lease``, ``_append_row``, ``_release``, ``_file_signal`` ...), which that
subclass overrides; what the operation decides around it is written once, here.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, DataError, IntegrityError, connections, transaction
from django.db.models import Count, F, Q

from ... import models
from ...engine.errors import (
    ConflictError,
    InvalidInputError,
    StoreError,
    WorkflowError,
)
from ...engine.parallel import outcome_inbox
from ...engine.types import HistoryEvent, Signal, WorkflowFilter, WorkflowState, WorkflowStatus
from ..base import (
    RunEnd,
    WorkflowStore,
    already_open,
    check_history,
    guarded,
    lease_lost,
    no_open_run,
    purge_filter,
)
from .events import DjangoEventStore, wake_changes
from .flow import DjangoFlowControl
from .rows import (
    end_values,
    event_row,
    from_event_row,
    from_signal_row,
    run_row,
    state_from_values,
)

__all__ = ["DjangoStore"]

RUNNING = WorkflowStatus.RUNNING.value
# Columns of a run without its input: what writes return (the input never changes after create).
CONTROL_FIELDS = [f.attname for f in models.WorkflowState._meta.concrete_fields if f.name != "input"]
RUN_FIELDS = CONTROL_FIELDS + ["input"]


def _next_char(char: str) -> str:
    """The code point after ``char`` (surrogates, which cannot be encoded, skipped)."""
    following = ord(char) + 1
    return chr(0xE000 if 0xD800 <= following <= 0xDFFF else following)


class DjangoStore(DjangoFlowControl, DjangoEventStore, WorkflowStore):
    """Runs in the Django database ``using`` (an alias of ``DATABASES``, default ``"default"``).

    Needs the app's migrations applied on that database and ``USE_TZ = True``. Safe under
    concurrency on PostgreSQL and SQLite: any number of threads and processes may share it. It
    keeps events (``events.py``) and enforces flow control (``flow.py``). ``DjangoStore(using=...)`` of a PostgreSQL alias is a ``PostgresDjangoStore`` (a subclass),
    of an SQLite alias an ``SqliteDjangoStore``; a subclass of ``DjangoStore`` is built as itself.
    """

    backend_name = "django"
    backend_errors = (DatabaseError,)

    def __new__(cls, using: str = "default", **options: Any) -> DjangoStore:
        if cls is DjangoStore and isinstance(using, str) and using in connections.settings:
            vendor = connections[using].vendor
            if vendor == "postgresql":
                from .postgres import PostgresDjangoStore

                cls = PostgresDjangoStore
            elif vendor == "sqlite":
                from .sqlite import SqliteDjangoStore

                cls = SqliteDjangoStore
        return super().__new__(cls)

    def __init__(self, using: str = "default", **options: Any) -> None:
        super().__init__(using=using, **options)
        if options:
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"] has unknown option(s) for the django store: '
                f"{', '.join(sorted(options))}; it takes only 'using' (a DATABASES alias)"
            )
        if not isinstance(using, str) or using not in connections.settings:
            known = ", ".join(connections.settings) or "none"
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"]["using"] = {using!r} is not a database alias '
                f"of DATABASES (it has: {known})"
            )
        if not settings.USE_TZ:
            raise ImproperlyConfigured("the django workflow store needs USE_TZ = True")
        self.using = using
        # SQLite's LIKE ignores case: an id prefix is a range over the id index there.
        self._prefix_as_range = connections[using].vendor == "sqlite"

    @property
    def database_alias(self) -> str:
        """The ``DATABASES`` alias the runs live in."""
        return self.using

    def on_commit(self, fn: Callable[[], Any]) -> None:
        """``fn`` once the caller's transaction on ``using`` commits (now, outside one)."""
        transaction.on_commit(fn, using=self.using)

    # -- plumbing -----------------------------------------------------------------------------------

    @property
    def _runs(self):
        return models.WorkflowState.objects.using(self.using)

    @property
    def _events(self):
        return models.HistoryEvent.objects.using(self.using)

    @property
    def _inbox(self):
        return models.PendingSignal.objects.using(self.using)

    def backend_error(self, operation: str, exc: BaseException) -> WorkflowError:
        """A value the database refused is ``InvalidInputError``; any other database failure is a
        ``StoreError`` (with a hint when the tables are missing), its broken connection dropped."""
        if isinstance(exc, DataError):
            return InvalidInputError(
                f"django store: the database {self.using!r} refused a value in {operation}: {exc}")
        self._drop_broken_connection()
        text = str(exc)
        hint = ""
        if "no such table" in text or ("relation" in text and "does not exist" in text):
            hint = " (are the beluga_workflows migrations applied? run `manage.py migrate`)"
        return StoreError(f"django store: {operation} failed on database {self.using!r}: {exc}{hint}")

    def _drop_broken_connection(self) -> None:
        # A server restart leaves a dead connection; drop it so the next call reconnects.
        connection = connections[self.using]
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()

    def _leased(self, workflow_id: str, run_id: str, owner: str):
        return self._runs.filter(pk=run_id, workflow_id=workflow_id, lease_owner=owner, status=RUNNING)

    def _insert(self, state: WorkflowState, version: int, signals: bool) -> None:
        self._runs.bulk_create([run_row(state, version)])
        if state.history:
            self._events.bulk_create([event_row(state.run_id, e) for e in state.history])
        if signals and state.signals:
            # Inbox ids are the store's own: the signals are filed again, in order, under new ids.
            self._inbox.bulk_create([
                models.PendingSignal(run_id=state.run_id, name=s.name, payload=s.payload,
                                     sent_at=s.sent_at or state.updated_at, sender_id=s.sender_id)
                for s in state.signals
            ])

    # -- reads the PostgreSQL subclass sends as prepared statements -----------------------------

    def _run_values(self, workflow_id: str) -> dict[str, Any] | None:
        """Every column of the run row of ``workflow_id``, or ``None``."""
        return self._runs.filter(workflow_id=workflow_id).values(*RUN_FIELDS).first()

    def _pending(self, run_id: str) -> list[Signal]:
        """The run's unconsumed signals, oldest first."""
        return [from_signal_row(row) for row in self._inbox.filter(run_id=run_id).order_by("id")]

    def _history(self, run_id: str) -> list[HistoryEvent]:
        """The run's events in order."""
        return [from_event_row(row) for row in self._events.filter(run_id=run_id).order_by("seq")]

    def _contents(self, run_id: str) -> tuple[list[HistoryEvent], list[Signal]]:
        """The run's events and unconsumed signals (what a claim reads)."""
        signals = self._pending(run_id)
        return self._history(run_id), signals

    # -- the public contract -----------------------------------------------------------------------

    @guarded("save")
    def save(self, state: WorkflowState) -> None:
        """Overwrite the run of ``state.workflow_id`` with ``state``, history and inbox included."""
        check_history(state)
        for attempt in range(3):
            try:
                with transaction.atomic(using=self.using):
                    prior = (self._runs.select_for_update().filter(workflow_id=state.workflow_id)
                             .values_list("version", flat=True).first())
                    self._runs.filter(workflow_id=state.workflow_id).delete()
                    self._insert(state, prior + 1 if prior is not None else max(state.version, 1),
                                 signals=True)
                return
            except IntegrityError:
                # A concurrent save or create inserted the id first: overwrite it (last one wins).
                if attempt == 2 or self._runs.filter(pk=state.run_id).exclude(
                        workflow_id=state.workflow_id).exists():
                    raise
        raise AssertionError("unreachable")

    @guarded("load")
    def load(self, workflow_id: str, *, with_history: bool = True) -> WorkflowState | None:
        """One query of the run row, one of its inbox and (``with_history``) one of its events."""
        row = self._run_values(workflow_id)
        if row is None:
            return None
        # The run row (its wake_seq) is read before the inbox: every signal it counts is listed.
        return state_from_values(row, signals=self._pending(row["run_id"]),
                                 history=self._history(row["run_id"]) if with_history else ())

    @guarded("list")
    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """One filtered, ordered and sliced query of run rows, then their inboxes in batches of
        500 runs; no history is read.
        """
        filter = filter or WorkflowFilter()
        runs = self._filtered(filter).order_by("-created_at", "-run_id").values(*RUN_FIELDS)
        offset = max(filter.offset, 0)
        rows = list(runs[offset:offset + filter.limit] if filter.limit > 0 else runs[offset:])
        inbox: dict[str, list[Signal]] = {}
        run_ids = [row["run_id"] for row in rows]
        for start in range(0, len(run_ids), 500):
            for signal in self._inbox.filter(run_id__in=run_ids[start:start + 500]).order_by("id"):
                inbox.setdefault(signal.run_id, []).append(from_signal_row(signal))
        return [state_from_values(row, signals=inbox.get(row["run_id"], ())) for row in rows]

    def _filtered(self, filter: WorkflowFilter):
        runs = self._runs.all()
        if filter.status is not None:
            runs = runs.filter(status=WorkflowStatus(filter.status).value)
        if filter.workflow_type:
            runs = runs.filter(workflow_type=filter.workflow_type)
        if filter.wait_kind:
            runs = runs.filter(status=RUNNING, wait_kind=filter.wait_kind)
        if filter.parent_id:
            runs = runs.filter(parent_id=filter.parent_id)
        prefix = filter.workflow_id_prefix
        if prefix and self._prefix_as_range:
            # A range over the id index (binary order), which ignores no case.
            runs = runs.filter(workflow_id__gte=prefix)
            stem = prefix.rstrip(chr(0x10FFFF))
            if stem:
                runs = runs.filter(workflow_id__lt=stem[:-1] + _next_char(stem[-1]))
        elif prefix:
            # PostgreSQL answers a prefix LIKE from the id's varchar_pattern_ops index.
            runs = runs.filter(workflow_id__startswith=prefix)
        return runs

    @guarded("delete")
    def delete(self, workflow_id: str) -> None:
        """Delete the id's run row, its events, inbox rows and event waits with it (the ORM
        cascades); a missing id deletes nothing.
        """
        self._runs.filter(workflow_id=workflow_id).delete()

    @guarded("load_operation")
    def load_operation(self, workflow_id: str, op: int, signal_name: str) -> WorkflowState | None:
        """One query of the run row, one of operation ``op``'s events, one of the inbox rows
        named ``signal_name``."""
        row = self._run_values(workflow_id)
        if row is None:
            return None
        run_id = row["run_id"]
        signals = [from_signal_row(r) for r in
                   self._inbox.filter(run_id=run_id, name=signal_name).order_by("id")]
        history = [from_event_row(r) for r in
                   self._events.filter(run_id=run_id, op=op).order_by("seq")]
        return state_from_values(row, signals=signals, history=history)

    @guarded("count")
    def count(self, filter: WorkflowFilter | None = None) -> int:
        """One ``COUNT`` query over the run rows ``filter`` selects."""
        return self._filtered(filter or WorkflowFilter()).count()

    @guarded("count_by_status")
    def count_by_status(self) -> dict[str, int]:
        """One ``GROUP BY status`` query, the statuses without runs filled in as zeros."""
        counts = {s.value: 0 for s in WorkflowStatus}
        for row in self._runs.order_by().values("status").annotate(n=Count("run_id")):
            counts[row["status"]] = row["n"]
        return counts

    @guarded("count_children")
    def count_children(self, workflow_ids: Iterable[str]) -> dict[str, int]:
        """One ``GROUP BY parent_id`` query over the children index."""
        ids = [i for i in dict.fromkeys(workflow_ids) if i]
        rows = (self._runs.filter(parent_id__in=ids).order_by().values("parent_id")
                .annotate(n=Count("run_id"))) if ids else ()
        return {row["parent_id"]: row["n"] for row in rows}

    @guarded("history")
    def history(self, workflow_id: str, *, after: int = 0, limit: int = 0) -> list[HistoryEvent]:
        """One query of the id's event rows numbered above ``after``, in order (no run row read)."""
        rows = self._events.filter(run__workflow_id=workflow_id, seq__gt=after).order_by("seq")
        return [from_event_row(row) for row in (rows[:limit] if limit > 0 else rows)]

    # -- what the engine needs ---------------------------------------------------------------------

    @guarded("create")
    def create(self, state: WorkflowState) -> None:
        """Insert the run, its events and its inbox in one transaction that first deletes an ended
        run of the id; the unique ``workflow_id`` column refuses a second open run.

        Raises:
            WorkflowAlreadyExistsError: the id's run is still open.
            InvalidInputError: two events of the history share an id.
        """
        check_history(state)
        self._replace_ended(state)

    def _replace_ended(self, state: WorkflowState) -> None:
        """Insert the new run, deleting an ended run of its id in the same transaction.

        Raises:
            WorkflowAlreadyExistsError: the id's run is still open.
        """
        try:
            with transaction.atomic(using=self.using):
                self._runs.filter(workflow_id=state.workflow_id).exclude(status=RUNNING).delete()
                self._insert(state, 1, signals=True)
        except IntegrityError:
            existing = self._runs.filter(workflow_id=state.workflow_id).values("run_id").first()
            if existing is None:
                raise
            raise already_open(state.workflow_id, existing["run_id"]) from None

    @guarded("claim")
    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> WorkflowState | None:
        """One conditional UPDATE that sets the lease only where it is free or expired, so one
        caller wins; the winner then reads the run row, its events and its inbox (on PostgreSQL:
        one statement, then one ``UNION ALL`` read).
        """
        row = self._take_lease(workflow_id, owner, lease_until, now)
        if row is None:
            return None
        # We hold the lease, so the history cannot move; the inbox is read after the run row.
        history, signals = self._contents(row["run_id"])
        return state_from_values(row, signals=signals, history=history)

    def _take_lease(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
                    ) -> dict[str, Any] | None:
        """Every column of the run once ``owner`` holds its lease; ``None`` if it is not free."""
        free = Q(lease_owner="") | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
        won = self._runs.filter(free, workflow_id=workflow_id, status=RUNNING).update(
            lease_owner=owner, lease_expires_at=lease_until, version=F("version") + 1)
        if not won:
            return None
        return (self._runs.filter(workflow_id=workflow_id, lease_owner=owner, status=RUNNING)
                .values(*RUN_FIELDS).first())

    @guarded("append")
    def append(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent], *,
               lease_until: datetime, consume_signal: int | None = None,
               end: RunEnd | None = None, consume_signals: tuple[int, ...] = ()) -> WorkflowState:
        """One UPDATE fenced on the lease and on the last event's number, with the event inserts
        and the consumed signals' delete, in one transaction (one statement on PostgreSQL).

        Raises:
            ConflictError: the lease is lost, or another writer took the events' numbers.
        """
        try:
            consumed = (*(() if consume_signal is None else (consume_signal,)), *consume_signals)
            row = self._releasing(end, run_id, lambda: self._append_row(
                workflow_id, run_id, owner, events, lease_until, consumed, end))
        except IntegrityError:  # an event number already taken: another writer got there first
            row = None
        if row is None:
            raise lease_lost(workflow_id)
        return state_from_values(row)

    def _append_row(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent],
                    lease_until: datetime, consumed: tuple[int, ...], end: RunEnd | None
                    ) -> dict[str, Any] | None:
        """The checkpoint's writes: the run's control columns after them, ``None`` if fenced off."""
        fence = self._leased(workflow_id, run_id, owner)
        changes: dict[str, Any] = {"version": F("version") + 1, "lease_expires_at": lease_until}
        if events:
            # No gap and no rewrite: the first new event must follow the last stored one.
            fence = fence.filter(Q(last_event_id=events[0].id - 1) | Q(last_event_id=0))
            changes.update(updated_at=events[-1].timestamp, last_event_id=events[-1].id)
        if end is not None:
            changes.update(end_values(end, events[-1].timestamp if events else F("updated_at")))
        with transaction.atomic(using=self.using):
            if not fence.update(**changes):
                return None
            if events:
                self._events.bulk_create([event_row(run_id, e) for e in events])
            if consumed:
                self._inbox.filter(pk__in=consumed, run_id=run_id).delete()
            return self._runs.filter(pk=run_id).values(*CONTROL_FIELDS).get()

    @guarded("continue_as_new")
    def continue_as_new(self, workflow_id: str, run_id: str, owner: str,
                        following: WorkflowState) -> None:
        """In one transaction: lock the leased run's row, pass its concurrency slots and
        ``cancel_on`` waits to the new run, delete it (its events, inbox and other waits go
        with it) and insert ``following`` with the old inbox filed again in order.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """
        using = self.using
        with transaction.atomic(using=using):
            row = (self._leased(workflow_id, run_id, owner).select_for_update()
                   .values_list("version", "cancel_requested", "wake_seq").first())
            if row is None:
                raise lease_lost(workflow_id)
            version, canceled, wake_seq = row
            new = copy.copy(following)
            new.signals = [s for s in self._pending(run_id) if not outcome_inbox(s.name)]
            # A cancel that came after the worker last looked is the next run's to deliver.
            new.cancel_requested, new.wake_seq = canceled, wake_seq
            models.ConcurrencySlot.objects.using(using).filter(run_id=run_id).update(
                run_id=new.run_id)
            models.EventWait.objects.using(using).filter(run_id=run_id, op__lte=0).update(
                run_id=new.run_id)
            self._runs.filter(pk=run_id).delete()
            self._insert(new, version + 1, signals=True)

    @guarded("suspend")
    def suspend(self, workflow_id: str, run_id: str, owner: str, *, seen_wake_seq: int,
                wake_at: datetime | None, wait_kind: str, wait_name: str,
                wait_until: datetime | None) -> bool:
        """One UPDATE fenced on the lease and on ``wake_seq``; when it matches nothing, a read of
        the leased row tells a signal that came in (``False``) from a lost lease.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """
        if self._release(workflow_id, run_id, owner, seen_wake_seq=seen_wake_seq, wake_at=wake_at,
                         wait_kind=wait_kind, wait_name=wait_name, wait_until=wait_until):
            return True
        if self._leased(workflow_id, run_id, owner).exists():
            return False  # a signal or cancel came in after the worker looked
        raise lease_lost(workflow_id)

    def _release(self, workflow_id: str, run_id: str, owner: str, *, seen_wake_seq: int,
                 wake_at: datetime | None, wait_kind: str, wait_name: str,
                 wait_until: datetime | None) -> bool:
        """Release the lease if ``wake_seq`` is still ``seen_wake_seq``; ``False`` if not (or lost)."""
        return bool(self._leased(workflow_id, run_id, owner).filter(wake_seq=seen_wake_seq).update(
            lease_owner="", lease_expires_at=None, wake_at=wake_at, wait_kind=wait_kind,
            wait_name=wait_name, wait_until=wait_until, version=F("version") + 1))

    @guarded("refresh")
    def refresh(self, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
        """One read of the leased run's control columns, then one of its inbox.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """
        row = self._leased(workflow_id, run_id, owner).values(*CONTROL_FIELDS).first()
        if row is None:
            raise lease_lost(workflow_id)
        return state_from_values(row, signals=self._pending(run_id))

    @guarded("renew")
    def renew(self, workflow_id: str, run_id: str, owner: str, lease_until: datetime) -> bool:
        """One UPDATE of the lease expiry fenced on the lease; ``False`` when it matched no row."""
        return bool(self._leased(workflow_id, run_id, owner).update(lease_expires_at=lease_until))

    @guarded("add_signal")
    def add_signal(self, workflow_id: str, signal: Signal, now: datetime) -> Signal:
        """In one transaction, lock the open run's row, bump its ``wake_seq`` and insert the inbox
        row; tried again (up to three times) when a new run of the id started in between.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the run has ended.
            ConflictError: the id's run kept changing under three attempts.
        """
        sent_at = signal.sent_at or now
        signal_id = self._open_run(
            workflow_id, lambda: self._file_signal(workflow_id, signal, sent_at, now))
        return Signal(name=signal.name, payload=signal.payload, sent_at=sent_at,
                      sender_id=signal.sender_id, id=signal_id)

    def _file_signal(self, workflow_id: str, signal: Signal, sent_at: datetime, now: datetime
                     ) -> int | None:
        """Wake the open run and file ``signal`` in its inbox: the inbox id, or ``None``."""
        with transaction.atomic(using=self.using):
            run_id = self._wake(workflow_id, now)
            if run_id is None:
                return None
            return self._inbox.create(run_id=run_id, name=signal.name, payload=signal.payload,
                                      sent_at=sent_at, sender_id=signal.sender_id or "").pk

    @guarded("deliver_signal")
    def deliver_signal(self, workflow_id: str, signal: Signal, now: datetime
                       ) -> tuple[Signal, bool]:
        """``add_signal``, then one read of the run's lease and ``wake_at``, after the signal's
        commit (a holder then either saw it or cannot suspend past it)."""
        accepted = self.add_signal(workflow_id, signal, now)
        if connections[self.using].in_atomic_block:  # not committed yet: no promise
            return accepted, False
        row = (self._runs.filter(workflow_id=workflow_id, status=RUNNING)
               .values_list("lease_owner", "lease_expires_at", "wake_at").first())
        if row is None:
            return accepted, False
        owner, expires, wake_at = row
        if owner:
            return accepted, expires is not None and expires > now
        return accepted, wake_at is not None and wake_at < now

    @guarded("request_cancel")
    def request_cancel(self, workflow_id: str, now: datetime) -> WorkflowState:
        """In one transaction, lock the open run's row, set ``cancel_requested`` and bump its
        ``wake_seq``; tried again when a new run of the id started in between.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the run has ended.
            ConflictError: the id's run kept changing under three attempts.
        """
        row = self._open_run(workflow_id, lambda: self._cancel_row(workflow_id, now))
        return state_from_values(row, signals=self._pending(row["run_id"]))

    def _cancel_row(self, workflow_id: str, now: datetime) -> dict[str, Any] | None:
        """Flag the open run as cancel-requested and wake it: every column after, or ``None``."""
        with transaction.atomic(using=self.using):
            run_id = self._wake(workflow_id, now, cancel_requested=True)
            return self._runs.filter(pk=run_id).values(*RUN_FIELDS).get() if run_id else None

    def _wake(self, workflow_id: str, now: datetime, **changes: Any) -> str | None:
        """Bump wake_seq of the open run, inside the caller's transaction: its run id, or None."""
        run_id = (self._runs.select_for_update().filter(workflow_id=workflow_id, status=RUNNING)
                  .values_list("run_id", flat=True).first())
        if run_id is None or not self._runs.filter(pk=run_id, status=RUNNING).update(
                **wake_changes(now), **changes):
            return None
        return run_id

    def _open_run(self, workflow_id: str, attempt: Callable[[], Any]) -> Any:
        """``attempt()``'s result once it finds the open run; else why there is none."""
        for _ in range(3):
            result = attempt()
            if result is not None:
                return result
            status = (self._runs.filter(workflow_id=workflow_id)
                      .values_list("status", flat=True).first())
            if status != RUNNING:
                raise no_open_run(workflow_id, status)
            # A new run of the id started between the two reads: deliver to it.
        raise ConflictError(f"workflow {workflow_id!r} kept changing", workflow_id=workflow_id)

    @guarded("due")
    def due(self, now: datetime, limit: int = 500) -> list[str]:
        """One query on the ``(status, wake_at)`` index: open runs whose ``wake_at`` passed and
        whose lease is free or expired, soonest first.
        """
        if limit <= 0:
            return []
        free = Q(lease_owner="") | Q(lease_expires_at__isnull=False, lease_expires_at__lte=now)
        rows = (self._runs.filter(free, status=RUNNING, wake_at__isnull=False, wake_at__lte=now)
                .order_by("wake_at").values_list("workflow_id", flat=True))
        return list(rows[:limit])

    # -- retention ---------------------------------------------------------------------------------

    supports_purge = True

    def _ended_before(self, before: datetime, status: WorkflowStatus | None = None,
                      workflow_type: str | None = None):
        """Ended runs whose ``ended_at`` is before ``before``, of ``status`` and ``workflow_type``
        when given (the ``beluga_wf_ended_idx`` index: its condition stays in the query)."""
        runs = self._runs.exclude(status=RUNNING).filter(ended_at__lt=before)
        if status is not None:
            runs = runs.filter(status=status.value)
        if workflow_type is not None:
            runs = runs.filter(workflow_type=workflow_type)
        return runs

    @guarded("purge_ended")
    def purge_ended(self, before: datetime, *, limit: int = 500,
                    status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> list[str]:
        """One transaction: one ``SELECT ... ORDER BY ended_at LIMIT limit FOR UPDATE SKIP
        LOCKED`` picks and locks the oldest ended runs (a run a worker is writing is left for the
        next pass); one ``DELETE`` per table then removes those runs' events, inbox rows, event
        waits and slots by run id (the ORM's cascade, so a table added later goes too), and one
        the run rows, picked again under the same condition. Every statement names at most
        ``limit`` runs. On SQLite the transaction holds the write lock from its start. The
        filters narrow both the pick and the delete.
        """
        status, workflow_type = purge_filter(status, workflow_type)
        if limit <= 0:
            return []
        connection = connections[self.using]
        ended = functools.partial(self._ended_before, before, status, workflow_type)
        oldest = ended().order_by("ended_at", "run_id")
        if connection.features.has_select_for_update_skip_locked:
            oldest = oldest.select_for_update(skip_locked=True)
        with transaction.atomic(using=self.using):
            picked = list(oldest.values_list("run_id", "workflow_id")[:limit])
            run_ids = [run_id for run_id, _ in picked]
            if not picked:
                return []
            _, deleted = ended().filter(pk__in=run_ids).only("pk").delete()
            if deleted.get(models.WorkflowState._meta.label, 0) < len(picked):
                # Without row locks a run may have moved on since it was picked: it stayed.
                kept = set(self._runs.filter(pk__in=run_ids).values_list("pk", flat=True))
                picked = [(r, w) for r, w in picked if r not in kept]
        return [workflow_id for _, workflow_id in picked]

    @guarded("count_ended")
    def count_ended(self, before: datetime, *, status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> int:
        """One ``COUNT`` over the ``beluga_wf_ended_idx`` index (the filters as conditions)."""
        return self._ended_before(before, *purge_filter(status, workflow_type)).count()

    def close(self) -> None:
        """Nothing to do: Django owns the database connections (closed per request/task)."""
