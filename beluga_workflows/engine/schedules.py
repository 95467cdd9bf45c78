"""Cron schedules (API.md §10): the ``Cron`` declaration of ``@workflow(schedule=...)`` and its ticks.

A ``Cron`` is a value: a cron expression, the time zone it is read in, the input of the runs it
starts, what to do when a tick comes while the previous run is still open (``overlap``) and
whether ticks missed while nothing fired are run late (``catch_up``). It is checked when it is
built: a bad expression, an unknown time zone, a bad overlap or an input that is no JSON value is
an ``InvalidInputError`` naming it, at decoration time.

Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading
seconds field (``"*/1 * * * * *"``: every second), the usual ranges, lists, steps, names (``MON``,
``JAN``), ``L`` (last day of the month, or ``5L``: its last Friday) and ``#`` (``MON#1``), and
the aliases ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``)
and ``@hourly``. An expression that can never match (``0 0 30 2 *``) is refused.

Ticks are computed by ``cronsim`` on the wall clock of the time zone (``zoneinfo``), and handed
out as aware UTC datetimes. Daylight-saving changes are handled as Debian's cron does: a time
that a spring-forward skips fires once, right after the change (02:30 in Europe/Berlin on the
last Sunday of March fires at 03:00 CEST); a time that a fall-back repeats fires once, at its
first occurrence; and an expression whose hour field is a wildcard fires in both repeated hours,
as the wall clock passes each. Nothing here touches a database: storing schedules and firing
their ticks is ``beluga_workflows.schedules``'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import InvalidInputError
from .serialization import to_json_value

__all__ = [
    "ALIASES",
    "OVERLAP_POLICIES",
    "Cron",
    "check_expression",
    "check_overlap",
    "check_timezone",
    "latest_tick",
    "next_tick",
    "ticks_between",
]

# What ``overlap`` may be: a tick while the schedule's previous run is open is skipped, starts a
# run anyway, or cancels the open run and starts the new one.
OVERLAP_POLICIES = ("skip", "allow", "cancel_previous")

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_EXPRESSION_LENGTH = 255
_UTC = timezone.utc
_MICROSECOND = timedelta(microseconds=1)
# Where ``check_expression`` asks for a first tick (the parser checks the fields lazily).
_ANCHOR = datetime(2000, 1, 1, tzinfo=_UTC)


def check_expression(expression: Any) -> str:
    """The cron expression ``expression`` with its fields separated by single spaces and an alias
    replaced by what it stands for.

    Raises:
        InvalidInputError: not a string, empty, too long, not 5 or 6 fields, a field out of its
            range, or an expression that never matches; the message names the expression.
    """
    if not isinstance(expression, str):
        raise InvalidInputError(f"a cron expression must be a string, not {type(expression).__name__}")
    text = " ".join(expression.split())
    if not text:
        raise InvalidInputError("a cron expression must not be empty (e.g. \"0 3 * * *\")")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise InvalidInputError(f"a cron expression is at most {MAX_EXPRESSION_LENGTH} characters")
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise InvalidInputError(
                f"unknown cron alias {expression!r}; the aliases are {', '.join(ALIASES)}")
        return ALIASES[text.lower()]
    fields = len(text.split(" "))
    if fields not in (5, 6):
        raise InvalidInputError(
            f"bad cron expression {expression!r}: it has {fields} field(s); a cron expression has "
            f"5 (minute hour day-of-month month day-of-week) or 6 (a leading seconds field)")
    try:
        next(CronSim(text, _ANCHOR))
    except CronSimError as exc:
        raise InvalidInputError(f"bad cron expression {expression!r}: {_reason(exc)}") from None
    except StopIteration:
        raise InvalidInputError(f"cron expression {expression!r} never matches") from None
    return text


def _reason(exc: CronSimError) -> str:
    message = str(exc) or "not understood"
    return message[0].lower() + message[1:]


def check_timezone(name: Any) -> ZoneInfo:
    """The time zone named ``name`` (an IANA name such as ``"Europe/Berlin"``, or ``"UTC"``).

    Raises:
        InvalidInputError: not a string, or no such time zone on this system.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError("a schedule's timezone must be a time zone name such as "
                                "\"UTC\" or \"Europe/Berlin\"")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInputError(
            f"unknown time zone {name!r}; use an IANA name such as \"UTC\" or "
            f"\"Europe/Berlin\"") from None


def check_overlap(overlap: Any) -> str:
    """``overlap`` if it is one of ``OVERLAP_POLICIES``.

    Raises:
        InvalidInputError: naming the policies there are.
    """
    if overlap not in OVERLAP_POLICIES:
        raise InvalidInputError(
            f"overlap must be one of {', '.join(map(repr, OVERLAP_POLICIES))}, not {overlap!r}")
    return overlap


def next_tick(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first tick of ``expression`` in ``zone`` strictly after ``after`` (aware), in UTC."""
    return next(CronSim(expression, after.astimezone(zone))).astimezone(_UTC)


def latest_tick(expression: str, zone: ZoneInfo, at: datetime) -> datetime:
    """The last tick of ``expression`` in ``zone`` at or before ``at`` (aware), in UTC."""
    return next(CronSim(expression, (at + _MICROSECOND).astimezone(zone), reverse=True)
                ).astimezone(_UTC)


def ticks_between(expression: str, zone: ZoneInfo, after: datetime, until: datetime, *,
                  limit: int = 1000) -> list[datetime]:
    """The ticks strictly after ``after`` and at or before ``until``, oldest first, at most ``limit``."""
    ticks: list[datetime] = []
    for tick in CronSim(expression, after.astimezone(zone)):
        tick = tick.astimezone(_UTC)
        if tick > until or len(ticks) >= limit:
            break
        ticks.append(tick)
    return ticks


@dataclass(frozen=True)
class Cron:
    """A timetable of runs: ``@workflow(schedule=Cron("0 3 * * *", timezone="Europe/Berlin"))``.

    Args:
        expression: a cron expression of 5 fields, or 6 with a leading seconds field, or an alias
            (``@daily``...); kept normalised (single spaces, aliases expanded).
        timezone: the IANA time zone whose wall clock the expression reads (default UTC).
        input: the input of every run it starts (a JSON value).
        overlap: ``"skip"`` (the default: a tick while the previous run is open starts nothing),
            ``"allow"`` (it starts a run anyway) or ``"cancel_previous"`` (it cancels the open
            run, then starts one).
        catch_up: ticks missed while no sweep ran (an outage) are run late, one by one, oldest
            first; without it (the default) they are skipped and the schedule goes on from now.

    Raises:
        InvalidInputError: any argument is invalid (the message names it).
    """

    expression: str
    timezone: str = "UTC"
    input: Any = None
    overlap: str = "skip"
    catch_up: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "expression", check_expression(self.expression))
        check_timezone(self.timezone)
        check_overlap(self.overlap)
        if not isinstance(self.catch_up, bool):
            raise InvalidInputError(f"catch_up must be True or False, not {self.catch_up!r}")
        object.__setattr__(self, "input", to_json_value(self.input, "schedule input"))

    @property
    def zone(self) -> ZoneInfo:
        """The time zone, as a ``ZoneInfo``."""
        return check_timezone(self.timezone)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (an aware datetime), in UTC."""
        return next_tick(self.expression, self.zone, moment)

    def latest_at(self, moment: datetime) -> datetime:
        """The last tick at or before ``moment`` (an aware datetime), in UTC."""
        return latest_tick(self.expression, self.zone, moment)

    def ticks(self, after: datetime, until: datetime, *, limit: int = 1000) -> list[datetime]:
        """The ticks in ``(after, until]``, oldest first, at most ``limit``, in UTC."""
        return ticks_between(self.expression, self.zone, after, until, limit=limit)
