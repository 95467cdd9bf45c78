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

On PostgreSQL the row lock taken by each ``UPDATE`` serialises writers of one run and the hot
operations are single statements (data-modifying CTEs, see ``django_postgres.py``): one round
trip and one commit per checkpoint. Elsewhere (SQLite) they run as short transactions through the ORM; SQLite
serialises writers, and ``"transaction_mode": "IMMEDIATE"`` (as in the example project's settings)
makes a transaction take the write lock up front instead of failing on upgrade.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, DataError, IntegrityError, connections, transaction
from django.db.models import Case, Count, F, Q, Value, When

from .. import models
from ..engine.errors import (
    ConflictError,
    InvalidInputError,
    StoreError,
    WorkflowAlreadyExistsError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ..engine.types import (
    HistoryEvent,
    Signal,
    WorkflowFilter,
    WorkflowState,
    WorkflowStatus,
)
from .base import RunEnd, RunWatch, WorkflowStore
from .django_rows import (
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
_F = TypeVar("_F", bound=Callable[..., Any])


def _next_char(char: str) -> str:
    """The code point after ``char`` (surrogates, which cannot be encoded, skipped)."""
    following = ord(char) + 1
    return chr(0xE000 if 0xD800 <= following <= 0xDFFF else following)


def _guarded(operation: str) -> Callable[[_F], _F]:
    """Turn database failures of ``operation`` into ``StoreError`` / ``InvalidInputError``."""

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: DjangoStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except WorkflowError:
                raise
            except DataError as exc:
                raise InvalidInputError(
                    f"django store: the database {self.using!r} refused a value in {operation}: {exc}"
                ) from exc
            except DatabaseError as exc:
                self._drop_broken_connection()
                hint = ""
                text = str(exc)
                if "no such table" in text or ("relation" in text and "does not exist" in text):
                    hint = " (are the beluga_workflows migrations applied? run `manage.py migrate`)"
                raise StoreError(
                    f"django store: {operation} failed on database {self.using!r}: {exc}{hint}"
                ) from exc

        return wrapper  # type: ignore[return-value]

    return decorate


class DjangoStore(WorkflowStore):
    """Runs in the Django database ``using`` (an alias of ``DATABASES``, default ``"default"``).

    Needs the app's migrations applied on that database and ``USE_TZ = True``. Safe under
    concurrency on PostgreSQL and SQLite: any number of threads and processes may share it.
    """

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

    def _postgres(self):
        """The PostgreSQL statements when ``using`` is PostgreSQL, else ``None``."""
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            return None
        from .django_postgres import PostgresStatements

        return PostgresStatements.for_connection(connection)

    def _drop_broken_connection(self) -> None:
        # A server restart leaves a dead connection; drop it so the next call reconnects.
        connection = connections[self.using]
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()

    def _pending(self, run_id: str) -> list[Signal]:
        pg = self._postgres()
        if pg is not None:
            return pg.pending(run_id)
        return [from_signal_row(row) for row in self._inbox.filter(run_id=run_id).order_by("id")]

    def _history(self, run_id: str) -> list[HistoryEvent]:
        pg = self._postgres()
        if pg is not None:
            return pg.history(run_id)
        return [from_event_row(row) for row in self._events.filter(run_id=run_id).order_by("seq")]

    def _leased(self, workflow_id: str, run_id: str, owner: str):
        return self._runs.filter(pk=run_id, workflow_id=workflow_id, lease_owner=owner, status=RUNNING)

    @staticmethod
    def _woken(now: datetime) -> dict[str, Any]:
        """What a signal or cancel writes: bump wake_seq and make the run due now."""
        return {
            "wake_seq": F("wake_seq") + 1, "version": F("version") + 1, "updated_at": now,
            "wake_at": Case(When(Q(wake_at__isnull=True) | Q(wake_at__gt=now), then=Value(now)),
                            default=F("wake_at")),
        }

    def _insert(self, state: WorkflowState, version: int, signals: bool) -> None:
        self._runs.bulk_create([run_row(state, version)])
        if state.history:
            self._events.bulk_create(
                [event_row(state.run_id, e) for e in state.history]
            )
        if signals and state.signals:
            # Inbox ids are the store's own: the signals are filed again, in order, under new ids.
            self._inbox.bulk_create([
                models.PendingSignal(run_id=state.run_id, name=s.name, payload=s.payload,
                                     sent_at=s.sent_at or state.updated_at, sender_id=s.sender_id)
                for s in state.signals
            ])

    @staticmethod
    def _check_history(state: WorkflowState) -> None:
        ids = [e.id for e in state.history]
        if len(set(ids)) != len(ids):
            raise InvalidInputError(
                f"history of {state.workflow_id!r} has duplicate event ids", workflow_id=state.workflow_id
            )

    # -- the public contract -----------------------------------------------------------------------

    @_guarded("save")
    def save(self, state: WorkflowState) -> None:
        """Overwrite the run of ``state.workflow_id`` with ``state``, history and inbox included."""
        self._check_history(state)
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

    @_guarded("load")
    def load(self, workflow_id: str, *, with_history: bool = True) -> WorkflowState | None:
        pg = self._postgres()
        if pg is not None:  # prepared: handle.result() and the admin read runs this way
            row = pg.load(workflow_id)
        else:
            row = self._runs.filter(workflow_id=workflow_id).values(*RUN_FIELDS).first()
        if row is None:
            return None
        # The run row (its wake_seq) is read before the inbox: every signal it counts is listed.
        return state_from_values(row, signals=self._pending(row["run_id"]),
                      history=self._history(row["run_id"]) if with_history else ())

    @_guarded("list")
    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
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
        prefix = filter.workflow_id_prefix
        if prefix:
            if connections[self.using].vendor == "sqlite":
                # SQLite's LIKE ignores case; a range over the id index (binary order) does not.
                runs = runs.filter(workflow_id__gte=prefix)
                stem = prefix.rstrip(chr(0x10FFFF))
                if stem:
                    runs = runs.filter(workflow_id__lt=stem[:-1] + _next_char(stem[-1]))
            else:
                # PostgreSQL answers a prefix LIKE from the id's varchar_pattern_ops index.
                runs = runs.filter(workflow_id__startswith=prefix)
        return runs

    @_guarded("delete")
    def delete(self, workflow_id: str) -> None:
        self._runs.filter(workflow_id=workflow_id).delete()

    @_guarded("count")
    def count(self, filter: WorkflowFilter | None = None) -> int:
        return self._filtered(filter or WorkflowFilter()).count()

    @_guarded("count_by_status")
    def count_by_status(self) -> dict[str, int]:
        counts = {s.value: 0 for s in WorkflowStatus}
        for row in self._runs.order_by().values("status").annotate(n=Count("run_id")):
            counts[row["status"]] = row["n"]
        return counts

    @_guarded("history")
    def history(self, workflow_id: str, *, after: int = 0, limit: int = 0) -> list[HistoryEvent]:
        rows = self._events.filter(run__workflow_id=workflow_id, seq__gt=after).order_by("seq")
        return [from_event_row(row) for row in (rows[:limit] if limit > 0 else rows)]

    # -- what the engine needs ---------------------------------------------------------------------

    @_guarded("create")
    def create(self, state: WorkflowState) -> None:
        self._check_history(state)
        pg = self._postgres()
        if pg is not None and not state.signals:
            # One statement when the id is new (the usual case); else replace an ended run below.
            try:
                pg.create(run_row(state, 1), state.history)
                return
            except IntegrityError:
                pass
        try:
            with transaction.atomic(using=self.using):
                self._runs.filter(workflow_id=state.workflow_id).exclude(status=RUNNING).delete()
                self._insert(state, 1, signals=True)
        except IntegrityError:
            existing = self._runs.filter(workflow_id=state.workflow_id).values("run_id").first()
            if existing is None:
                raise
            raise WorkflowAlreadyExistsError(
                f"workflow {state.workflow_id!r} already has an open run ({existing['run_id']})",
                workflow_id=state.workflow_id,
            ) from None

    @_guarded("claim")
    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> WorkflowState | None:
        pg = self._postgres()
        if pg is not None:
            row = pg.claim(workflow_id, owner, lease_until, now)
        else:
            free = Q(lease_owner="") | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
            won = self._runs.filter(free, workflow_id=workflow_id, status=RUNNING).update(
                lease_owner=owner, lease_expires_at=lease_until, version=F("version") + 1)
            row = (self._runs.filter(workflow_id=workflow_id, lease_owner=owner, status=RUNNING)
                   .values(*RUN_FIELDS).first()) if won else None
        if row is None:
            return None
        # We hold the lease, so the history cannot move; the inbox is read after the run row.
        if pg is not None:
            history, signals = pg.contents(row["run_id"])
            return state_from_values(row, signals=signals, history=history)
        return state_from_values(row, signals=self._pending(row["run_id"]), history=self._history(row["run_id"]))

    @_guarded("append")
    def append(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent], *,
               lease_until: datetime, consume_signal: int | None = None,
               end: RunEnd | None = None) -> WorkflowState:
        pg = self._postgres()
        try:
            if pg is not None:
                row = pg.append(workflow_id, run_id, owner, events, lease_until=lease_until,
                                consume_signal=consume_signal, end=end)
            else:
                row = self._append_orm(workflow_id, run_id, owner, events, lease_until,
                                       consume_signal, end)
        except IntegrityError:  # an event number already taken: another writer got there first
            row = None
        if row is None:
            raise ConflictError(f"lease on {workflow_id!r} lost", workflow_id=workflow_id)
        return state_from_values(row)

    def _append_orm(self, workflow_id, run_id, owner, events, lease_until, consume_signal, end):
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
                self._events.bulk_create(
                    [event_row(run_id, e) for e in events])
            if consume_signal is not None:
                self._inbox.filter(pk=consume_signal, run_id=run_id).delete()
            return self._runs.filter(pk=run_id).values(*CONTROL_FIELDS).get()

    @_guarded("suspend")
    def suspend(self, workflow_id: str, run_id: str, owner: str, *, seen_wake_seq: int,
                wake_at: datetime | None, wait_kind: str, wait_name: str,
                wait_until: datetime | None) -> bool:
        leased = self._leased(workflow_id, run_id, owner)
        pg = self._postgres()
        if pg is not None:
            if pg.suspend(workflow_id, run_id, owner, seen_wake_seq=seen_wake_seq, wake_at=wake_at,
                          wait_kind=wait_kind, wait_name=wait_name, wait_until=wait_until):
                return True
        elif leased.filter(wake_seq=seen_wake_seq).update(
                lease_owner="", lease_expires_at=None, wake_at=wake_at, wait_kind=wait_kind,
                wait_name=wait_name, wait_until=wait_until, version=F("version") + 1):
            return True
        if leased.exists():
            return False  # a signal or cancel came in after the worker looked
        raise ConflictError(f"lease on {workflow_id!r} lost", workflow_id=workflow_id)

    @_guarded("append_and_suspend")
    def append_and_suspend(self, workflow_id: str, run_id: str, owner: str,
                           events: list[HistoryEvent], *, lease_until: datetime,
                           seen_wake_seq: int, wake_at: datetime | None, wait_kind: str,
                           wait_name: str, wait_until: datetime | None
                           ) -> tuple[WorkflowState, bool]:
        pg = self._postgres()
        if pg is None:
            return super().append_and_suspend(
                workflow_id, run_id, owner, events, lease_until=lease_until,
                seen_wake_seq=seen_wake_seq, wake_at=wake_at, wait_kind=wait_kind,
                wait_name=wait_name, wait_until=wait_until)
        try:
            row = pg.append(workflow_id, run_id, owner, events, lease_until=lease_until,
                            consume_signal=None, end=None, suspend={
                                "seen_wake_seq": seen_wake_seq, "wake_at": wake_at,
                                "wait_kind": wait_kind, "wait_name": wait_name,
                                "wait_until": wait_until})
        except IntegrityError:  # an event number already taken: another writer got there first
            row = None
        if row is None:
            raise ConflictError(f"lease on {workflow_id!r} lost", workflow_id=workflow_id)
        suspended = row.pop("suspended")
        return state_from_values(row), suspended

    @_guarded("refresh")
    def refresh(self, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
        row = self._leased(workflow_id, run_id, owner).values(*CONTROL_FIELDS).first()
        if row is None:
            raise ConflictError(f"lease on {workflow_id!r} lost", workflow_id=workflow_id)
        return state_from_values(row, signals=self._pending(run_id))

    @_guarded("renew")
    def renew(self, workflow_id: str, run_id: str, owner: str, lease_until: datetime) -> bool:
        return bool(self._leased(workflow_id, run_id, owner).update(lease_expires_at=lease_until))

    @_guarded("add_signal")
    def add_signal(self, workflow_id: str, signal: Signal, now: datetime) -> Signal:
        sent_at = signal.sent_at or now
        pg = self._postgres()

        def attempt() -> int | None:
            if pg is not None:
                return pg.add_signal(workflow_id, signal, sent_at, now)
            with transaction.atomic(using=self.using):
                run_id = self._wake(workflow_id, now)
                if run_id is None:
                    return None
                return self._inbox.create(run_id=run_id, name=signal.name, payload=signal.payload,
                                          sent_at=sent_at, sender_id=signal.sender_id or "").pk

        signal_id = self._open_run(workflow_id, attempt)
        return Signal(name=signal.name, payload=signal.payload, sent_at=sent_at,
                      sender_id=signal.sender_id, id=signal_id)

    @_guarded("request_cancel")
    def request_cancel(self, workflow_id: str, now: datetime) -> WorkflowState:
        pg = self._postgres()

        def attempt() -> dict[str, Any] | None:
            if pg is not None:
                return pg.request_cancel(workflow_id, now)
            with transaction.atomic(using=self.using):
                run_id = self._wake(workflow_id, now, cancel_requested=True)
                return self._runs.filter(pk=run_id).values(*RUN_FIELDS).get() if run_id else None

        row = self._open_run(workflow_id, attempt)
        return state_from_values(row, signals=self._pending(row["run_id"]))

    def _wake(self, workflow_id: str, now: datetime, **changes: Any) -> str | None:
        """Bump wake_seq of the open run, inside the caller's transaction: its run id, or None."""
        run_id = (self._runs.select_for_update().filter(workflow_id=workflow_id, status=RUNNING)
                  .values_list("run_id", flat=True).first())
        if run_id is None or not self._runs.filter(pk=run_id, status=RUNNING).update(
                **self._woken(now), **changes):
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
            if status is None:
                raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}",
                                            workflow_id=workflow_id)
            if status != RUNNING:
                raise WorkflowNotRunningError(f"workflow {workflow_id!r} has ended ({status})",
                                              workflow_id=workflow_id)
            # A new run of the id started between the two reads: deliver to it.
        raise ConflictError(f"workflow {workflow_id!r} kept changing", workflow_id=workflow_id)

    @_guarded("due")
    def due(self, now: datetime, limit: int = 500) -> list[str]:
        if limit <= 0:
            return []
        free = Q(lease_owner="") | Q(lease_expires_at__isnull=False, lease_expires_at__lte=now)
        rows = (self._runs.filter(free, status=RUNNING, wake_at__isnull=False, wake_at__lte=now)
                .order_by("wake_at").values_list("workflow_id", flat=True))
        return list(rows[:limit])

    def watch(self, workflow_id: str) -> RunWatch:
        """On PostgreSQL, run ends are pushed (``LISTEN``/``NOTIFY``, see ``django_listen.py``).

        Not behind a transaction-mode pooler (``DISABLE_SERVER_SIDE_CURSORS``), which does not
        deliver notifications: waiters poll there.
        """
        connection = connections[self.using]
        if (connection.vendor != "postgresql"
                or connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")):
            return RunWatch()
        from .django_listen import EndListener

        return EndListener.for_alias(self.using).watch(workflow_id)

    def close(self) -> None:
        """Nothing to do: Django owns the database connections (closed per request/task)."""
