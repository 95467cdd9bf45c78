"""Firing schedules: each due tick starts exactly one run, however many sweeps race for it.

``fire_schedules(executor, now)`` is the sweep's schedules pass. For each due row (``next_fire_at
<= now``, not paused), in one transaction on the table's database (the store's):

1. ``UPDATE ... SET next_fire_at = <the next tick>, version = version + 1 WHERE id = ... AND
   version = <as read>``: of the processes that read the row, one matches; the others (blocked
   on its row lock until it commits, then finding the version moved) match nothing and leave.
2. The winner starts the tick's run through ``executor.execute``, with the id
   ``"<schedule id>@<tick, UTC, %Y%m%dT%H%M%SZ>"``, and records the outcome on the row.

On the django store the run's row is written in that same transaction: a tick is consumed if and
only if its run is stored, so a crash anywhere loses no tick and starts none twice. (On a store
outside the database the run is written first; should the commit of the row then fail, the next
sweep finds the tick's id open and takes it as started, which is only wrong if that run has also
ended meanwhile: then the tick runs twice.)

Late ticks. With ``catch_up=True`` every tick since ``next_fire_at`` runs, oldest first, one per
transaction, at most ``limit`` per call (the next sweep goes on). Without it (the default) only
the latest tick at or before ``now`` runs, and only if it is at most ``grace`` old (a sweep
arriving late, the normal case); older ticks were missed while nothing fired and are skipped
(outcome ``"missed"``); the schedule goes on from ``now``.

Overlap. ``"skip"``: while the schedule's last run (``last_workflow_id``) is open, a tick starts
nothing (outcome ``"skipped"``); ``"cancel_previous"``: the open run is canceled (as
``executor.cancel``), then the tick's run starts; ``"allow"``: it starts regardless.

A row whose workflow type is not registered in this process is not fired here (another process
may know it; the note says why). A tick whose run is refused for good (bad input...) is consumed
with outcome ``"failed"`` and the reason. A store that is down consumes nothing: the next sweep
tries again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from django.db import DatabaseError, transaction
from django.db.models import F

from ..conf import workflow_settings
from ..engine.errors import (
    InvalidInputError,
    StoreError,
    WorkflowAlreadyExistsError,
    WorkflowNotRunningError,
)
from ..engine.registry import get_workflow
from ..engine.schedules import Cron
from ..engine.types import WorkflowOptions
from ..models import Schedule
from .declared import sync_declared_schedules
from .rows import ScheduleNotFoundError, cron_of, schedules_database

if TYPE_CHECKING:
    from ..engine.executor import WorkflowExecutor

__all__ = ["MAX_TICKS_PER_CALL", "TickOutcome", "fire_schedules", "misfire_grace",
           "scheduled_time", "tick_workflow_id", "trigger_schedule"]

logger = logging.getLogger("beluga_workflows.schedules")

# At most this many ticks are handled by one call (a catch-up backlog goes on at the next sweep).
MAX_TICKS_PER_CALL = 100
_TICK_ID = re.compile(r"@(?:now-)?(\d{8}T\d{6})(?:\.(\d{6}))?Z$")

# Called with (schedule id, its next tick) once a call has advanced a schedule: a runtime
# with timers arranges for that tick to be fired on time.
OnNext = Callable[[str, datetime], None]


@dataclass(frozen=True)
class TickOutcome:
    """What became of one tick (or one "trigger now").

    Attributes:
        schedule_id: the schedule.
        tick: the tick's time (UTC); for a trigger, when it was triggered.
        outcome: ``"started"``, ``"skipped"`` (the previous run was open), ``"missed"`` (too
            late, without catch-up) or ``"failed"`` (the run was refused: ``note`` says why).
        workflow_id: the run started (``"started"``) or still open (``"skipped"``).
        note: a sentence for people (the admin shows it).
    """

    schedule_id: str
    tick: datetime
    outcome: str
    workflow_id: str = ""
    note: str = ""


def tick_workflow_id(schedule_id: str, tick: datetime) -> str:
    """The id of the run of ``schedule_id``'s tick at ``tick``: ``"nightly@20250330T010000Z"``."""
    return f"{schedule_id}@{tick.astimezone(timezone.utc):%Y%m%dT%H%M%S}Z"


def _manual_workflow_id(schedule_id: str, now: datetime) -> str:
    return f"{schedule_id}@now-{now.astimezone(timezone.utc):%Y%m%dT%H%M%S.%f}Z"


def scheduled_time(workflow_id: str) -> datetime | None:
    """The tick (or trigger time) a schedule's run was started for, from its id; ``None`` for an
    id no schedule gave. Workflow code can call it with ``ctx.workflow_id``."""
    match = _TICK_ID.search(workflow_id)
    if match is None:
        return None
    moment = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return moment + timedelta(microseconds=int(match.group(2) or 0))


def misfire_grace() -> timedelta:
    """How late a tick may be fired without catch-up: 60 s, or 3 sweep intervals if longer."""
    return timedelta(seconds=max(60.0, 3 * float(workflow_settings.RECOVER_INTERVAL)))


def fire_schedules(executor: WorkflowExecutor, now: datetime | None = None, *,
                   ids: list[str] | None = None, limit: int = MAX_TICKS_PER_CALL,
                   on_next: OnNext | None = None, grace: timedelta | None = None) -> list[str]:
    """Fire the due ticks of every schedule (of ``ids`` only, if given); returns the ids of the
    runs started. Without ``ids`` (the sweep) the declared schedules are synced first.

    Args:
        now: the time to fire up to (default: the executor's clock).
        limit: the most ticks handled in this call.
        on_next: called after each commit that advanced a schedule, with its id and next tick.
        grace: how late a tick may fire without catch-up (default ``misfire_grace()``).

    Never raises for one schedule's trouble (a store down, an unknown type): it is logged or
    noted on the row, and the other schedules fire. A table that cannot be read (no database,
    or it is down) fires nothing, logged once a minute.
    """
    now = now or executor.clock.now()
    grace = misfire_grace() if grace is None else grace
    alias = schedules_database(executor.store)
    due = Schedule.objects.using(alias).filter(next_fire_at__lte=now, paused=False)
    if ids is not None:
        due = due.filter(pk__in=ids)
    try:
        if ids is None:
            sync_declared_schedules(executor.store, now)
        due_ids = list(due.order_by("next_fire_at").values_list("pk", flat=True)[:limit])
    except Exception as exc:  # noqa: BLE001 - no table to read (no database, or it is down)
        _unreadable(alias, exc)
        return []
    started: list[str] = []
    budget = limit
    for schedule_id in due_ids:
        while budget > 0:
            try:
                fired = _fire_next(executor, alias, schedule_id, now, grace, on_next)
            except DatabaseError:
                logger.exception("schedule %r: its tick could not be fired (the database "
                                 "failed); the next sweep tries again", schedule_id)
                fired = None
            if fired is None:
                break
            budget -= 1
            if fired.outcome == "started":
                started.append(fired.workflow_id)
    return started


_warned_at = 0.0


def _unreadable(alias: str, exc: Exception) -> None:
    """Log (at most once a minute per process) that the table could not be read."""
    global _warned_at
    if time.monotonic() - _warned_at >= 60:
        _warned_at = time.monotonic()
        logger.warning("schedules not fired: the Schedule table of database %r cannot be read "
                       "(%s: %s)", alias, type(exc).__name__, exc)


def _fire_next(executor: WorkflowExecutor, alias: str, schedule_id: str, now: datetime,
               grace: timedelta, on_next: OnNext | None) -> TickOutcome | None:
    """Handle the row's next due tick; ``None`` when it is not due (any more) or another process
    won it, or the tick could not be handled now."""
    row = Schedule.objects.using(alias).filter(pk=schedule_id).first()
    if row is None or row.paused or row.next_fire_at is None or row.next_fire_at > now:
        return None
    try:
        cron = cron_of(row)
    except InvalidInputError as exc:  # written past the checks: stop it, saying why
        _advance(alias, row, None, now, TickOutcome(row.pk, row.next_fire_at, "failed",
                                                    note=f"{exc}; the schedule is stopped"))
        return None
    try:
        get_workflow(row.workflow_type)
    except InvalidInputError:
        _note(alias, row, f"workflow type {row.workflow_type!r} is not registered in this "
                          f"process: not fired here")
        return None
    tick, next_at, outcome = _plan(row, cron, now, grace)
    try:
        with transaction.atomic(using=alias):
            if not _advance(alias, row, next_at, now, outcome):
                return None  # another process won this tick
            if outcome is None:
                outcome = _start(executor, row, cron, tick_workflow_id(row.pk, tick), tick,
                                 row.overlap, _missed_note(row, cron, tick))
                _record(alias, row.pk, outcome, now)
    except StoreError:
        logger.exception("schedule %r: the store failed starting the run of %s; the next "
                         "sweep tries again", row.pk, tick)
        return None
    if on_next is not None:
        on_next(row.pk, next_at)
    return outcome


def _plan(row: Schedule, cron: Cron, now: datetime, grace: timedelta
          ) -> tuple[datetime, datetime, TickOutcome | None]:
    """The tick to fire, the next tick after it, and the outcome when it is missed (else None)."""
    due = row.next_fire_at
    if row.catch_up:
        return due, cron.next_after(due), None
    latest = max(cron.latest_at(now), due)
    next_at = cron.next_after(now)
    if now - latest > grace:
        note = (f"nothing fired from {due:%Y-%m-%d %H:%M:%S} to {now:%Y-%m-%d %H:%M:%S} UTC; "
                f"the ticks missed then are skipped (catch_up is off)")
        return latest, next_at, TickOutcome(row.pk, latest, "missed", note=note)
    return latest, next_at, None


def _missed_note(row: Schedule, cron: Cron, tick: datetime) -> str:
    if row.catch_up or tick <= row.next_fire_at:
        return ""
    skipped = cron.ticks(row.next_fire_at - timedelta(microseconds=1),
                         tick - timedelta(microseconds=1), limit=1000)
    count = f"{len(skipped)}{'+' if len(skipped) >= 1000 else ''}"
    return f"{count} missed tick(s) before it skipped (catch_up is off)"


def _start(executor: WorkflowExecutor, row: Schedule, cron: Cron, workflow_id: str,
           tick: datetime, overlap: str, note: str = "") -> TickOutcome:
    """Start the run ``workflow_id`` for ``row`` as ``overlap`` says, in the caller's transaction."""
    notes = [note] if note else []
    previous = row.last_workflow_id
    if overlap != "allow" and previous:
        state = executor.store.load(previous, with_history=False)
        if state is not None and state.is_open:
            if overlap == "skip":
                return TickOutcome(row.pk, tick, "skipped", previous,
                                   f"the previous run {previous} is still open")
            try:
                executor.cancel(previous)
                notes.append(f"canceled the previous run {previous}")
            except WorkflowNotRunningError:
                pass  # it ended meanwhile
    try:
        with transaction.atomic(using=schedules_database(executor.store)):
            executor.execute(row.workflow_type, WorkflowOptions(id=workflow_id, input=cron.input))
    except WorkflowAlreadyExistsError:
        notes.append("its run was already started")
    except InvalidInputError as exc:
        return TickOutcome(row.pk, tick, "failed", note=f"the run was refused: {exc}")
    return TickOutcome(row.pk, tick, "started", workflow_id, "; ".join(notes))


def _advance(alias: str, row: Schedule, next_at: datetime | None, now: datetime,
             outcome: TickOutcome | None) -> bool:
    """Compare-and-set the row's next tick (and record ``outcome``, if already known)."""
    changes = {"next_fire_at": next_at, "updated_at": now, "version": F("version") + 1}
    if outcome is not None:
        changes.update(_outcome_fields(outcome))
    return bool(Schedule.objects.using(alias).filter(pk=row.pk, version=row.version)
                .update(**changes))


def _outcome_fields(outcome: TickOutcome) -> dict[str, object]:
    fields: dict[str, object] = {"last_fire_at": outcome.tick, "last_outcome": outcome.outcome,
                                 "last_note": outcome.note}
    if outcome.outcome == "started":
        fields["last_workflow_id"] = outcome.workflow_id
    return fields


def _record(alias: str, schedule_id: str, outcome: TickOutcome, now: datetime) -> None:
    """Write ``outcome`` on the row (locked by the caller's transaction; no version bump)."""
    Schedule.objects.using(alias).filter(pk=schedule_id).update(**_outcome_fields(outcome),
                                                                updated_at=now)


def _note(alias: str, row: Schedule, note: str) -> None:
    if row.last_note != note:
        Schedule.objects.using(alias).filter(pk=row.pk).update(last_note=note)


def trigger_schedule(executor: WorkflowExecutor, schedule_id: str, *,
                     overlap: str | None = None) -> TickOutcome:
    """Start a run of the schedule now ("trigger now"), whatever its timetable says and even if it
    is paused; ``next_fire_at`` is left as it is. The run's id is
    ``"<schedule id>@now-<time, UTC, with microseconds>Z"``. The schedule's ``overlap`` applies
    unless ``overlap`` is given.

    Raises:
        ScheduleNotFoundError: no such schedule.
        InvalidInputError: a bad ``overlap``, its workflow type is not registered here, or the
            run was refused (bad input...).
        StoreError: the store failed (nothing was started).
    """
    from ..engine.schedules import check_overlap

    overlap = check_overlap(overlap) if overlap is not None else None
    alias = schedules_database(executor.store)
    now = executor.clock.now()
    with transaction.atomic(using=alias):
        # The row lock orders a trigger with the ticks being fired.
        row = Schedule.objects.using(alias).select_for_update().filter(pk=schedule_id).first()
        if row is None:
            raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
        cron = cron_of(row)
        get_workflow(row.workflow_type)
        outcome = _start(executor, row, cron, _manual_workflow_id(row.pk, now), now,
                         overlap or row.overlap)
        if outcome.outcome == "failed":
            raise InvalidInputError(f"schedule {row.pk!r}: {outcome.note}")
        _record(alias, row.pk, TickOutcome(row.pk, now, outcome.outcome, outcome.workflow_id,
                                           outcome.note or "triggered by hand"), now)
    return outcome
