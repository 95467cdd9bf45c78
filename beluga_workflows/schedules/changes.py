"""Making, changing, pausing and removing schedules: what the admin, the API and code call.

Every function takes the executor (its store says which database holds the table, its clock what
time it is) and validates what it is given with ``check_fields``, so the admin form, the API and
Python code refuse the same things with the same sentences. A schedule declared in code keeps
its timetable, input and policies from the code: only pausing and resuming it is allowed here
(``InvalidInputError`` with ``code == "conflict"`` otherwise), and it cannot be deleted while the
code declares it. Every write bumps ``version``, fencing off a tick fired from what was read.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction
from django.db.models import F

from ..engine.errors import InvalidInputError, WorkflowAlreadyExistsError
from ..engine.registry import get_workflow
from ..engine.schedules import Cron, check_expression, check_overlap, check_timezone
from ..engine.serialization import to_json_value
from ..models import Schedule
from .declared import declared_schedules
from .rows import cron_of, get_schedule, schedules_database

if TYPE_CHECKING:
    from ..engine.executor import WorkflowExecutor

__all__ = ["EDITABLE_FIELDS", "InvalidScheduleError", "check_fields", "check_schedule_id",
           "create_schedule", "delete_schedule", "pause_schedule", "resume_schedule",
           "update_schedule"]

# What a schedule made in the admin or the API may change.
EDITABLE_FIELDS = ("workflow_type", "cron", "timezone", "input", "overlap", "catch_up", "paused")
MAX_ADMIN_ID_LENGTH = 100


class InvalidScheduleError(InvalidInputError):
    """A schedule's field is invalid; ``field`` names it (for forms and the API's ``errors``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _conflict(message: str) -> InvalidInputError:
    return InvalidInputError(message, code="conflict")


def check_schedule_id(schedule_id: Any) -> str:
    """``schedule_id`` if it may name a new schedule: a slug (letters, digits, ``_``, ``-``) of at
    most 100 characters that no schedule declared in code uses.

    Raises:
        InvalidScheduleError: (field ``id``) naming what is wrong.
    """
    if not isinstance(schedule_id, str) or not schedule_id:
        raise InvalidScheduleError("id", "a schedule's id must be a non-empty string")
    if len(schedule_id) > MAX_ADMIN_ID_LENGTH:
        raise InvalidScheduleError("id", f"a schedule's id is at most {MAX_ADMIN_ID_LENGTH} "
                                         f"characters")
    try:
        validate_slug(schedule_id)
    except ValidationError:
        raise InvalidScheduleError("id", f"a schedule's id is a slug (letters, digits, _ and -), "
                                         f"not {schedule_id!r}") from None
    if schedule_id in declared_schedules():
        raise InvalidScheduleError("id", f"the id {schedule_id!r} is taken by a schedule "
                                         f"declared in code")
    return schedule_id


def check_fields(*, workflow_type: Any, cron: Any, timezone: Any = "UTC", input: Any = None,
                 overlap: Any = "skip", catch_up: Any = False,
                 max_payload_bytes: int | None = None) -> dict[str, Any]:
    """The fields of a schedule, checked and normalised (the expression's spacing, aliases).

    Raises:
        InvalidScheduleError: the first invalid field, named in ``field``: an unknown workflow
            type (or one started only by events), a bad cron expression, an unknown time zone,
            an input that is no JSON value, a bad overlap or catch-up.
    """
    checks = (
        ("workflow_type", lambda: _check_type(workflow_type)),
        ("cron", lambda: check_expression(cron)),
        ("timezone", lambda: _check_zone(timezone)),
        ("input", lambda: to_json_value(input, "schedule input", max_bytes=max_payload_bytes)),
        ("overlap", lambda: check_overlap(overlap)),
        ("catch_up", lambda: _check_bool(catch_up, "catch_up")),
    )
    fields = {}
    for name, check in checks:
        try:
            fields[name] = check()
        except InvalidInputError as exc:
            raise InvalidScheduleError(name, str(exc)) from None
    return fields


def _check_type(workflow_type: Any) -> str:
    if not isinstance(workflow_type, str) or not workflow_type:
        raise InvalidInputError("a schedule's workflow type must be a registered workflow name")
    flow = get_workflow(workflow_type).flow
    if flow is not None and flow.groups_events:
        raise InvalidInputError(f"workflow {workflow_type!r} debounces or batches its events: "
                                f"only events start it, not a schedule")
    return workflow_type


def _check_zone(name: Any) -> str:
    check_timezone(name)
    return name


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be true or false, not {value!r}")
    return value


def create_schedule(executor: WorkflowExecutor, schedule_id: str, *, workflow_type: str,
                    cron: str, timezone: str = "UTC", input: Any = None, overlap: str = "skip",
                    catch_up: bool = False, paused: bool = False) -> Schedule:
    """Make a schedule (not declared in code), due at its next tick unless ``paused``.

    Raises:
        InvalidScheduleError: a bad id or field (see ``check_schedule_id``, ``check_fields``).
        WorkflowAlreadyExistsError: a schedule with that id exists.
    """
    check_schedule_id(schedule_id)
    fields = check_fields(workflow_type=workflow_type, cron=cron, timezone=timezone, input=input,
                          overlap=overlap, catch_up=catch_up,
                          max_payload_bytes=executor.max_payload_bytes)
    paused = _check_paused(paused)
    now = executor.clock.now()
    row = Schedule(id=schedule_id, **fields, paused=paused, created_at=now, updated_at=now,
                   next_fire_at=None if paused else _cron(fields).next_after(now))
    try:
        with transaction.atomic(using=schedules_database(executor.store)):
            row.save(using=schedules_database(executor.store), force_insert=True)
    except IntegrityError:
        raise WorkflowAlreadyExistsError(f"a schedule with id {schedule_id!r} exists") from None
    return row


def _cron(fields: dict[str, Any]) -> Cron:
    return Cron(fields["cron"], timezone=fields["timezone"], input=fields["input"],
                overlap=fields["overlap"], catch_up=fields["catch_up"])


def _check_paused(paused: Any) -> bool:
    try:
        return _check_bool(paused, "paused")
    except InvalidInputError as exc:
        raise InvalidScheduleError("paused", str(exc)) from None


def update_schedule(executor: WorkflowExecutor, schedule_id: str, **changes: Any) -> Schedule:
    """Change fields of a schedule (``EDITABLE_FIELDS``); a new timetable (or a resume) is due at
    its next tick from now, a pause clears ``next_fire_at``.

    Raises:
        ScheduleNotFoundError: no such schedule.
        InvalidScheduleError: an unknown or invalid field.
        InvalidInputError (``code == "conflict"``): a field other than ``paused`` of a schedule
            declared in code, or the schedule kept changing (ticks firing) over 10 attempts.
    """
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidScheduleError(unknown[0], f"unknown schedule field(s): {', '.join(unknown)}; "
                                               f"the fields are {', '.join(EDITABLE_FIELDS)}")
    for _ in range(10):  # a tick fired meanwhile moves the version: read again
        row = get_schedule(executor.store, schedule_id)
        paused = _check_paused(changes.get("paused", row.paused))
        timetable = {name: getattr(row, name) for name in EDITABLE_FIELDS if name != "paused"}
        wanted = {name: value for name, value in changes.items() if name != "paused"}
        changed = {name: value for name, value in wanted.items() if timetable[name] != value}
        if row.declared and changed:
            raise _conflict(f"schedule {row.pk!r} is declared in code (@workflow(schedule=...) "
                            f"of {row.workflow_type}): change {', '.join(sorted(changed))} there")
        if row.declared or not changed:
            return _set_paused(executor, schedule_id, paused)
        fields = check_fields(**{**timetable, **wanted},
                              max_payload_bytes=executor.max_payload_bytes)
        now = executor.clock.now()
        update: dict[str, Any] = {**fields, "paused": paused}
        retimed = "cron" in changed or "timezone" in changed or (row.paused and not paused)
        if paused:
            update["next_fire_at"] = None
        elif retimed or row.next_fire_at is None:
            update["next_fire_at"] = (None if row.undeclared_at is not None
                                      else _cron(fields).next_after(now))
        try:
            _write(executor, row, update, now)
        except InvalidInputError:
            continue
        return get_schedule(executor.store, schedule_id)
    raise _conflict(f"schedule {schedule_id!r} kept changing; try again")


def _write(executor: WorkflowExecutor, row: Schedule, update: dict[str, Any], now: datetime
           ) -> None:
    table = Schedule.objects.using(schedules_database(executor.store))
    written = table.filter(pk=row.pk, version=row.version).update(
        **update, updated_at=now, version=F("version") + 1)
    if not written:
        raise _conflict(f"schedule {row.pk!r} changed meanwhile (a tick fired); try again")


def pause_schedule(executor: WorkflowExecutor, schedule_id: str) -> Schedule:
    """Pause a schedule: no tick fires until it is resumed (a paused one stays paused).

    Raises:
        ScheduleNotFoundError: no such schedule.
    """
    return _set_paused(executor, schedule_id, True)


def resume_schedule(executor: WorkflowExecutor, schedule_id: str) -> Schedule:
    """Resume a paused schedule: due at its next tick from now (the ticks while it was paused are
    not run, even with catch-up). A schedule that is not paused is left as it is.

    Raises:
        ScheduleNotFoundError: no such schedule.
    """
    return _set_paused(executor, schedule_id, False)


def _set_paused(executor: WorkflowExecutor, schedule_id: str, paused: bool) -> Schedule:
    for _ in range(10):  # a tick fired meanwhile moves the version: read again
        row = get_schedule(executor.store, schedule_id)
        if row.paused == paused:
            return row
        now = executor.clock.now()
        next_at = None
        if not paused and row.undeclared_at is None:
            next_at = cron_of(row).next_after(now)
        try:
            _write(executor, row, {"paused": paused, "next_fire_at": next_at}, now)
        except InvalidInputError:
            continue
        return get_schedule(executor.store, schedule_id)
    raise _conflict(f"schedule {schedule_id!r} kept changing; try again")


def delete_schedule(executor: WorkflowExecutor, schedule_id: str) -> None:
    """Delete a schedule (its runs stay). One the code still declares cannot be deleted.

    Raises:
        ScheduleNotFoundError: no such schedule.
        InvalidInputError (``code == "conflict"``): the code declares it (pause it, or remove
            the declaration).
    """
    row = get_schedule(executor.store, schedule_id)
    if row.declared and row.pk in declared_schedules():
        raise _conflict(f"schedule {row.pk!r} is declared in code (@workflow(schedule=...) of "
                        f"{row.workflow_type}): remove it there, or pause it")
    Schedule.objects.using(schedules_database(executor.store)).filter(pk=row.pk).delete()
