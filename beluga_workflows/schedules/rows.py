"""The ``Schedule`` table: which database holds it, reading its rows, and a row's timetable.

The rows live in the database the workflow store writes to (``store.database_alias``), so that the
write that advances a schedule and the write that starts its run are one transaction; a store
outside the database (memory, redis...) keeps them in the ``default`` database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import DEFAULT_DB_ALIAS

from ..engine.errors import InvalidInputError, WorkflowNotFoundError
from ..engine.schedules import Cron
from ..models import Schedule

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from ..stores.base import WorkflowStore

__all__ = ["ScheduleNotFoundError", "cron_of", "get_schedule", "schedule_rows",
           "schedule_state", "schedules_database"]


class ScheduleNotFoundError(WorkflowNotFoundError):
    """No schedule has that id (``code`` ``not_found``: the API answers 404)."""


def schedules_database(store: WorkflowStore) -> str:
    """The database alias of the ``Schedule`` table for ``store``: the store's, else ``default``."""
    return store.database_alias or DEFAULT_DB_ALIAS


def schedule_rows(store: WorkflowStore) -> QuerySet[Schedule]:
    """Every schedule of ``store``'s database, by id."""
    return Schedule.objects.using(schedules_database(store)).order_by("id")


def get_schedule(store: WorkflowStore, schedule_id: str) -> Schedule:
    """The schedule ``schedule_id``.

    Raises:
        ScheduleNotFoundError: there is none.
    """
    row = None
    if isinstance(schedule_id, str) and 0 < len(schedule_id) <= 200:
        row = schedule_rows(store).filter(pk=schedule_id).first()
    if row is None:
        raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
    return row


def cron_of(row: Schedule) -> Cron:
    """The row's timetable, input and policies as a ``Cron``.

    Raises:
        InvalidInputError: the row holds what no ``Cron`` accepts (written past the checks).
    """
    try:
        return Cron(row.cron, timezone=row.timezone, input=row.input, overlap=row.overlap,
                    catch_up=bool(row.catch_up))
    except InvalidInputError as exc:
        raise InvalidInputError(f"schedule {row.pk!r}: {exc}") from None


def schedule_state(row: Schedule) -> str:
    """``"active"``, ``"paused"``, ``"removed_from_code"`` (declared, no longer in the code) or
    ``"stopped"`` (its stored timetable could not be read)."""
    if row.declared and row.undeclared_at is not None:
        return "removed_from_code"
    if row.paused:
        return "paused"
    return "stopped" if row.next_fire_at is None else "active"
