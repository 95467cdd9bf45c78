"""Durations: a ``timedelta``, a number of seconds, or a string of one number and one unit.

Every duration the engine takes (``ctx.sleep``, timeouts, retry intervals, waits) goes through
``parse_duration``, so each accepts the same forms and refuses the same ones with the same
messages:

1. ``None`` stays ``None`` (no duration: the caller decides what that means).
2. A ``timedelta`` counts its total seconds.
3. An ``int`` or ``float`` is seconds; ``bool`` is not a number here.
4. A string is exactly one number and one unit, surrounding whitespace aside: ``"500ms"``,
   ``"30s"``, ``"5m"``, ``"2h"``, ``"7d"``, ``"1w"``, ``"1.5h"``. No sign, no exponent, no space
   inside, no second unit, no bare number (``"5"`` could mean seconds or minutes).
5. Whatever the form, the result is a finite, non-negative number of seconds of at most 100 years
   (longer ones overflow datetime arithmetic, and nothing sensible waits longer).
"""

from __future__ import annotations

import math
import re
import sys
from datetime import timedelta

from .errors import InvalidInputError

__all__ = ["DURATION_UNITS", "MAX_DURATION_SECONDS", "parse_duration"]

MAX_DURATION_SECONDS = 100 * 365 * 24 * 3600.0

# Seconds per unit. Months and years are left out on purpose: their length depends on the date.
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

# ASCII digits only ([0-9], not \d, which also matches other scripts' digits).
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNIT_LIST = ", ".join(DURATION_UNITS)
_SHOWN_CHARS = 40


def parse_duration(value: timedelta | int | float | str | None, what: str = "duration"
                   ) -> float | None:
    """Normalise a duration to float seconds (``None`` stays ``None``).

    Args:
        value: a ``timedelta``, a number of seconds, or a string such as ``"30s"`` or ``"1.5h"``
            (units: ms, s, m, h, d, w).
        what: what the duration is for (``"sleep duration"``, ``"workflow timeout"``), named in
            error messages.

    Raises:
        InvalidInputError: another type (``bool`` included), a string that is not one number and
            one unit, NaN or infinity, a negative value, or more than 100 years.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int past the float range (hundreds of digits)
            raise InvalidInputError(f"{what} must be at most 100 years" if value > 0
                                    else f"{what} must not be negative") from None
    elif isinstance(value, str):
        seconds = _parse_text(value, what)
    else:
        raise InvalidInputError(
            f"{what} must be a timedelta or a number of seconds (or a string such as '30s'), "
            f"not {type(value).__name__}"
        )
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidInputError(f"{what} must be a finite number of seconds")
    if seconds < 0:
        raise InvalidInputError(f"{what} must not be negative (got {seconds:g} s)")
    if seconds > MAX_DURATION_SECONDS:
        raise InvalidInputError(f"{what} must be at most 100 years (got {seconds:g} s)")
    return seconds


def _parse_text(text: str, what: str) -> float:
    """The seconds of a ``"<number><unit>"`` string (rule 4), before the range checks."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        shown = repr(text) if len(text) <= _SHOWN_CHARS else repr(text[:_SHOWN_CHARS]) + "..."
        raise InvalidInputError(
            f"{what} {shown} is not a duration: write one number and one unit ({_UNIT_LIST}), "
            f"such as '500ms', '30s', '5m', '1.5h', '7d' or '1w', or give a timedelta or a "
            f"number of seconds"
        )
    number, unit = found.groups()
    # Hundreds of digits read as infinity; keep it finite so the range check names the cap.
    return min(float(number) * DURATION_UNITS[unit], sys.float_info.max)
