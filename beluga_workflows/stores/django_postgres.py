"""PostgreSQL statements of the ``django`` store: each hot operation in one round trip.

A checkpoint is one statement: a data-modifying CTE updates the run row fenced on the lease (and
on the last event's number), inserts the new events and deletes the consumed signal only when that
update matched, and returns the run's control fields. In autocommit mode the statement is its own
transaction, so a checkpoint costs one round trip and one commit; inside a caller's transaction it
runs under a savepoint. A signal is one statement too (bump ``wake_seq`` of the open run, file the
signal for the run that matched). The ``UPDATE`` takes the run's row lock, which is what serialises
the writers of one run; rows it did not match mean "lease lost" or "not open".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import Field

from .. import models
from ..types import HistoryEvent, Signal, WorkflowStatus
from .base import RunEnd
from .django_rows import end_values, event_values

__all__ = ["PostgresStatements"]

RUNNING = WorkflowStatus.RUNNING.value
_EVENT_FIELDS = [f for f in models.HistoryEvent._meta.concrete_fields if f.name not in ("id", "run")]
_INBOX_FIELDS = ["name", "payload", "sent_at", "sender_id"]


class _Sql:
    """Placeholders and their parameters, collected in the order they appear in the SQL text."""

    def __init__(self, connection: Any, run_fields: dict[str, Field], casts: dict[Field, str]
                 ) -> None:
        self.connection = connection
        self.run_fields = run_fields
        self.casts = casts
        self.params: list[Any] = []

    def param(self, field: Field, value: Any) -> str:
        """A typed placeholder for ``value`` stored in ``field``."""
        self.params.append(field.get_db_prep_save(value, self.connection))
        cast = self.casts.get(field)
        if cast is None:
            cast = self.casts[field] = f"CAST(%s AS {field.db_type(self.connection)})"
        return cast

    def run(self, name: str, value: Any) -> str:
        return self.param(self.run_fields[name], value)

    def wake(self, now: datetime) -> str:
        """The SET clause of a signal or cancel: bump wake_seq, make the run due now."""
        return (f"wake_seq = wake_seq + 1, version = version + 1, "
                f"updated_at = {self.run('updated_at', now)}, "
                f"wake_at = CASE WHEN wake_at IS NULL OR wake_at > {self.run('wake_at', now)} "
                f"THEN {self.run('wake_at', now)} ELSE wake_at END")


class PostgresStatements:
    """The store's single-statement writes for one PostgreSQL database alias (thread-safe)."""

    _instances: dict[str, PostgresStatements] = {}

    @classmethod
    def for_connection(cls, connection: Any) -> PostgresStatements:
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
        self.casts: dict[Field, str] = {}  # typed placeholders, by field
        self.all = list(self.run_fields)
        self.control = [name for name in self.run_fields if name != "input"]
        self.columns = {
            key: ", ".join(qn(self.run_fields[n].column) for n in names)
            for key, names in (("all", self.all), ("control", self.control))
        }
        self.event_columns = ", ".join(qn(f.column) for f in _EVENT_FIELDS)
        # Converters from database values to Python values, as the ORM applies them.
        self.converters = []
        for name in self.all:
            col = self.run_fields[name].get_col(meta.db_table)
            self.converters.append(
                (name, col, connection.ops.get_db_converters(col) + col.get_db_converters(connection))
            )

    # -- plumbing -----------------------------------------------------------------------------------

    def _sql(self) -> _Sql:
        return _Sql(connections[self.alias], self.run_fields, self.casts)

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        connection = connections[self.alias]
        # Inside a caller's transaction a failed statement must not abort it: use a savepoint.
        atomic = (transaction.atomic(using=self.alias) if connection.in_atomic_block
                  else contextlib.nullcontext())
        with atomic, connection.cursor() as cursor:
            yield cursor

    def _fetch(self, sql: str, params: list[Any]) -> tuple | None:
        with self._cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    def _run(self, sql: _Sql, text: str, names: list[str]) -> dict[str, Any] | None:
        """Execute ``text`` returning one run row of columns ``names``, as a dict, or ``None``."""
        row = self._fetch(text, sql.params)
        if row is None:
            return None
        connection = connections[self.alias]
        wanted = set(names)
        values = {}
        for value, (name, col, funcs) in zip(row, (c for c in self.converters if c[0] in wanted),
                                             strict=True):
            for func in funcs:
                value = func(value, col, connection)
            values[name] = value
        return values

    # -- statements ---------------------------------------------------------------------------------

    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> dict[str, Any] | None:
        q = self._sql()
        text = (
            f"UPDATE {self.run_table} SET lease_owner = {q.run('lease_owner', owner)}, "
            f"lease_expires_at = {q.run('lease_expires_at', lease_until)}, version = version + 1 "
            f"WHERE workflow_id = {q.run('workflow_id', workflow_id)} "
            f"AND status = {q.run('status', RUNNING)} AND (lease_owner = '' "
            f"OR lease_expires_at IS NULL OR lease_expires_at <= {q.run('lease_expires_at', now)}) "
            f"RETURNING {self.columns['all']}"
        )
        return self._run(q, text, self.all)

    def append(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent], *,
               lease_until: datetime, consume_signal: int | None, end: RunEnd | None
               ) -> dict[str, Any] | None:
        q = self._sql()
        changes: dict[str, Any] = {"lease_expires_at": lease_until}
        if events:
            changes.update(updated_at=events[-1].timestamp, last_event_id=events[-1].id)
        if end is not None:
            changes.update(end_values(end, events[-1].timestamp if events else None))
        sets = ["version = version + 1"]
        for name, value in changes.items():
            if name == "ended_at" and value is None:
                sets.append("ended_at = updated_at")  # no event: the time of the last update
            else:
                sets.append(f"{self.run_fields[name].column} = {q.run(name, value)}")
        where = (f"run_id = {q.run('run_id', run_id)} "
                 f"AND workflow_id = {q.run('workflow_id', workflow_id)} "
                 f"AND lease_owner = {q.run('lease_owner', owner)} "
                 f"AND status = {q.run('status', RUNNING)}")
        if events:
            # No gap and no rewrite: the first new event must follow the last stored one.
            where += (f" AND (last_event_id = {q.run('last_event_id', events[0].id - 1)}"
                      f" OR last_event_id = 0)")
        text = (f"WITH run AS (UPDATE {self.run_table} SET {', '.join(sets)} WHERE {where} "
                f"RETURNING {self.columns['control']})")
        if events:
            rows = []
            for event in events:
                values = event_values(event)
                rows.append("(" + ", ".join(q.param(f, values[f.name]) for f in _EVENT_FIELDS) + ")")
            text += (f", events AS (INSERT INTO {self.event_table} (run_id, {self.event_columns}) "
                     f"SELECT run.run_id, v.* FROM run CROSS JOIN (VALUES {', '.join(rows)}) AS v)")
        if consume_signal is not None:
            text += (f", consumed AS (DELETE FROM {self.inbox_table} "
                     f"WHERE id = {q.param(models.PendingSignal._meta.pk, consume_signal)} "
                     f"AND run_id IN (SELECT run_id FROM run))")
        return self._run(q, text + " SELECT * FROM run", self.control)

    def add_signal(self, workflow_id: str, signal: Signal, sent_at: datetime, now: datetime
                   ) -> int | None:
        q = self._sql()
        wake = q.wake(now)
        where = (f"workflow_id = {q.run('workflow_id', workflow_id)} "
                 f"AND status = {q.run('status', RUNNING)}")
        inbox = models.PendingSignal._meta
        values = {"name": signal.name, "payload": signal.payload, "sent_at": sent_at,
                  "sender_id": signal.sender_id or ""}
        placeholders = ", ".join(q.param(inbox.get_field(n), values[n]) for n in _INBOX_FIELDS)
        text = (f"WITH run AS (UPDATE {self.run_table} SET {wake} WHERE {where} RETURNING run_id) "
                f"INSERT INTO {self.inbox_table} (run_id, {', '.join(_INBOX_FIELDS)}) "
                f"SELECT run_id, {placeholders} FROM run RETURNING id")
        row = self._fetch(text, q.params)
        return row[0] if row else None

    def request_cancel(self, workflow_id: str, now: datetime) -> dict[str, Any] | None:
        q = self._sql()
        text = (f"UPDATE {self.run_table} SET cancel_requested = true, {q.wake(now)} "
                f"WHERE workflow_id = {q.run('workflow_id', workflow_id)} "
                f"AND status = {q.run('status', RUNNING)} RETURNING {self.columns['all']}")
        return self._run(q, text, self.all)
