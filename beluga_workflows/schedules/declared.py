"""Schedules declared in code (``@workflow(schedule=...)``), kept in step with the ``Schedule`` table.

``sync_declared_schedules`` runs at every sweep (and before the admin, the API or the command
lists schedules), so a deploy's declarations take effect within one sweep interval:

1. A declaration without a row gets one (``declared=True``), due at its next tick. Its id is the
   workflow type, then ``"<type>#2"``, ``"<type>#3"``... for further ``Cron`` s of one workflow.
2. A row whose declaration changed (expression, time zone, input, overlap, catch-up) takes the
   code's values; a new timetable is due at its next tick from now. Whether it is paused is the
   admin's to say, never the code's.
3. A declared row whose workflow is registered here but no longer declares it is *marked*, not
   deleted: ``undeclared_at`` is set and it stops firing (its history stays readable in the admin,
   where it can be deleted; declared again, it fires again). A row whose workflow is not
   registered in this process is left alone: another process (a newer deploy) may know it.

Every change is a compare-and-set on ``version``, so a sync never undoes a tick fired meanwhile;
a change that loses is made by the next sync. Two processes inserting one row at once are
harmless (the insert ignores conflicts). During a deploy where old and new code both sync, a
changed declaration may flip between the two until the old processes are gone.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import F, Q

from ..engine.registry import get_workflow, registered_workflows
from ..engine.schedules import Cron
from ..models import Schedule
from .rows import schedules_database

__all__ = ["MAX_SCHEDULE_ID_LENGTH", "SyncResult", "declared_id", "declared_schedules",
           "sync_declared_schedules"]

logger = logging.getLogger("beluga_workflows.schedules")

MAX_SCHEDULE_ID_LENGTH = 200
_UNSAFE = re.compile(r"[\s@/]")


def declared_id(workflow_type: str, number: int) -> str:
    """The id of the ``number``-th (from 1) schedule declared by ``workflow_type``: the type for
    the first, ``"<type>#<number>"`` for the others. Whitespace, ``@`` (which separates a
    schedule's id from its tick in run ids) and ``/`` (which a URL's id segment cannot hold)
    become ``_``; an over-long type is shortened to a prefix and a digest."""
    base = _UNSAFE.sub("_", workflow_type)
    suffix = "" if number == 1 else f"#{number}"
    if len(base) + len(suffix) > MAX_SCHEDULE_ID_LENGTH:
        digest = hashlib.sha256(workflow_type.encode()).hexdigest()[:12]
        base = f"{base[:MAX_SCHEDULE_ID_LENGTH - len(suffix) - 13]}~{digest}"
    return base + suffix


def declared_schedules() -> dict[str, tuple[str, Cron]]:
    """Every schedule the registered workflows declare: id -> (workflow type, ``Cron``)."""
    declared: dict[str, tuple[str, Cron]] = {}
    for name in registered_workflows():
        for number, cron in enumerate(get_workflow(name).schedules, start=1):
            declared[declared_id(name, number)] = (name, cron)
    return declared


def _code_fields(workflow_type: str, cron: Cron) -> dict[str, object]:
    return {"workflow_type": workflow_type, "cron": cron.expression, "timezone": cron.timezone,
            "input": cron.input, "overlap": cron.overlap, "catch_up": cron.catch_up}


@dataclass
class SyncResult:
    """What a sync changed: the ids of the rows it created, updated and marked undeclared."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    undeclared: list[str] = field(default_factory=list)


def sync_declared_schedules(store: object, now: datetime) -> SyncResult:
    """Make the table hold what the code declares (see the module's rules); returns what changed.

    ``store`` is the workflow store (its database holds the table).
    """
    alias = schedules_database(store)  # type: ignore[arg-type]
    table = Schedule.objects.using(alias)
    declared = declared_schedules()
    result = SyncResult()
    rows = {row.pk: row for row in table.filter(Q(declared=True) | Q(pk__in=list(declared)))}
    missing = [Schedule(id=sid, declared=True, next_fire_at=cron.next_after(now),
                        created_at=now, updated_at=now, **_code_fields(wf_type, cron))
               for sid, (wf_type, cron) in declared.items() if sid not in rows]
    if missing:
        table.bulk_create(missing, ignore_conflicts=True)
        result.created = [row.pk for row in missing]
    registered = set(registered_workflows())
    for sid, row in rows.items():
        if sid in declared:
            if not row.declared:
                logger.warning("schedule %r was made in the admin with the id that a schedule "
                               "declared in code takes: the declaration is not synced", sid)
                continue
            changes = _changes(row, *declared[sid], now)
            if changes and _update(table, row, changes, now):
                result.updated.append(sid)
        elif (row.declared and row.undeclared_at is None and row.workflow_type in registered
              and _update(table, row, {"undeclared_at": now, "next_fire_at": None}, now)):
            result.undeclared.append(sid)
    return result


def _changes(row: Schedule, workflow_type: str, cron: Cron, now: datetime) -> dict[str, object]:
    """The fields of ``row`` that differ from its declaration (a new timetable: a new next tick)."""
    wanted = _code_fields(workflow_type, cron)
    changes = {name: value for name, value in wanted.items() if getattr(row, name) != value}
    retimed = "cron" in changes or "timezone" in changes
    if row.undeclared_at is not None:
        changes["undeclared_at"] = None
        retimed = True
    if retimed and not row.paused:
        changes["next_fire_at"] = cron.next_after(now)
    return changes


def _update(table, row: Schedule, changes: dict[str, object], now: datetime) -> bool:
    """Apply ``changes`` to ``row`` if nobody changed it since it was read (compare-and-set)."""
    return bool(table.filter(pk=row.pk, version=row.version).update(
        **changes, updated_at=now, version=F("version") + 1))
