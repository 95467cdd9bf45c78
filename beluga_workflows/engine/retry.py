"""Retry policy for activities: attempts, exponential backoff with jitter, a cap, and errors that stop."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from .errors import NonRetryableError
from .types import to_seconds

__all__ = ["DefaultRetryPolicy", "RetryPolicy"]

_DEFAULT_INITIAL = 0.1
_DEFAULT_BACKOFF = 2.0
_DEFAULT_MAX_INTERVAL = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """How an activity is retried.

    The wait before attempt ``n + 1`` is ``initial_interval * backoff_coefficient ** (n - 1)`` times
    a jitter factor drawn from ``[0.5, 1.5)``, capped at ``max_interval``. Zero or negative values
    normalise to 1 attempt, 0.1 s and 2.0. ``non_retryable_errors`` names exception classes (or
    their names) that stop retrying at once, as ``NonRetryableError`` always does.
    """

    max_attempts: int = 3
    initial_interval: float | timedelta | str = _DEFAULT_INITIAL
    backoff_coefficient: float = _DEFAULT_BACKOFF
    max_interval: float | timedelta | str = _DEFAULT_MAX_INTERVAL
    non_retryable_errors: tuple = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "max_attempts", int(self.max_attempts) if self.max_attempts > 0 else 1)
        initial = to_seconds(self.initial_interval, "initial_interval") if not _negative(
            self.initial_interval) else 0.0
        set_(self, "initial_interval", initial if initial > 0 else _DEFAULT_INITIAL)
        coefficient = float(self.backoff_coefficient)
        set_(self, "backoff_coefficient", coefficient if coefficient > 0 else _DEFAULT_BACKOFF)
        cap = to_seconds(self.max_interval, "max_interval") if not _negative(self.max_interval) else 0.0
        set_(self, "max_interval", cap if cap > 0 else _DEFAULT_MAX_INTERVAL)
        errors = self.non_retryable_errors
        if isinstance(errors, (str, type)):
            errors = (errors,)
        set_(self, "non_retryable_errors", tuple(errors or ()))

    @classmethod
    def default(cls) -> RetryPolicy:
        """The defaults: 3 attempts, 0.1 s initial interval, coefficient 2.0, capped at 10 s."""
        return cls()

    def to_dict(self) -> dict:
        """The policy as JSON-ready data (error classes by qualified name); ``from_dict`` reads it."""
        return {"max_attempts": self.max_attempts, "initial_interval": self.initial_interval,
                "backoff_coefficient": self.backoff_coefficient,
                "max_interval": self.max_interval,
                "non_retryable_errors": [k if isinstance(k, str) else f"{k.__module__}.{k.__qualname__}"
                                         for k in self.non_retryable_errors]}

    @classmethod
    def from_dict(cls, data: dict) -> RetryPolicy:
        """The policy of ``to_dict``'s data."""
        return cls(max_attempts=data.get("max_attempts", 3),
                   initial_interval=data.get("initial_interval", _DEFAULT_INITIAL),
                   backoff_coefficient=data.get("backoff_coefficient", _DEFAULT_BACKOFF),
                   max_interval=data.get("max_interval", _DEFAULT_MAX_INTERVAL),
                   non_retryable_errors=tuple(data.get("non_retryable_errors") or ()))

    def interval(self, attempt: int, rand: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next one."""
        try:
            base = self.initial_interval * self.backoff_coefficient ** max(attempt - 1, 0)
        except OverflowError:  # thousands of attempts: far past any cap
            base = math.inf
        jitter = 0.5 + (rand or random).random()
        return min(base * jitter, self.max_interval)

    def is_retryable(self, exc: BaseException) -> bool:
        """False for ``NonRetryableError`` and for the policy's ``non_retryable_errors``."""
        if isinstance(exc, NonRetryableError):
            return False
        return not _matches(exc, self.non_retryable_errors)


def _negative(value: float | timedelta | str) -> bool:
    if isinstance(value, str):
        return False  # a duration string has no sign; to_seconds parses it (or refuses it)
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    return seconds <= 0


def _matches(exc: BaseException, kinds: Iterable) -> bool:
    for kind in kinds:
        if isinstance(kind, type) and isinstance(exc, kind):
            return True
        if isinstance(kind, str) and kind in {c.__name__ for c in type(exc).__mro__} | {
            f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__
        }:
            return True
    return False


def DefaultRetryPolicy() -> RetryPolicy:  # noqa: N802 - named like the Go constructor on purpose
    """The default retry policy (same as ``RetryPolicy.default()``)."""
    return RetryPolicy()
