"""Helpers shared by the engine tests: counting side effects and waiting on conditions."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from beluga_workflows import EventType, WorkflowState


class Calls:
    """A thread-safe count of how often each key was hit (activities count their side effects)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter = Counter()

    def hit(self, key: Any) -> int:
        """Count one call of ``key``; returns how many calls of it there have been, this one included."""
        with self._lock:
            self._counts[key] += 1
            return self._counts[key]

    def __getitem__(self, key: Any) -> int:
        with self._lock:
            return self._counts[key]


def unique(prefix: str = "t") -> str:
    """A fresh key or workflow id, so tests sharing module-level counters never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_until(
    condition: Callable[[], Any], timeout: float = 5.0, message: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(0.005)


def events(state: WorkflowState, *types: EventType) -> list:
    """The run's events of the given types, in order."""
    return [e for e in state.history if e.type in types]


def waiting_for_signal(store, workflow_id: str, name: str | None = None) -> bool:
    """True once the run is suspended (lease released) waiting for a signal."""
    state = store.load(workflow_id, with_history=False)
    return bool(
        state
        and state.is_open
        and not state.lease_owner
        and state.wait_kind == "signal"
        and (name is None or state.wait_name == name)
    )
