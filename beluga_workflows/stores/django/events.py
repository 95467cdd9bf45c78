"""The ``django`` store's events: the ``Event``, ``EventDelivery`` and ``EventWait`` tables.

``DjangoEventStore`` is mixed into ``DjangoStore`` (``orm.py``), whose plumbing it uses (the
database alias, ``_replace_ended``, ``_append_row``). Each write is one transaction (on SQLite one
``BEGIN IMMEDIATE`` transaction, see ``sqlite.py``), or part of the caller's:

- ``add_event`` inserts the event row, under a savepoint inside a caller's transaction, so the
  event takes effect when that commits and a duplicate id leaves the caller's transaction usable;
- ``record_delivery`` inserts the ledger row (unique on event and workflow type) first, then
  creates the run and its ``cancel_on`` waits: a second fan-out fails on the ledger row and
  writes nothing, so each trigger starts one run;
- ``append_with_waits`` is ``append`` plus the inserts and deletes of the run's waits, in the
  transaction of the fenced update (PostgreSQL: the single-statement checkpoint under it);
- ``wake_runs`` locks the open runs' rows (in run id order: two fan-outs never deadlock) and
  bumps their ``wake_seq`` as a signal does.

What the indexes serve: ``Event (name, received_at, id)`` the waiting runs' ``find_events`` and the
list by name; ``Event (-received_at, -id)`` the newest-first list; a partial index on
``received_at`` where ``fanned_out_at IS NULL`` the outbox; ``EventWait (name, match_paths,
match_key)`` the sender's ``matching_waits``; the ``(run, op)`` constraint deletion by run.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.fields.json import KeyTransform

from ... import models
from ...engine.errors import RateLimitExceededError
from ...engine.events import (
    Event,
    EventRecord,
    EventWait,
    empty_outcome,
    event_match_key,
    merge_outcome,
)
from ...engine.flow import Admission
from ...engine.types import HistoryEvent, WorkflowState, WorkflowStatus
from ..base import RunEnd, check_history, guarded, lease_lost
from .rows import state_from_values

__all__ = ["DjangoEventStore", "wake_changes"]

RUNNING = WorkflowStatus.RUNNING.value
_EVENT_COLUMNS = ("id", "name", "data", "ts", "received_at")
# A data key a JSON key transform names as it is: no quotes, dots or brackets to escape.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def wake_changes(now: datetime) -> dict[str, Any]:
    """The column changes of waking a run (a signal, a cancel, an event): ``wake_seq`` bumped,
    due now (an earlier ``wake_at`` kept)."""
    from django.db.models import Case, Value, When

    return {
        "wake_seq": F("wake_seq") + 1, "version": F("version") + 1, "updated_at": now,
        "wake_at": Case(When(Q(wake_at__isnull=True) | Q(wake_at__gt=now), then=Value(now)),
                        default=F("wake_at")),
    }


def _record(row: models.Event) -> EventRecord:
    return EventRecord(Event(row.name, row.data, row.id, row.ts), row.received_at,
                       row.fanned_out_at, {**empty_outcome(), **(row.outcome or {})},
                       list(row.triggers or []))


def _wait_row(wait: EventWait) -> models.EventWait:
    return models.EventWait(run_id=wait.run_id, workflow_id=wait.workflow_id, op=wait.op,
                            name=wait.name, match_paths=wait.match_paths,
                            match_key=wait.match_key, match=[list(p) for p in wait.match],
                            where=wait.where, anchor=wait.anchor)


def _wait(row: models.EventWait) -> EventWait:
    return EventWait(row.workflow_id, row.run_id, row.op, row.name,
                     tuple(tuple(pair) for pair in row.match or ()), row.where, row.anchor)


def _narrowed(rows: Any, match: tuple[tuple[str, Any], ...]) -> Any:
    """``rows`` narrowed by the ``match`` pairs the database can compare exactly as text (string
    values at plain ``data`` keys, ``id``, ``name``); the caller checks every pair anyway."""
    for n, (path, value) in enumerate(match):
        if not isinstance(value, str):
            continue
        head, _, rest = path.partition(".")
        if head in ("id", "name") and not rest:
            rows = rows.filter(**{head: value})
        elif head == "data" and rest and all(_PLAIN_KEY.fullmatch(k) for k in rest.split(".")):
            transform: Any = "data"
            for key in rest.split("."):
                transform = KeyTransform(key, transform)
            # JSON equality in the database (the value is encoded as JSON, as the ORM does).
            rows = rows.alias(**{f"_match_{n}": transform}).filter(**{f"_match_{n}": value})
    return rows


class DjangoEventStore:
    """The event operations of ``DjangoStore`` (see the module docstring)."""

    supports_events = True
    using: str

    @property
    def _event_rows(self):
        return models.Event.objects.using(self.using)

    @property
    def _deliveries(self):
        return models.EventDelivery.objects.using(self.using)

    @property
    def _event_waits(self):
        return models.EventWait.objects.using(self.using)

    # -- the events ---------------------------------------------------------------------------

    @guarded("add_event")
    def add_event(self, event: Event, received_at: datetime, *,
                  triggers: list[dict[str, str]] = (), skipped: list[dict[str, str]] = ()
                  ) -> bool:
        """One INSERT (under a savepoint in a caller's transaction); ``False`` when the id's row
        exists, whose unique key refuses it."""
        row = models.Event(id=event.id, name=event.name, data=event.data, ts=event.ts,
                           received_at=received_at, triggers=list(triggers),
                           outcome=empty_outcome(skipped))
        try:
            with transaction.atomic(using=self.using):
                self._event_rows.bulk_create([row])
        except IntegrityError:
            return False
        return True

    @guarded("get_event")
    def get_event(self, event_id: str) -> EventRecord | None:
        """One read by primary key."""
        row = self._event_rows.filter(pk=event_id).first()
        return _record(row) if row is not None else None

    @guarded("list_events")
    def list_events(self, *, name: str | None = None, limit: int = 50, offset: int = 0
                    ) -> list[EventRecord]:
        """One ordered, sliced query on the newest-first (or by-name) index."""
        rows = self._event_rows.all() if name is None else self._event_rows.filter(name=name)
        rows = rows.order_by("-received_at", "-id")
        offset = max(offset, 0)
        return [_record(r) for r in (rows[offset:offset + limit] if limit > 0 else rows[offset:])]

    @guarded("count_events")
    def count_events(self, *, name: str | None = None) -> int:
        """One ``COUNT``."""
        rows = self._event_rows.all() if name is None else self._event_rows.filter(name=name)
        return rows.count()

    @guarded("find_events")
    def find_events(self, name: str, *, since: datetime | None,
                    after: tuple[datetime, str] | None = None,
                    match: tuple[tuple[str, Any], ...] = (), limit: int = 100
                    ) -> list[tuple[Event, datetime]]:
        """One range query on the ``(name, received_at, id)`` index, narrowed by the string
        values of ``match`` the database can compare."""
        rows = self._event_rows.filter(name=name)
        if since is not None:
            rows = rows.filter(received_at__gte=since)
        if after is not None:
            at, event_id = after
            rows = rows.filter(Q(received_at__gt=at) | Q(received_at=at, id__gt=event_id))
        rows = _narrowed(rows, match).order_by("received_at", "id").values(*_EVENT_COLUMNS)
        return [(Event(v["name"], v["data"], v["id"], v["ts"]), v["received_at"])
                for v in rows[:limit]]

    @guarded("unfanned_events")
    def unfanned_events(self, older_than: datetime, limit: int = 1000) -> list[str]:
        """One query on the partial outbox index."""
        if limit <= 0:
            return []
        rows = (self._event_rows.filter(fanned_out_at__isnull=True, received_at__lte=older_than)
                .order_by("received_at").values_list("id", flat=True))
        return list(rows[:limit])

    @guarded("record_outcome")
    def record_outcome(self, event_id: str, outcome: dict[str, list],
                       fanned_out_at: datetime) -> None:
        """Lock the event's row, merge the outcome into it and set ``fanned_out_at`` if unset."""
        with transaction.atomic(using=self.using):
            row = (self._event_rows.select_for_update().filter(pk=event_id)
                   .values("outcome", "fanned_out_at").first())
            if row is None:
                return
            self._event_rows.filter(pk=event_id).update(
                outcome=merge_outcome(row["outcome"], outcome),
                fanned_out_at=row["fanned_out_at"] or fanned_out_at)

    # -- starting, waiting, waking ------------------------------------------------------------

    @guarded("record_delivery")
    def record_delivery(self, event_id: str, workflow_type: str, state: WorkflowState, *,
                        waits: list[EventWait] = (), admission: Admission | None = None) -> bool:
        """The ledger row first (its unique key refuses a second delivery), then the run
        (admitted) and its waits, in one transaction; a run the rate limit refuses leaves the
        ledger row recording the skip.

        Raises:
            WorkflowAlreadyExistsError: ``state``'s id has an open run (nothing was written).
        """
        check_history(state)
        delivery = models.EventDelivery(event_id=event_id, workflow_type=workflow_type,
                                        workflow_id=state.workflow_id, run_id=state.run_id,
                                        delivered_at=state.created_at)
        try:
            with transaction.atomic(using=self.using):
                self._deliveries.bulk_create([delivery])
                try:
                    with transaction.atomic(using=self.using):
                        self._start_run(state, waits, admission)
                except RateLimitExceededError as refused:
                    self._deliveries.filter(event_id=event_id, workflow_type=workflow_type
                                            ).update(outcome="skipped", reason=str(refused),
                                                     workflow_id="", run_id="")
                    return False
        except IntegrityError:
            if not self._deliveries.filter(event_id=event_id, workflow_type=workflow_type).exists():
                raise
            return False
        return True

    @guarded("create_with_waits")
    def create_with_waits(self, state: WorkflowState, waits: list[EventWait], *,
                          admission: Admission | None = None) -> None:
        """``create`` (the admission enforced first) and the waits' inserts in one transaction.

        Raises:
            WorkflowAlreadyExistsError: the id's run is still open.
            RateLimitExceededError: the rate limit refuses the run (nothing written).
        """
        check_history(state)
        with transaction.atomic(using=self.using):
            self._start_run(state, waits, admission)

    @guarded("append_with_waits")
    def append_with_waits(self, workflow_id: str, run_id: str, owner: str,
                          events: list[HistoryEvent], *, lease_until: datetime,
                          add_waits: list[EventWait] = (), drop_waits: tuple[int, ...] = (),
                          end: RunEnd | None = None) -> WorkflowState:
        """The checkpoint's fenced writes and the waits' deletes and inserts, one transaction.

        Raises:
            ConflictError: the lease is lost, or another writer took the events' numbers.
        """
        try:
            with transaction.atomic(using=self.using):
                row = self._append_row(workflow_id, run_id, owner, events, lease_until, None, end)
                if row is None:
                    raise lease_lost(workflow_id)
                if end is not None and end.release:
                    end.freed = self._release_run(run_id)
                waits = self._event_waits.filter(run_id=run_id)
                if end is not None:
                    waits.delete()
                elif drop_waits:
                    waits.filter(op__in=drop_waits).delete()
                if add_waits:
                    self._event_waits.bulk_create([_wait_row(w) for w in add_waits])
        except IntegrityError:  # an event number already taken: another writer got there first
            raise lease_lost(workflow_id) from None
        return state_from_values(row)

    @guarded("matching_waits")
    def matching_waits(self, event: Event) -> list[EventWait]:
        """Per distinct set of match paths of the name's waits (each found by one index seek
        past the last), one look-up of the waits with the event's key for those paths."""
        of_name = self._event_waits.filter(name=event.name)
        found: list[EventWait] = []
        last: str | None = None
        while True:
            rows = of_name if last is None else of_name.filter(match_paths__gt=last)
            paths = rows.order_by("match_paths").values_list("match_paths", flat=True).first()
            if paths is None:
                return found
            last = paths
            key = event_match_key(event, paths)
            if key is not None:
                found.extend(_wait(row) for row in of_name.filter(match_paths=paths,
                                                                  match_key=key))

    @guarded("wake_runs")
    def wake_runs(self, runs: list[tuple[str, str]], now: datetime) -> dict[str, str]:
        """Lock the open runs' rows in run id order, then one UPDATE bumping their ``wake_seq``."""
        run_ids = sorted({run_id for _, run_id in runs})
        if not run_ids:
            return {}
        with transaction.atomic(using=self.using):
            rows = list(self._runs.select_for_update().filter(pk__in=run_ids, status=RUNNING)
                        .order_by("run_id").values_list("run_id", "workflow_id", "queue"))
            if rows:
                self._runs.filter(pk__in=[r[0] for r in rows]).update(**wake_changes(now))
        return {workflow_id: queue or "" for _, workflow_id, queue in rows}
