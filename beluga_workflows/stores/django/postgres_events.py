"""The ``django`` store's events on PostgreSQL: the fan-out's and the waiting run's reads and writes
as single prepared statements (``PostgresEventStatements``, through ``PostgresStatements``'
plumbing: the connection Django holds, server-side binding, prepared on first use).

The path of an event to the run waiting for it is two hops of the runtime (the fan-out task, then
the run's activation); each store call on it is one round trip here:

- ``add_event``: ``INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id`` (no savepoint needed
  inside the caller's transaction: a duplicate raises nothing);
- ``get_event``: one read by primary key;
- ``matching_waits``: one read of the name's distinct match paths (a loose index scan: a
  recursive CTE seeking the next path on the ``(name, match_paths, match_key)`` index), then one
  read of the waits with the event's keys for those paths;
- ``wake_runs``: one ``UPDATE`` of the open runs, locked in run id order by its subquery (two
  fan-outs never deadlock), ``RETURNING`` their workflow ids and queues;
- ``find_events``: one range read on ``(name, received_at, id)``, narrowed by JSON equality on the
  match's ``data`` paths;
- ``record_outcome``: the first fan-out's is one conditional ``UPDATE`` (while ``fanned_out_at``
  is NULL the stored outcome holds only the skips decided when the event was accepted, so the
  new lists replace its empty ones and its skips are kept); a later one merges under the row
  lock, as the ORM store does;
- ``append_with_waits``: the checkpoint statement of ``postgres.py`` with the waits' ``DELETE``
  and ``INSERT`` as further CTEs that act only if the fenced update matched.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.db import IntegrityError
from django.utils.functional import cached_property

from ... import models
from ...engine.events import Event, EventRecord, EventWait, empty_outcome, event_match_key
from ...engine.types import HistoryEvent, WorkflowState, WorkflowStatus
from ..base import RunEnd, guarded, lease_lost
from . import postgres as pg  # which imports this module: names are read at call time
from .rows import state_from_values

__all__ = ["WAIT_FIELDS", "PostgresEventStatements", "PostgresEventStore", "wait_params",
           "waits_text"]

RUNNING = WorkflowStatus.RUNNING.value
_EVENT_COLUMNS = ["id", "name", "data", "ts", "received_at", "fanned_out_at", "triggers", "outcome"]
_WAIT_COLUMNS = ["workflow_id", "run_id", "op", "name", "match", "where", "anchor"]
# A data key named as it is in a JSON path literal ('{a,b}'): nothing to quote.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# The columns of an event wait a checkpoint inserts (the run's id comes from the fenced update).
WAIT_FIELDS = [f for f in models.EventWait._meta.concrete_fields if f.name not in ("id", "run")]


# -- the waits' part of the checkpoint statement (``PostgresStatements.append``) ---------------

def wait_params(statements: Any, params: dict[str, Any], add_waits: list[EventWait],
                drop_waits: tuple[int, ...] | str) -> None:
    """Fill ``params`` for the waits' CTEs of a checkpoint (``waits_text``)."""
    if drop_waits and drop_waits != "all":
        params["drop_ops"] = list(drop_waits)
    for i, wait in enumerate(add_waits):
        values = {"workflow_id": wait.workflow_id, "op": wait.op, "name": wait.name,
                  "match_paths": wait.match_paths, "match_key": wait.match_key,
                  "match": [list(pair) for pair in wait.match], "where": wait.where,
                  "anchor": wait.anchor}
        for f in WAIT_FIELDS:
            params[f"w{i}_{f.name}"] = statements.preps[f](values[f.name])


def waits_text(statements: Any, n_add: int, drop: bool | str) -> str:
    """The CTEs of a checkpoint that changes the run's event waits (after ``run``'s): delete the
    run's waits at ``drop_ops`` (``drop == "all"``: all of them), insert ``n_add`` waits."""
    text = ""
    if drop:
        text += (f", dropped AS (DELETE FROM {statements.wait_table} "
                 f"WHERE run_id IN (SELECT run_id FROM run)")
        if drop != "all":
            text += " AND op = ANY(CAST(%(drop_ops)s AS integer[]))"
        text += ")"
    if n_add:
        rows = ["(" + ", ".join(statements._p(f, f"w{i}_{f.name}") for f in WAIT_FIELDS) + ")"
                for i in range(n_add)]
        text += (f", waits AS (INSERT INTO {statements.wait_table} (run_id, {statements.wait_columns}) "
                 f"SELECT run.run_id, v.* FROM run CROSS JOIN (VALUES {', '.join(rows)}) AS v)")
    return text



class PostgresEventStatements:
    """The event statements for one PostgreSQL database alias (thread-safe; built once)."""

    _instances: dict[str, PostgresEventStatements] = {}

    @classmethod
    def for_connection(cls, connection: Any) -> PostgresEventStatements:
        """The statements of ``connection``'s alias (built once per alias and process)."""
        instance = cls._instances.get(connection.alias)
        if instance is None:
            instance = cls._instances[connection.alias] = cls(connection)
        return instance

    def __init__(self, connection: Any) -> None:
        self.base = pg.PostgresStatements.for_connection(connection)
        qn = connection.ops.quote_name
        self.qn = qn
        self.event_table = qn(models.Event._meta.db_table)
        self.wait_table = qn(models.EventWait._meta.db_table)
        self.event_fields = {f.name: f for f in models.Event._meta.concrete_fields}
        self.types = {name: f.db_type(connection) for name, f in self.event_fields.items()}
        self.event_columns = ", ".join(qn(self.event_fields[n].column) for n in _EVENT_COLUMNS)
        wait_fields = {f.attname: f for f in models.EventWait._meta.concrete_fields}
        self.wait_columns = ", ".join(qn(wait_fields[n].column) for n in _WAIT_COLUMNS)
        self.texts: dict[Any, str] = {}

    def _e(self, name: str, param: str | None = None) -> str:
        """A typed placeholder for parameter ``param`` (default ``name``) of column ``name``."""
        return f"CAST(%({param or name})s AS {self.types[name]})"

    def _record(self, row: tuple) -> EventRecord:
        event_id, name, data, ts, received_at, fanned_out_at, triggers, outcome = row
        return EventRecord(Event(name, pg._loads(data), event_id, ts), received_at,
                           fanned_out_at, {**empty_outcome(), **(pg._loads(outcome) or {})},
                           pg._loads(triggers) or [])

    # -- statements ---------------------------------------------------------------------------

    def add_event(self, event: Event, received_at: datetime, triggers: list[dict[str, str]],
                  outcome: dict[str, list]) -> bool:
        """Insert the event unless its id exists: ``True`` when it was inserted."""
        text = self.texts.get("add_event")
        if text is None:
            names = ["id", "name", "data", "ts", "received_at", "triggers", "outcome"]
            text = self.texts["add_event"] = (
                f"INSERT INTO {self.event_table} ({', '.join(self.qn(n) for n in names)}) "
                f"VALUES ({', '.join(self._e(n) for n in names)}) "
                f"ON CONFLICT (id) DO NOTHING RETURNING id")
        params = {"id": event.id, "name": event.name, "data": pg._jsonb(event.data),
                  "ts": event.ts, "received_at": received_at, "triggers": pg._jsonb(triggers),
                  "outcome": pg._jsonb(outcome)}
        return self.base._fetch(text, params) is not None

    def get_event(self, event_id: str) -> EventRecord | None:
        """The event of that id, or ``None``."""
        text = self.texts.get("get_event")
        if text is None:
            text = self.texts["get_event"] = (
                f"SELECT {self.event_columns} FROM {self.event_table} WHERE id = {self._e('id')}")
        row = self.base._fetch(text, {"id": event_id})
        return self._record(row) if row is not None else None

    def find_events(self, name: str, since: datetime | None, after: tuple[datetime, str] | None,
                    match: tuple[tuple[str, Any], ...], limit: int
                    ) -> list[tuple[Event, datetime]]:
        """Events ``name`` since ``since`` after the cursor, oldest first, narrowed by ``match``."""
        narrowed = [(n, path.split(".")[1:]) for n, (path, value) in enumerate(match)
                    if path.startswith("data.") and isinstance(value, (str, int, float, bool))
                    and all(_PLAIN_KEY.fullmatch(k) for k in path.split(".")[1:])]
        key = ("find_events", since is not None, after is not None,
               tuple((n, tuple(keys)) for n, keys in narrowed))
        text = self.texts.get(key)
        if text is None:
            where = [f"name = {self._e('name')}"]
            if since is not None:
                where.append(f"received_at >= {self._e('received_at', 'since')}")
            if after is not None:
                where.append(f"(received_at, id) > ({self._e('received_at', 'after_at')}, "
                             f"{self._e('id', 'after_id')})")
            for n, keys in narrowed:  # JSON equality, as the ORM's key lookups compare
                where.append(f"data -> {' -> '.join(repr(k) for k in keys)} = "
                             f"CAST(%(match_{n})s AS jsonb)")
            text = self.texts[key] = (
                f"SELECT id, name, data, ts, received_at FROM {self.event_table} "
                f"WHERE {' AND '.join(where)} ORDER BY received_at, id LIMIT %(limit)s")
        params: dict[str, Any] = {"name": name, "limit": limit}
        if since is not None:
            params["since"] = since
        if after is not None:
            params["after_at"], params["after_id"] = after
        for n, _ in narrowed:
            params[f"match_{n}"] = pg._jsonb(match[n][1])
        rows = self.base._fetch_all(text, params)
        return [(Event(event_name, pg._loads(data), event_id, ts), received_at)
                for event_id, event_name, data, ts, received_at in rows]

    def first_outcome(self, event_id: str, outcome: dict[str, list], now: datetime) -> bool:
        """Record the first fan-out's ``outcome`` when the stored one holds skips only (its
        trigger's ``where``, a debounce's: a skip already there is not added again); ``False``
        if the event was fanned out before, is missing, or already lists runs (a debounce or
        batch group that fired first): then the caller merges."""
        text = self.texts.get("first_outcome")
        if text is None:
            lists = ", ".join(f"'{key}', CAST(%({key})s AS jsonb)"
                              for key in ("started", "woken", "canceled"))
            empty = " AND ".join(f"COALESCE(outcome -> '{key}', '[]'::jsonb) = '[]'::jsonb"
                                 for key in ("started", "woken", "canceled"))
            stored = "COALESCE(outcome -> 'skipped', '[]'::jsonb)"
            text = self.texts["first_outcome"] = (
                f"UPDATE {self.event_table} SET fanned_out_at = {self._e('fanned_out_at', 'now')},"
                f" outcome = jsonb_build_object({lists}, 'skipped', {stored} || COALESCE(("
                f"SELECT jsonb_agg(s) FROM jsonb_array_elements(CAST(%(skipped)s AS jsonb)) s "
                f"WHERE NOT {stored} @> jsonb_build_array(s)), '[]'::jsonb)) "
                f"WHERE id = {self._e('id')} AND fanned_out_at IS NULL AND {empty} RETURNING id")
        params = {key: pg._jsonb(list(outcome.get(key, ())))
                  for key in ("started", "woken", "canceled", "skipped")}
        params.update(id=event_id, now=now)
        return self.base._fetch(text, params) is not None

    def matching_waits(self, event: Event) -> list[EventWait]:
        """The waits of ``event.name`` with the event's key for their match paths."""
        text = self.texts.get("wait_paths")
        if text is None:  # a loose index scan: each step seeks the next distinct path
            table = self.wait_table
            text = self.texts["wait_paths"] = (
                f"WITH RECURSIVE paths(p) AS ("
                f"(SELECT match_paths FROM {table} WHERE name = %(name)s ORDER BY match_paths "
                f"LIMIT 1) UNION ALL SELECT (SELECT match_paths FROM {table} WHERE name = %(name)s "
                f"AND match_paths > paths.p ORDER BY match_paths LIMIT 1) FROM paths "
                f"WHERE paths.p IS NOT NULL) SELECT p FROM paths WHERE p IS NOT NULL")
        paths, keys = [], []
        for (match_paths,) in self.base._fetch_all(text, {"name": event.name}):
            key = event_match_key(event, match_paths)
            if key is not None:
                paths.append(match_paths)
                keys.append(key)
        if not paths:
            return []
        text = self.texts.get("waits")
        if text is None:
            text = self.texts["waits"] = (
                f"SELECT {self.wait_columns} FROM {self.wait_table} WHERE name = %(name)s AND "
                f"(match_paths, match_key) IN (SELECT * FROM unnest(CAST(%(paths)s AS text[]), "
                f"CAST(%(keys)s AS text[])))")
        rows = self.base._fetch_all(text, {"name": event.name, "paths": paths, "keys": keys})
        return [EventWait(workflow_id, run_id, op, name,
                          tuple(tuple(p) for p in pg._loads(match)), where, anchor)
                for workflow_id, run_id, op, name, match, where, anchor in rows]

    def wake_runs(self, run_ids: list[str], now: datetime) -> dict[str, str]:
        """Wake the open runs of ``run_ids``: their workflow id -> queue."""
        base = self.base
        text = self.texts.get("wake_runs")
        if text is None:
            text = self.texts["wake_runs"] = (
                f"UPDATE {base.run_table} SET {base._wake_sets()} WHERE {base._open()} AND run_id "
                f"IN (SELECT run_id FROM {base.run_table} WHERE run_id = ANY(CAST(%(ids)s AS "
                f"varchar[])) AND {base._open()} ORDER BY run_id FOR UPDATE) "
                f"RETURNING workflow_id, queue")
        params = base._run_params(status=RUNNING, updated_at=now)
        params["ids"] = run_ids
        return {workflow_id: queue or "" for workflow_id, queue in base._fetch_all(text, params)}


class PostgresEventStore:
    """The overrides of ``PostgresDjangoStore`` for events (see the module docstring)."""

    using: str

    @cached_property
    def _pg_events(self) -> PostgresEventStatements:
        from django.db import connections

        return PostgresEventStatements.for_connection(connections[self.using])

    @guarded("add_event")
    def add_event(self, event: Event, received_at: datetime, *,
                  triggers: list[dict[str, str]] = (), skipped: list[dict[str, str]] = ()
                  ) -> bool:
        """One ``INSERT ... ON CONFLICT DO NOTHING``; ``False`` when the id's row exists."""
        return self._pg_events.add_event(event, received_at, list(triggers),
                                         empty_outcome(skipped))

    @guarded("get_event")
    def get_event(self, event_id: str) -> EventRecord | None:
        """One prepared read by primary key."""
        return self._pg_events.get_event(event_id)

    @guarded("record_outcome")
    def record_outcome(self, event_id: str, outcome: dict[str, list],
                       fanned_out_at: datetime) -> None:
        """One conditional UPDATE for the first fan-out; a later one merges under the row lock."""
        if not self._pg_events.first_outcome(event_id, outcome, fanned_out_at):
            super().record_outcome(event_id, outcome, fanned_out_at)

    @guarded("find_events")
    def find_events(self, name: str, *, since: datetime | None,
                    after: tuple[datetime, str] | None = None,
                    match: tuple[tuple[str, Any], ...] = (), limit: int = 100
                    ) -> list[tuple[Event, datetime]]:
        """One prepared range read, narrowed by JSON equality on the match's ``data`` paths."""
        return self._pg_events.find_events(name, since, after, match, limit)

    @guarded("matching_waits")
    def matching_waits(self, event: Event) -> list[EventWait]:
        """Two prepared reads: the name's distinct match paths, then the waits with its keys."""
        return self._pg_events.matching_waits(event)

    @guarded("wake_runs")
    def wake_runs(self, runs: list[tuple[str, str]], now: datetime) -> dict[str, str]:
        """One prepared ``UPDATE ... RETURNING``."""
        run_ids = sorted({run_id for _, run_id in runs})
        return self._pg_events.wake_runs(run_ids, now) if run_ids else {}

    @guarded("append_with_waits")
    def append_with_waits(self, workflow_id: str, run_id: str, owner: str,
                          events: list[HistoryEvent], *, lease_until: datetime,
                          add_waits: list[EventWait] = (), drop_waits: tuple[int, ...] = (),
                          end: RunEnd | None = None) -> WorkflowState:
        """The checkpoint statement with the waits' changes as CTEs of it.

        Raises:
            ConflictError: the lease is lost, or another writer took the events' numbers.
        """
        drop: tuple[int, ...] | str = "all" if end is not None else tuple(drop_waits)
        try:
            row = self._releasing(end, run_id, lambda: self._pg_events.base.append(
                workflow_id, run_id, owner, events, lease_until=lease_until, consume_signal=None,
                end=end, add_waits=list(add_waits), drop_waits=drop))
        except IntegrityError:  # an event number already taken: another writer got there first
            row = None
        if row is None:
            raise lease_lost(workflow_id)
        return state_from_values(row)
