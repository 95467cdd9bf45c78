"""Clocks: the engine reads time only through one, so tests can skip time."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from .types import utcnow

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock:
    """Wall-clock time and waiting: the base every clock implements."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time (at once for zero or less)."""
        raise NotImplementedError


class SystemClock(Clock):
    """The real clock."""

    def now(self) -> datetime:
        """The system's current time, UTC."""
        return utcnow()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` of real time."""
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock(Clock):
    """A clock that only moves when told to (``advance``/``advance_to``) or when something sleeps.

    ``sleep`` returns at once after moving the clock forward, so retry backoffs cost no real time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or utcnow()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The clock's time: where it was started, plus every advance since."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (thread-safe)."""
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def advance_to(self, when: datetime) -> None:
        """Move the clock forward to ``when``; a time already passed leaves it where it is."""
        with self._lock:
            if when > self._now:
                self._now = when

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` and return at once (no real time passes)."""
        if seconds > 0:
            self.advance(seconds)
