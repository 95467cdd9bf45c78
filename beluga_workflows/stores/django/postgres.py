"""The ``django`` store on PostgreSQL (``PostgresDjangoStore``): each hot operation in one round trip.

``DjangoStore(using=...)`` of a PostgreSQL alias builds this subclass. It decides what the ORM
store decides (``orm.py``) and overrides only the database work of the hot operations (claim,
checkpoint, suspension, signal, cancel, the reads of a run) with the statements of
``PostgresStatements``.

A checkpoint is one statement: a data-modifying CTE updates the run row fenced on the lease (and
on the last event's number), inserts the new events and deletes the consumed signal only when that
update matched, and returns the run's control fields. In autocommit mode the statement is its own
transaction, so a checkpoint costs one round trip and one commit; inside a caller's transaction it
runs under a savepoint. A signal is one statement too (bump ``wake_seq`` of the open run, file the
signal for the run that matched). The ``UPDATE`` takes the run's row lock, which is what serialises
the writers of one run; rows it did not match mean "lease lost" or "not open".

The events' statements (the fan-out's and the waiting run's) are in ``postgres_events.py``.

The statements are the hot path of every worker, so they are cheap to issue: their text is built
once per shape (how many events, whether a signal is consumed, whether the run ends) with named
parameters, sent with server-side binding on the connection Django holds, and prepared by
PostgreSQL on first use, so a checkpoint is neither re-parsed nor re-planned. A database reached
through a pooler that cannot hold prepared statements sets ``OPTIONS["prepare_threshold"] = None``
explicitly (or ``DISABLE_SERVER_SIDE_CURSORS = True``, as Django advises for such poolers); the
statements are then sent unprepared. The statement that ends a run also sends a
``NOTIFY`` on :data:`END_CHANNEL` (delivered when it commits) so ``handle.result()`` waiters learn
of the end at once (see ``listen.py``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Field, JSONField
from django.utils.functional import cached_property

from ... import models
from ...engine.events import EventWait
from ...engine.flow import Admission
from ...engine.types import EventType, HistoryEvent, Signal, WorkflowState, WorkflowStatus
from ..base import RunEnd, RunWatch, check_history, guarded, lease_lost, purge_filter
from .orm import DjangoStore
from .postgres_events import WAIT_FIELDS, PostgresEventStore, wait_params, waits_text
from .rows import end_values, event_values, run_row, state_from_values

__all__ = ["END_CHANNEL", "PostgresDjangoStore", "PostgresStatements"]

RUNNING = WorkflowStatus.RUNNING.value
# The NOTIFY channel of run ends; the payload is the workflow id.
END_CHANNEL = "beluga_workflows_run_ended"
_EVENT_FIELDS = [f for f in models.HistoryEvent._meta.concrete_fields if f.name not in ("id", "run")]
_EVENT_NAMES = [f.name for f in _EVENT_FIELDS]
_INBOX_FIELDS = ["name", "payload", "sent_at", "sender_id"]
_EVENT_TYPES = {t.value: t for t in EventType}

try:  # psycopg 3: statements go through it directly (server-side binding, prepared)
    import psycopg
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.postgres import types as _pg_types
    from psycopg.pq import Format
    from psycopg.types.json import Jsonb

    TIMESTAMPTZ_OID = _pg_types["timestamptz"].oid
except ImportError:  # psycopg2: through Django's cursor
    psycopg = None
    Jsonb = None

# history() unpacks rows in this order.
assert _EVENT_NAMES == ["seq", "type", "timestamp", "activity_name", "input", "result", "error",
                        "signal_name", "signal_payload", "duration", "op", "attempt", "fire_at"]


def _jsonb(value: Any) -> Any:
    return None if value is None else Jsonb(value)


def _loads(value: Any) -> Any:
    # Django loads jsonb as text (JSONField decodes it); do the same here.
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _event(row: Any) -> HistoryEvent:
    (seq, type_, timestamp, activity_name, input_, result, error, signal_name, signal_payload,
     duration, op, attempt, fire_at) = row
    return HistoryEvent(
        id=seq, type=_EVENT_TYPES[type_], timestamp=timestamp, activity_name=activity_name,
        input=_loads(input_), result=_loads(result), error=_loads(error), signal_name=signal_name,
        signal_payload=_loads(signal_payload), duration=duration, op=op, attempt=attempt,
        fire_at=fire_at,
    )


class PostgresStatements:
    """The store's single-statement writes for one PostgreSQL database alias (thread-safe)."""

    _instances: dict[str, PostgresStatements] = {}

    @classmethod
    def for_connection(cls, connection: Any) -> PostgresStatements:
        """The statements of ``connection``'s alias (built once per alias and process)."""
        instance = cls._instances.get(connection.alias)
        if instance is None:
            instance = cls._instances[connection.alias] = cls(connection)
        return instance

    def __init__(self, connection: Any) -> None:
        self.alias = connection.alias
        qn = connection.ops.quote_name
        meta = models.WorkflowState._meta
        self.run_table = qn(meta.db_table)
        self.event_table = qn(models.HistoryEvent._meta.db_table)
        self.inbox_table = qn(models.PendingSignal._meta.db_table)
        self.run_fields = {f.attname: f for f in meta.concrete_fields}
        self.all = list(self.run_fields)
        self.control = [name for name in self.run_fields if name != "input"]
        self.columns = {
            key: ", ".join(qn(self.run_fields[n].column) for n in names)
            for key, names in (("all", self.all), ("control", self.control))
        }
        self.event_columns = ", ".join(qn(f.column) for f in _EVENT_FIELDS)
        # Converters from database values to Python values, as the ORM applies them.
        self.converters = {}
        for name in self.all:
            col = self.run_fields[name].get_col(meta.db_table)
            self.converters[name] = (
                col, connection.ops.get_db_converters(col) + col.get_db_converters(connection))
        self.types = {f: f.db_type(connection) for f in [*meta.concrete_fields, *_EVENT_FIELDS,
                                                          *models.PendingSignal._meta.fields,
                                                          *WAIT_FIELDS]}
        self.wait_table = qn(models.EventWait._meta.db_table)
        self.slot_table = qn(models.ConcurrencySlot._meta.db_table)
        self.waiter_table = qn(models.ConcurrencyWaiter._meta.db_table)
        self.wait_columns = ", ".join(qn(f.column) for f in WAIT_FIELDS)
        self.preps = {f: self._prep_for(f) for f in self.types}
        # The same, by name (a Field's hash is computed in Python: slow on the hot path).
        self.run_preps = {name: self.preps[f] for name, f in self.run_fields.items()}
        self.event_preps = [(f.name, self.preps[f]) for f in _EVENT_FIELDS]
        inbox = models.PendingSignal._meta
        self.inbox_preps = [(n, self.preps[inbox.get_field(n)]) for n in _INBOX_FIELDS]
        self.texts: dict[Any, str] = {}  # statement texts, by shape
        # Prepare unless the DATABASES entry says not to: an explicit prepare_threshold of None,
        # or DISABLE_SERVER_SIDE_CURSORS (Django's advice behind a transaction-mode pooler).
        options = connection.settings_dict.get("OPTIONS") or {}
        if "prepare_threshold" in options:
            self.prepare = options["prepare_threshold"] is not None
        else:
            self.prepare = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")

    def _prep_for(self, field: Field) -> Callable[[Any], Any]:
        """How a Python value of ``field`` becomes a query parameter (the ORM's way, fast)."""
        if isinstance(field, JSONField) and Jsonb is not None:
            return _jsonb
        if field.get_internal_type() in ("CharField", "TextField", "IntegerField",
                                         "BigIntegerField", "PositiveIntegerField", "FloatField",
                                         "BooleanField", "DateTimeField", "BigAutoField", "AutoField"):
            return lambda value: value  # the PostgreSQL backend passes these through as they are
        connection = connections[self.alias]
        return lambda value: field.get_db_prep_save(value, connection)

    def _p(self, field: Field, name: str) -> str:
        """A typed placeholder for parameter ``name`` stored in ``field``."""
        return f"CAST(%({name})s AS {self.types[field]})"

    def _r(self, name: str, param: str | None = None) -> str:
        return self._p(self.run_fields[name], param or name)

    def _open(self) -> str:
        """``status = 'running'``, kept out of index choice: with no statistics yet (a new
        database), a prepared statement's generic plan would otherwise find the run through the
        (status, wake_at) index, a scan of every open run, instead of its unique id."""
        return f"(status || '') = {self._r('status')}"

    # -- plumbing -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        connection = connections[self.alias]
        # Inside a caller's transaction a failed statement must not abort it: use a savepoint.
        atomic = (transaction.atomic(using=self.alias) if connection.in_atomic_block
                  else contextlib.nullcontext())
        with atomic:
            connection.ensure_connection()
            raw = connection.connection
            if psycopg is None or not isinstance(raw, psycopg.Connection):
                with connection.cursor() as cursor:
                    yield cursor
                return
            connection.close_if_health_check_failed()
            connection.validate_thread_sharing()
            connection.validate_no_broken_transaction()
            with connection.wrap_database_errors:
                if self.prepare and raw.prepare_threshold is None:
                    # Django leaves psycopg's automatic preparation off (None), which also refuses
                    # prepare=True; a threshold never reached prepares only our statements.
                    raw.prepare_threshold = 2**31 - 1
                cursor = psycopg.Cursor(raw)
                if self.tz_mismatch(connection, raw):  # as Django's create_cursor does
                    register_tzloader(connection.timezone, cursor)
                try:
                    yield cursor
                finally:
                    cursor.close()

    @staticmethod
    def tz_mismatch(connection: Any, raw: Any) -> bool:
        """Whether ``raw`` loads timestamps in another time zone than Django's ``connection``."""
        loader = raw.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        return connection.timezone != getattr(loader, "timezone", connection.timezone)

    def _execute(self, cursor: Any, text: str, params: dict[str, Any]) -> None:
        if not isinstance(cursor, psycopg.Cursor if psycopg is not None else ()):
            cursor.execute(text, params)  # Django's cursor (psycopg2)
            return
        connection = connections[self.alias]
        if not connection.queries_logged:
            cursor.execute(text, params, prepare=self.prepare)
            return
        # DEBUG or a test capturing queries: log it as Django's debug cursor does.
        started = time.monotonic()
        try:
            cursor.execute(text, params, prepare=self.prepare)
        finally:
            connection.queries_log.append(
                {"sql": f"{text} -- {params!r}", "time": f"{time.monotonic() - started:.3f}"})

    def _fetch(self, text: str, params: dict[str, Any]) -> tuple | None:
        with self._cursor() as cursor:
            self._execute(cursor, text, params)
            return cursor.fetchone()

    def _fetch_all(self, text: str, params: dict[str, Any]) -> list[tuple]:
        with self._cursor() as cursor:
            self._execute(cursor, text, params)
            return cursor.fetchall()

    def _run(self, text: str, params: dict[str, Any], names: list[str]) -> dict[str, Any] | None:
        """Execute ``text`` returning one run row of columns ``names``, as a dict, or ``None``."""
        row = self._fetch(text, params)
        if row is None:
            return None
        connection = connections[self.alias]
        values = {}
        for value, name in zip(row, names, strict=False):  # a NOTIFY may add a last column
            col, funcs = self.converters.get(name, (None, ()))
            for func in funcs:
                value = func(value, col, connection)
            values[name] = value
        return values

    def _run_params(self, **values: Any) -> dict[str, Any]:
        preps = self.run_preps
        return {name: preps[name](value) for name, value in values.items()}

    # -- statements ---------------------------------------------------------------------------------

    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> dict[str, Any] | None:
        """Take the lease of the open run if it is free: its row (every column), or ``None``."""
        text = self.texts.get("claim")
        if text is None:
            text = self.texts["claim"] = (
                f"UPDATE {self.run_table} SET lease_owner = {self._r('lease_owner')}, "
                f"lease_expires_at = {self._r('lease_expires_at')}, version = version + 1 "
                f"WHERE workflow_id = {self._r('workflow_id')} "
                f"AND {self._open()} AND (lease_owner = '' "
                f"OR lease_expires_at IS NULL OR lease_expires_at <= {self._r('wake_at', 'now')}) "
                f"RETURNING {self.columns['all']}"
            )
        params = self._run_params(lease_owner=owner, lease_expires_at=lease_until,
                                  workflow_id=workflow_id, status=RUNNING)
        params["now"] = now
        return self._run(text, params, self.all)

    def create(self, row: models.WorkflowState, events: list[HistoryEvent]) -> None:
        """Insert a new run and its first events in one statement.

        Raises:
            IntegrityError: the id already has a run (the caller replaces an ended one).
        """
        key = ("create", len(events))
        text = self.texts.get(key)
        if text is None:
            placeholders = ", ".join(self._r(name) for name in self.all)
            columns = ", ".join(self.run_fields[name].column for name in self.all)
            text = f"WITH run AS (INSERT INTO {self.run_table} ({columns}) VALUES ({placeholders}) "
            text += "RETURNING run_id)"
            if events:
                rows = ["(" + ", ".join(self._p(f, f"e{i}_{f.name}") for f in _EVENT_FIELDS) + ")"
                        for i in range(len(events))]
                text += (f" INSERT INTO {self.event_table} (run_id, {self.event_columns}) "
                         f"SELECT run.run_id, v.* FROM run CROSS JOIN (VALUES {', '.join(rows)}) AS v")
            else:
                text += " SELECT run_id FROM run"
            self.texts[key] = text
        params = self._run_params(**{name: getattr(row, name) for name in self.all})
        self._event_params(params, events)
        with self._cursor() as cursor:
            self._execute(cursor, text, params)

    def create_in_slot(self, row: models.WorkflowState, events: list[HistoryEvent],
                       bucket: tuple[str, str, str], limit: int) -> bool:
        """Insert a new run and its first events with the lowest free slot of ``bucket``, in one
        statement, when no run waits for the bucket and a slot number below ``limit`` is free;
        ``False`` (nothing written) otherwise, or when a concurrent start took that number.

        Raises:
            IntegrityError: the id already has a run (the caller replaces an ended one).
        """
        key = ("create_in_slot", len(events))
        text = self.texts.get(key)
        if text is None:
            columns = ", ".join(self.run_fields[name].column for name in self.all)
            placeholders = ", ".join(self._r(name) for name in self.all)
            same = ("workflow_type = CAST(%(b_type)s AS varchar) AND scope = CAST(%(b_scope)s AS "
                    "varchar) AND key = CAST(%(b_key)s AS varchar)")
            text = (
                f"WITH free AS (SELECT n FROM generate_series(0, CAST(%(b_limit)s AS integer) - 1)"
                f" AS n WHERE NOT EXISTS (SELECT 1 FROM {self.waiter_table} WHERE {same}) "
                f"AND NOT EXISTS (SELECT 1 FROM {self.slot_table} WHERE {same} AND slot = n) "
                f"ORDER BY n LIMIT 1), "
                f"slot AS (INSERT INTO {self.slot_table} (workflow_type, scope, key, slot, "
                f"slot_limit, run_id, workflow_id, taken_at) SELECT %(b_type)s, %(b_scope)s, "
                f"%(b_key)s, n, %(b_limit)s, {self._r('run_id')}, {self._r('workflow_id')}, "
                f"{self._r('created_at')} FROM free ON CONFLICT DO NOTHING RETURNING slot), "
                f"run AS (INSERT INTO {self.run_table} ({columns}) SELECT {placeholders} "
                f"FROM slot RETURNING run_id)")
            if events:
                rows = ["(" + ", ".join(self._p(f, f"e{i}_{f.name}") for f in _EVENT_FIELDS) + ")"
                        for i in range(len(events))]
                text += (f", events AS (INSERT INTO {self.event_table} (run_id, "
                         f"{self.event_columns}) SELECT run.run_id, v.* FROM run CROSS JOIN "
                         f"(VALUES {', '.join(rows)}) AS v)")
            text += " SELECT run_id FROM run"
            self.texts[key] = text
        params = self._run_params(**{name: getattr(row, name) for name in self.all})
        params.update(b_type=bucket[0], b_scope=bucket[1], b_key=bucket[2], b_limit=limit)
        self._event_params(params, events)
        return self._fetch(text, params) is not None

    def _event_params(self, params: dict[str, Any], events: list[HistoryEvent]) -> None:
        for i, event in enumerate(events):
            values = event_values(event)
            for name, prep in self.event_preps:
                params[f"e{i}_{name}"] = prep(values[name])

    def load(self, workflow_id: str) -> dict[str, Any] | None:
        """The run row of ``workflow_id`` (every column), or ``None``."""
        text = self.texts.get("load")
        if text is None:
            text = self.texts["load"] = (
                f"SELECT {self.columns['all']} FROM {self.run_table} "
                f"WHERE workflow_id = {self._r('workflow_id')}")
        return self._run(text, self._run_params(workflow_id=workflow_id), self.all)

    def history(self, run_id: str) -> list[HistoryEvent]:
        """The run's events in order (read straight into the engine's type: replay reads them all)."""
        text = self.texts.get("history")
        if text is None:
            text = self.texts["history"] = (
                f"SELECT {self.event_columns} FROM {self.event_table} "
                f"WHERE run_id = {self._r('run_id')} ORDER BY seq")
        return [_event(row) for row in self._fetch_all(text, self._run_params(run_id=run_id))]

    def contents(self, run_id: str) -> tuple[list[HistoryEvent], list[Signal]]:
        """The run's events and unconsumed signals in one round trip (what a claim reads).

        One ``UNION ALL``: event rows first (by ``seq``), then inbox rows (by ``id``) in the event
        columns, flagged by a leading 1: ``signal_name`` holds the name, ``signal_payload`` the
        payload, ``timestamp`` the time sent, ``activity_name`` the sender, ``seq`` the inbox id.
        """
        text = self.texts.get("contents")
        if text is None:
            text = self.texts["contents"] = self._contents_text("", "")
        return self._contents_rows(text, self._run_params(run_id=run_id))

    def operation(self, run_id: str, op: int, name: str) -> tuple[list[HistoryEvent], list[Signal]]:
        """Operation ``op``'s events and the unconsumed signals named ``name``, in one round trip
        (what a worker handed a started activity reads); as ``contents``."""
        text = self.texts.get("operation")
        if text is None:
            text = self.texts["operation"] = self._contents_text(
                f" AND op = {self._p(_EVENT_FIELDS[_EVENT_NAMES.index('op')], 'op')}",
                f" AND name = {self._p(models.PendingSignal._meta.get_field('name'), 'name')}")
        params = self._run_params(run_id=run_id)
        params.update(op=op, name=name)
        return self._contents_rows(text, params)

    def _contents_text(self, events_where: str, inbox_where: str) -> str:
        run_id_param = self._r("run_id")
        columns = [f"NULL::{self.types[f]}" for f in _EVENT_FIELDS]
        for name, value in (("seq", "id"), ("timestamp", "sent_at"),
                            ("activity_name", "sender_id"), ("signal_name", "name"),
                            ("signal_payload", "payload"), ("type", "''")):
            columns[_EVENT_NAMES.index(name)] = value
        return (f"SELECT 0, {self.event_columns} FROM {self.event_table} "
                f"WHERE run_id = {run_id_param}{events_where} UNION ALL "
                f"SELECT 1, {', '.join(columns)} FROM {self.inbox_table} "
                f"WHERE run_id = {run_id_param}{inbox_where} ORDER BY 1, 2")

    def _contents_rows(self, text: str, params: dict[str, Any]
                       ) -> tuple[list[HistoryEvent], list[Signal]]:
        events, signals = [], []
        for kind, *row in self._fetch_all(text, params):
            if kind == 0:
                events.append(_event(row))
            else:
                signals.append(Signal(name=row[7], payload=_loads(row[8]), sent_at=row[2],
                                      sender_id=row[3], id=row[0]))
        return events, signals

    def pending(self, run_id: str) -> list[Signal]:
        """The run's unconsumed signals, oldest first."""
        text = self.texts.get("pending")
        if text is None:
            text = self.texts["pending"] = (
                f"SELECT id, name, payload, sent_at, sender_id FROM {self.inbox_table} "
                f"WHERE run_id = {self._r('run_id')} ORDER BY id")
        return [Signal(name=name, payload=_loads(payload), sent_at=sent_at, sender_id=sender_id,
                       id=signal_id)
                for signal_id, name, payload, sent_at, sender_id in self._fetch_all(
                    text, self._run_params(run_id=run_id))]

    def append(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent], *,
               lease_until: datetime, consume_signal: int | None, end: RunEnd | None,
               suspend: dict[str, Any] | None = None, add_waits: list[Any] = (),
               drop_waits: tuple[int, ...] | str = (), consume_signals: tuple[int, ...] = (),
               lean: bool = False) -> dict[str, Any] | bool | None:
        """The checkpoint. With ``suspend`` (``seen_wake_seq``, ``wake_at``, ``wait_kind``,
        ``wait_name``, ``wait_until``) it also releases the lease, in the same statement, if
        ``wake_seq`` is still the one seen; the row then has ``suspended`` (bool). ``add_waits``
        (``EventWait`` s) are inserted and the run's waits at the operations ``drop_waits``
        (``"all"``: every one) deleted in the same statement, only if the fenced update matched.
        ``consume_signal`` and ``consume_signals``: the inbox rows deleted with it. ``lean`` (a
        step: no end, suspend or waits): only ``cancel_requested`` comes back, not the row."""
        consumed = [*(() if consume_signal is None else (consume_signal,)), *consume_signals]
        changes: dict[str, Any] = {"lease_expires_at": lease_until}
        if events:
            changes.update(updated_at=events[-1].timestamp, last_event_id=events[-1].id)
        if end is not None:
            changes.update(end_values(end, events[-1].timestamp if events else None))
        release = end is not None and end.release
        lean = lean and end is None and suspend is None and not (add_waits or drop_waits)
        key = ("append", tuple(changes), len(events), bool(consumed),
               suspend is not None, release, lean)
        if add_waits or drop_waits:  # a checkpoint of events (API.md §8): a shape of its own
            key += (len(add_waits), "all" if drop_waits == "all" else bool(drop_waits))
        text = self.texts.get(key) or self._append_text(key, changes)
        params = self._run_params(run_id=run_id, workflow_id=workflow_id, lease_owner=owner,
                                  status=RUNNING)
        preps = self.run_preps
        for name, value in changes.items():
            params[f"set_{name}"] = preps[name](value)
        if events:
            params["prev"] = events[0].id - 1
            self._event_params(params, events)
        if consumed:
            params["signals"] = consumed
        if end is not None:
            params["channel"] = END_CHANNEL
        if add_waits or drop_waits:
            wait_params(self, params, add_waits, drop_waits)
        if lean:
            row = self._fetch(text, params)
            return None if row is None else row[1]
        if suspend is None and release:
            row = self._run(text, params, [*self.control, "freed"])
            if row is not None:
                end.freed = sorted({tuple(bucket) for bucket in _loads(row.pop("freed"))})
            return row
        if suspend is None:
            return self._run(text, params, self.control)
        preps = self.run_preps
        for name, value in suspend.items():
            field = "wake_seq" if name == "seen_wake_seq" else name
            params[f"s_{name}"] = preps[field](value)
        return self._run(text, params, [*self.control, "suspended"])

    def _append_text(self, key: Any, changes: dict[str, Any]) -> str:
        _, names, n_events, consume, suspend, release, lean, *waits = key
        sets = ["version = version + 1"]
        for name in names:
            if name == "ended_at" and changes[name] is None:
                sets.append("ended_at = updated_at")  # no event: the time of the last update
            elif suspend and name == "lease_expires_at":
                pass  # set below
            else:
                sets.append(f"{self.run_fields[name].column} = {self._r(name, f'set_{name}')}")
        if suspend:
            # Release the run only if no signal or cancel came in since the worker looked
            # (wake_seq unchanged); else keep the lease, extended, and let the worker look again.
            same = f"wake_seq = {self._r('wake_seq', 's_seen_wake_seq')}"
            sets.append(f"lease_owner = CASE WHEN {same} THEN '' ELSE lease_owner END")
            sets.append(f"lease_expires_at = CASE WHEN {same} THEN NULL "
                        f"ELSE {self._r('lease_expires_at', 'set_lease_expires_at')} END")
            for name in ("wake_at", "wait_kind", "wait_name", "wait_until"):
                sets.append(f"{name} = CASE WHEN {same} THEN {self._r(name, f's_{name}')} "
                            f"ELSE {name} END")
        where = (f"run_id = {self._r('run_id')} AND workflow_id = {self._r('workflow_id')} "
                 f"AND lease_owner = {self._r('lease_owner')} AND {self._open()}")
        if n_events:
            # No gap and no rewrite: the first new event must follow the last stored one.
            where += f" AND (last_event_id = {self._r('last_event_id', 'prev')} OR last_event_id = 0)"
        returning = "run_id, cancel_requested" if lean else self.columns["control"]
        if suspend:
            returning += f", wake_seq = {self._r('wake_seq', 's_seen_wake_seq')} AS suspended"
        text = (f"WITH run AS (UPDATE {self.run_table} SET {', '.join(sets)} WHERE {where} "
                f"RETURNING {returning})")
        if n_events:
            rows = ["(" + ", ".join(self._p(f, f"e{i}_{f.name}") for f in _EVENT_FIELDS) + ")"
                    for i in range(n_events)]
            text += (f", events AS (INSERT INTO {self.event_table} (run_id, {self.event_columns}) "
                     f"SELECT run.run_id, v.* FROM run CROSS JOIN (VALUES {', '.join(rows)}) AS v)")
        if consume:
            text += (f", consumed AS (DELETE FROM {self.inbox_table} "
                     f"WHERE id = ANY(CAST(%(signals)s AS "
                     f"{self.types[models.PendingSignal._meta.pk]}[])) "
                     f"AND run_id IN (SELECT run_id FROM run))")
        if waits:
            text += waits_text(self, *waits)
        freed = ""
        if release:  # flow control: the end frees the run's slots (or waiter rows) with it
            text += (f", freed AS (DELETE FROM {self.slot_table} WHERE run_id IN "
                     f"(SELECT run_id FROM run) RETURNING workflow_type, scope, key), "
                     f"unwaited AS (DELETE FROM {self.waiter_table} WHERE run_id IN "
                     f"(SELECT run_id FROM run))")
            freed = (", (SELECT COALESCE(json_agg(json_build_array(workflow_type, scope, key)), "
                     "'[]') FROM freed) AS freed")
        if "status" in names:  # the run ends: tell waiters when this commits
            text += f" SELECT run.*{freed}, pg_notify(%(channel)s, run.workflow_id) FROM run"
        else:
            text += " SELECT * FROM run"
        self.texts[key] = text
        return text

    def suspend(self, workflow_id: str, run_id: str, owner: str, *, seen_wake_seq: int,
                wake_at: datetime | None, wait_kind: str, wait_name: str,
                wait_until: datetime | None) -> bool:
        """Release the lease if ``wake_seq`` is still ``seen_wake_seq``; ``False`` if not (or lost)."""
        text = self.texts.get("suspend")
        if text is None:
            text = self.texts["suspend"] = (
                f"UPDATE {self.run_table} SET lease_owner = '', lease_expires_at = NULL, "
                f"wake_at = {self._r('wake_at')}, wait_kind = {self._r('wait_kind')}, "
                f"wait_name = {self._r('wait_name')}, wait_until = {self._r('wait_until')}, "
                f"version = version + 1 WHERE run_id = {self._r('run_id')} "
                f"AND workflow_id = {self._r('workflow_id')} "
                f"AND lease_owner = {self._r('lease_owner')} AND {self._open()} "
                f"AND wake_seq = {self._r('wake_seq')} RETURNING run_id")
        params = self._run_params(wake_at=wake_at, wait_kind=wait_kind, wait_name=wait_name,
                                  wait_until=wait_until, run_id=run_id, workflow_id=workflow_id,
                                  lease_owner=owner, status=RUNNING, wake_seq=seen_wake_seq)
        return self._fetch(text, params) is not None

    def add_signal(self, workflow_id: str, signal: Signal, sent_at: datetime, now: datetime,
                   *, lease: bool = False) -> Any:
        """Wake the open run and file ``signal`` in its inbox: the inbox id, or ``None``. With
        ``lease``: the row (inbox id, lease owner, lease expiry, wake_at after the wake)."""
        key = "add_signal_lease" if lease else "add_signal"
        text = self.texts.get(key)
        if text is None:
            inbox = models.PendingSignal._meta
            placeholders = ", ".join(self._p(inbox.get_field(n), f"s_{n}") for n in _INBOX_FIELDS)
            seen = ("run_id, lease_owner, lease_expires_at, wake_at" if lease else "run_id")
            also = (", (SELECT lease_owner FROM run), (SELECT lease_expires_at FROM run), "
                    "(SELECT wake_at FROM run)" if lease else "")
            text = self.texts[key] = (
                f"WITH run AS (UPDATE {self.run_table} SET {self._wake_sets()} "
                f"WHERE workflow_id = {self._r('workflow_id')} AND {self._open()} "
                f"RETURNING {seen}) "
                f"INSERT INTO {self.inbox_table} (run_id, {', '.join(_INBOX_FIELDS)}) "
                f"SELECT run_id, {placeholders} FROM run RETURNING id{also}")
        params = self._run_params(workflow_id=workflow_id, status=RUNNING, updated_at=now)
        values = {"name": signal.name, "payload": signal.payload, "sent_at": sent_at,
                  "sender_id": signal.sender_id or ""}
        for n, prep in self.inbox_preps:
            params[f"s_{n}"] = prep(values[n])
        row = self._fetch(text, params)
        return (row if lease else row[0]) if row else None

    def request_cancel(self, workflow_id: str, now: datetime) -> dict[str, Any] | None:
        """Flag the open run as cancel-requested and wake it: its row after, or ``None``."""
        text = self.texts.get("request_cancel")
        if text is None:
            text = self.texts["request_cancel"] = (
                f"UPDATE {self.run_table} SET cancel_requested = true, {self._wake_sets()} "
                f"WHERE workflow_id = {self._r('workflow_id')} AND {self._open()} "
                f"RETURNING {self.columns['all']}")
        params = self._run_params(workflow_id=workflow_id, status=RUNNING, updated_at=now)
        return self._run(text, params, self.all)

    def _wake_sets(self) -> str:
        """The SET clause of a signal or cancel: bump wake_seq, make the run due now."""
        now = self._r("updated_at")
        return (f"wake_seq = wake_seq + 1, version = version + 1, updated_at = {now}, "
                f"wake_at = CASE WHEN wake_at IS NULL OR wake_at > {now} THEN {now} "
                f"ELSE wake_at END")


class PostgresDjangoStore(PostgresEventStore, DjangoStore):
    """The ``django`` store on a PostgreSQL alias: the hot operations as single statements (the
    events' in ``postgres_events.py``).

    Built by ``DjangoStore(using=...)`` when ``using`` is PostgreSQL; it keeps every promise of
    ``DjangoStore`` (and is one), in fewer round trips.
    """

    @cached_property
    def _pg(self) -> PostgresStatements:
        return PostgresStatements.for_connection(connections[self.using])

    # -- reads: prepared (handle.result(), the admin and every claim read runs this way) ---------

    def _run_values(self, workflow_id: str) -> dict[str, Any] | None:
        return self._pg.load(workflow_id)

    def _pending(self, run_id: str) -> list[Signal]:
        return self._pg.pending(run_id)

    def _history(self, run_id: str) -> list[HistoryEvent]:
        return self._pg.history(run_id)

    def _contents(self, run_id: str) -> tuple[list[HistoryEvent], list[Signal]]:
        return self._pg.contents(run_id)  # one UNION ALL

    # -- writes: one statement each ------------------------------------------------------------

    @guarded("create")
    def create(self, state: WorkflowState) -> None:
        """One INSERT of the run and its events when the id is new and the run has no signals;
        else (or when the id already has a row) the ORM's transaction that replaces an ended run.

        Raises:
            WorkflowAlreadyExistsError: the id's run is still open.
            InvalidInputError: two events of the history share an id.
        """
        check_history(state)
        if not state.signals:
            # One statement when the id is new (the usual case); else replace an ended run.
            try:
                self._pg.create(run_row(state, 1), state.history)
                return
            except IntegrityError:
                pass
        self._replace_ended(state)

    @guarded("create_with_waits")
    def create_with_waits(self, state: WorkflowState, waits: list[EventWait], *,
                          admission: Admission | None = None) -> None:
        """A start that takes one concurrency slot (and nothing else) is one statement (the
        slot, the run, its events) when a slot is free and nobody waits; any other start, or
        that one when the statement wrote nothing, is the ORM's transaction.

        Raises:
            WorkflowAlreadyExistsError: the id's run is still open.
            RateLimitExceededError: the rate limit refuses the run (nothing written).
        """
        if (admission is not None and not waits and not state.signals
                and len(admission.slots) == 1 and admission.throttle is None
                and admission.rate_limit is None):
            check_history(state)
            (bucket, limit), = admission.slots
            try:
                if self._pg.create_in_slot(run_row(state, 1), state.history, bucket, limit):
                    return
            except IntegrityError:
                pass  # the id has a row: the ORM's path replaces an ended run or refuses
        super().create_with_waits(state, waits, admission=admission)

    def _insert_run(self, state: WorkflowState) -> None:
        """One INSERT of the run and its events (under a savepoint), else replace an ended run."""
        if not state.signals:
            try:
                self._pg.create(run_row(state, 1), state.history)
                return
            except IntegrityError:
                pass
        self._replace_ended(state)

    def _releasing(self, end: RunEnd | None, run_id: str, write: Any) -> Any:
        """The checkpoint statement frees the slots itself (see ``PostgresStatements.append``)."""
        return write()

    def _take_lease(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
                    ) -> dict[str, Any] | None:
        return self._pg.claim(workflow_id, owner, lease_until, now)

    def _append_row(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent],
                    lease_until: datetime, consumed: tuple[int, ...], end: RunEnd | None
                    ) -> dict[str, Any] | None:
        return self._pg.append(workflow_id, run_id, owner, events, lease_until=lease_until,
                               consume_signal=None, consume_signals=consumed or (), end=end)

    @guarded("append")
    def checkpoint(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent],
                   *, lease_until: datetime, consume_signals: tuple[int, ...] = ()) -> bool:
        """``append``'s one statement, returning only ``cancel_requested`` (no row to convert)."""
        try:
            cancel_requested = self._pg.append(
                workflow_id, run_id, owner, events, lease_until=lease_until,
                consume_signal=None, consume_signals=consume_signals, end=None, lean=True)
        except IntegrityError:  # an event number already taken: another writer got there first
            cancel_requested = None
        if cancel_requested is None:
            raise lease_lost(workflow_id)
        return cancel_requested

    @guarded("append_and_suspend")
    def append_and_suspend(self, workflow_id: str, run_id: str, owner: str,
                           events: list[HistoryEvent], *, lease_until: datetime,
                           seen_wake_seq: int, wake_at: datetime | None, wait_kind: str,
                           wait_name: str, wait_until: datetime | None,
                           consume_signals: tuple[int, ...] = ()
                           ) -> tuple[WorkflowState, bool]:
        """Both in one statement: a sleep costs one checkpoint."""
        try:
            row = self._pg.append(workflow_id, run_id, owner, events, lease_until=lease_until,
                                  consume_signal=None, consume_signals=consume_signals,
                                  end=None, suspend={
                                      "seen_wake_seq": seen_wake_seq, "wake_at": wake_at,
                                      "wait_kind": wait_kind, "wait_name": wait_name,
                                      "wait_until": wait_until})
        except IntegrityError:  # an event number already taken: another writer got there first
            row = None
        if row is None:
            raise lease_lost(workflow_id)
        suspended = row.pop("suspended")
        return state_from_values(row), suspended

    def _release(self, workflow_id: str, run_id: str, owner: str, *, seen_wake_seq: int,
                 wake_at: datetime | None, wait_kind: str, wait_name: str,
                 wait_until: datetime | None) -> bool:
        return self._pg.suspend(workflow_id, run_id, owner, seen_wake_seq=seen_wake_seq,
                                wake_at=wake_at, wait_kind=wait_kind, wait_name=wait_name,
                                wait_until=wait_until)

    def _file_signal(self, workflow_id: str, signal: Signal, sent_at: datetime, now: datetime
                     ) -> int | None:
        return self._pg.add_signal(workflow_id, signal, sent_at, now)

    def _cancel_row(self, workflow_id: str, now: datetime) -> dict[str, Any] | None:
        return self._pg.request_cancel(workflow_id, now)

    @guarded("deliver_signal")
    def deliver_signal(self, workflow_id: str, signal: Signal, now: datetime
                       ) -> tuple[Signal, bool]:
        """One statement: the signal filed, and the run's lease and ``wake_at`` as it left them
        (the row is locked by the wake: a holder then cannot suspend past the signal)."""
        if connections[self.using].in_atomic_block:  # not committed with it: no promise
            return super().deliver_signal(workflow_id, signal, now)
        sent_at = signal.sent_at or now
        signal_id, owner, expires, wake_at = self._open_run(
            workflow_id, lambda: self._pg.add_signal(workflow_id, signal, sent_at, now, lease=True))
        accepted = Signal(name=signal.name, payload=signal.payload, sent_at=sent_at,
                          sender_id=signal.sender_id, id=signal_id)
        if owner:
            return accepted, expires is not None and expires > now
        return accepted, wake_at is not None and wake_at < now

    @guarded("load_operation")
    def load_operation(self, workflow_id: str, op: int, signal_name: str) -> WorkflowState | None:
        """The run row, then the operation's events and the named signals in one round trip."""
        row = self._run_values(workflow_id)
        if row is None:
            return None
        history, signals = self._pg.operation(row["run_id"], op, signal_name)
        return state_from_values(row, signals=signals, history=history)

    def watch(self, workflow_id: str) -> RunWatch:
        """Run ends are pushed (``LISTEN``/``NOTIFY``, see ``listen.py``).

        Not behind a transaction-mode pooler (``DISABLE_SERVER_SIDE_CURSORS``), which does not
        deliver notifications: waiters poll there.
        """
        if connections[self.using].settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
            return RunWatch()
        from .listen import EndListener

        return EndListener.for_alias(self.using).watch(workflow_id)

    # -- retention: one statement per batch (postgres_retention.py) ----------------------------

    @guarded("purge_ended")
    def purge_ended(self, before: datetime, *, limit: int = 500,
                    status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> list[str]:
        """One statement: pick and lock the oldest ended runs (of ``status`` and
        ``workflow_type`` when given), delete them (the condition checked again on each row
        deleted) and every row that cascades from them; the ORM's batch when a relation needs its
        collector."""
        from .postgres_retention import purge_text

        status, workflow_type = purge_filter(status, workflow_type)
        connection = connections[self.using]
        text = purge_text(connection.ops.quote_name, status=status is not None,
                          workflow_type=workflow_type is not None)
        if text is None or limit <= 0:
            return super().purge_ended(before, limit=limit, status=status,
                                       workflow_type=workflow_type)
        params: dict[str, Any] = {"before": before, "limit": limit}
        if status is not None:
            params["status"] = status.value
        if workflow_type is not None:
            params["workflow_type"] = workflow_type
        with connection.cursor() as cursor:
            cursor.execute(text, params)
            return [workflow_id for workflow_id, in cursor.fetchall()]
