"""The ``local`` runtime: runs workflows on a pool of threads in this process (tests, scripts).

Suspended runs hold no thread: a timer thread wakes each when its ``wake_at`` comes, and a sweep
every ``sweep_interval`` seconds picks up whatever the store says is due (runs whose worker died
and whose lease expired, wake-ups lost with a previous process) and finishes the fan-outs of
events that a previous process left undone. An event's fan-out runs on the pool too, once the
sender's transaction (if any) commits.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from django.db import connections, transaction

from ..engine.executor import WorkflowExecutor
from ..stores import get_store

__all__ = ["LocalExecutor"]

logger = logging.getLogger("beluga_workflows.local")


# The timer heap's entry for "fire the due event groups" (not a workflow id).
_FIRE_GROUPS = "\x00fire-event-groups"


class LocalExecutor(WorkflowExecutor):
    """Threads in this process. ``max_workers`` bounds how many runs advance at once."""

    name = "local"

    # workflows_recover advances due runs in its own process: it has no workers to send them to.
    dispatch_verb = "advanced in this process"

    def __init__(self, *, max_workers: int = 8, sweep_interval: float = 1.0, **options: Any) -> None:
        options.setdefault("store", get_store)
        super().__init__(**options)
        self._pool = ThreadPoolExecutor(max_workers=int(max_workers), thread_name_prefix="beluga-wf")
        self._sweep_interval = float(sweep_interval)
        self._lock = threading.Condition()
        self._queued: set[str] = set()
        self._timers: list[tuple[datetime, int, str]] = []
        self._seq = itertools.count()
        self._closed = False
        self._ended = threading.Condition()
        self._thread = threading.Thread(target=self._timer_loop, name="beluga-local-timers", daemon=True)
        self._thread.start()

    def schedule(self, workflow_id: str, *, at: datetime | None = None, queue: str | None = None) -> None:
        """Submit the run to the thread pool now (not twice while it is queued), or, with ``at``
        in the future, put it on the timer thread's heap; nothing runs after ``close``.
        """
        if at is not None and at > self.clock.now():
            with self._lock:
                heapq.heappush(self._timers, (at, next(self._seq), workflow_id))
                self._lock.notify()
            return
        with self._lock:
            if self._closed or workflow_id in self._queued:
                return
            self._queued.add(workflow_id)
        self._pool.submit(self._activate, workflow_id)

    def dispatch_activity(self, workflow_id: str, run_id: str, op: int, *,
                          queue: str | None = None, attempt: int = 1,
                          attempts: list = (), at: datetime | None = None) -> None:
        """Run the started activity on the thread pool (at ``at``: from the timer heap)."""
        task = functools.partial(self._run_activity, workflow_id, run_id, op, attempt,
                                 list(attempts))
        with self._lock:
            if self._closed:
                return
            if at is not None and at > self.clock.now():
                heapq.heappush(self._timers, (at, next(self._seq), task))
                self._lock.notify()
                return
        self._pool.submit(task)

    def _run_activity(self, workflow_id: str, run_id: str, op: int, attempt: int,
                      attempts: list) -> None:
        try:
            self.run_activity(workflow_id, run_id, op, attempt=attempt, attempts=attempts)
        except Exception:
            logger.exception("started activity %s of %s failed to run; it is handed out again "
                             "when due", op, workflow_id)

    def fire_schedules(self, now: datetime | None = None) -> list[str]:
        """Start the runs of the cron ticks due by ``now`` (``beluga_workflows.schedules``): at
        each sweep, every ``sweep_interval`` seconds."""
        from ..schedules import fire_schedules

        return fire_schedules(self, now)

    def schedule_groups(self, at: datetime) -> None:
        """Put the firing of due event groups on the timer thread's heap for ``at``."""
        with self._lock:
            heapq.heappush(self._timers, (at, next(self._seq), _FIRE_GROUPS))
            self._lock.notify()

    def schedule_fan_out(self, event_id: str) -> None:
        """Submit the event's fan-out to the thread pool once the store's transaction (if the
        caller is in one) commits; nothing runs after ``close``."""
        alias = self.store.database_alias
        if alias is not None and connections[alias].in_atomic_block:
            transaction.on_commit(lambda: self._submit_fan_out(event_id), using=alias)
        else:
            self._submit_fan_out(event_id)

    def _submit_fan_out(self, event_id: str) -> None:
        with self._lock:
            if self._closed:
                return
        self._pool.submit(self._fan_out, event_id)

    def _fan_out(self, event_id: str) -> None:
        try:
            self.fan_out(event_id)
        except Exception:
            logger.exception("fan-out of event %s failed; the sweep will do it again", event_id)

    def _fire_groups(self) -> None:
        try:
            self.fire_groups()
        except Exception:
            logger.exception("firing event groups failed; the sweep will do it again")

    def _activate(self, workflow_id: str) -> None:
        with self._lock:
            self._queued.discard(workflow_id)
        try:
            result = self.run(workflow_id)
        except Exception:
            logger.exception("activation of %s failed", workflow_id)
            return
        if result.suspended and result.wake_at is not None:
            self.schedule(workflow_id, at=result.wake_at)
        if result.claimed and not result.suspended:
            with self._ended:
                self._ended.notify_all()

    def _timer_loop(self) -> None:
        next_sweep = 0.0
        while True:
            with self._lock:
                if self._closed:
                    return
                now = self.clock.now()
                due = []
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers)[2])
                wait = min(self._sweep_interval, 0.5)
                if self._timers:
                    wait = min(wait, max((self._timers[0][0] - now).total_seconds(), 0.0))
                if not due:
                    self._lock.wait(wait)
            for workflow_id in due:
                if workflow_id is _FIRE_GROUPS:
                    self._pool.submit(self._fire_groups)
                elif callable(workflow_id):  # a started activity's retry
                    self._pool.submit(workflow_id)
                else:
                    self.schedule(workflow_id)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self._sweep_interval
                try:
                    self.recover()
                except Exception:
                    logger.exception("recovery sweep failed")

    def dispatch(self, workflow_ids: list[str]) -> None:
        """Advance these due runs in the calling thread (a command's process ends right after)."""
        for workflow_id in workflow_ids:
            self.run(workflow_id)

    def _sleep_until_change(self, workflow_id: str, seconds: float) -> None:
        # Runs ended here wake the waiter at once; runs ended by another worker or process are
        # seen by polling, so never wait longer than asked (that would overshoot result(timeout)).
        with self._ended:
            self._ended.wait(seconds)

    def close(self) -> None:
        """Stop the timer thread and its sweep, drop queued runs, wait for those advancing."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
