"""A test environment that runs workflows in-process and skips time.

    from beluga_workflows.testing import WorkflowEnvironment

    with WorkflowEnvironment() as env:
        handle = env.execute(weekly_report, WorkflowOptions(input={...}))
        env.signal(handle.id, Signal("approval", {"by": "ann"}))
        assert handle.result() == {...}      # a 7-day ctx.sleep returns in milliseconds

Runs advance in the calling thread on a ``VirtualClock``. When nothing can run, the clock jumps to
the next due timer (sleep, signal timeout, retry, deadline). ``handle.result()`` raises
``TimeoutError`` at once when the run waits for a signal that nothing will send.

Events (``env.send_event(Event(...))``) are fanned out at once, in the calling thread: the
returned ``SendResult`` lists the runs the event woke and canceled as well as those it started.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Any

from .engine.clock import VirtualClock
from .engine.executor import WorkflowExecutor
from .engine.types import WorkflowFilter, WorkflowState, WorkflowStatus, to_seconds
from .stores.base import WorkflowStore
from .stores.memory import MemoryStore

__all__ = ["TimeSkippingExecutor", "WorkflowEnvironment"]


class TimeSkippingExecutor(WorkflowExecutor):
    """Runs scheduled runs in the calling thread; ``wait`` skips virtual time to the next timer."""

    name = "time-skipping"

    def __init__(self, **options: Any) -> None:
        options.setdefault("clock", VirtualClock())
        super().__init__(**options)
        self._queue: deque[str] = deque()
        # Started activities handed out: (due time or None, (workflow id, run id, op, attempt,
        # failed attempts)), run by ``run_until_idle`` once due.
        self._activities: list[tuple[datetime | None, tuple]] = []

    def schedule(self, workflow_id: str, *, at: datetime | None = None, queue: str | None = None) -> None:
        """Queue the run for ``run_until_idle`` when it is due now; a later ``at`` is left to the
        store's ``wake_at``, which ``wait`` and ``advance_to`` skip time to.
        """
        # Future wake-ups are found through the store's wake_at when time is skipped.
        if (at is None or at <= self.clock.now()) and workflow_id not in self._queue:
            self._queue.append(workflow_id)

    def dispatch_activity(self, workflow_id: str, run_id: str, op: int, *,
                          queue: str | None = None, attempt: int = 1,
                          attempts: list = (), at: datetime | None = None) -> None:
        """Keep the started activity for ``run_until_idle`` (at ``at``, in virtual time)."""
        self._activities.append((at, (workflow_id, run_id, op, attempt, list(attempts))))

    def _run_due_activities(self) -> bool:
        now = self.clock.now()
        due = [item for item in self._activities if item[0] is None or item[0] <= now]
        if not due:
            return False
        self._activities = [item for item in self._activities if item not in due]
        for _, (workflow_id, run_id, op, attempt, attempts) in due:
            self.run_activity(workflow_id, run_id, op, attempt=attempt, attempts=attempts)
        return True

    def run_until_idle(self) -> None:
        """Advance every scheduled run (and run every started activity that is due) until none
        can move without time passing."""
        while self._queue or self._run_due_activities():
            if not self._queue:
                continue
            workflow_id = self._queue.popleft()
            result = self.run(workflow_id)
            if result.suspended and result.wake_at is not None and result.wake_at <= self.clock.now():
                self.schedule(workflow_id)

    def next_wake(self) -> datetime | None:
        """When the earliest waiting run is due, or ``None`` if every open run awaits a signal."""
        times = [s.wake_at for s in self.store.list(WorkflowFilter(status=WorkflowStatus.RUNNING))
                 if s.wake_at is not None]
        times.extend(at for at, _ in self._activities if at is not None)
        if self.store.supports_flow_control:  # debounce and batch groups fire when due
            group_due = self.store.next_group_due()
            if group_due is not None:
                times.append(group_due)
        return min(times, default=None)

    def advance_to(self, when: datetime) -> None:
        """Move the virtual clock to ``when`` (never back), then advance every run due by then."""
        self.clock.advance_to(when)
        self.recover()
        self.run_until_idle()

    def wait(self, workflow_id: str, run_id: str, timeout: float | None) -> WorkflowState:
        """Run and skip virtual time, to each next wake-up, until the run ends; return it.

        Raises:
            TimeoutError: the run waits for what nothing scheduled will bring (a signal nobody
                sends, an unregistered type), or is still open ``timeout`` virtual seconds on.
            WorkflowNotFoundError: the run is no longer in the store.
        """
        limit = None if timeout is None else self.clock.now() + timedelta(seconds=timeout)
        while True:
            self.recover()
            self.run_until_idle()
            state = self.store.load(workflow_id, with_history=False)
            if state is not None and state.run_id != run_id and self.continues(state):
                run_id = state.run_id  # the run continued as new: follow the chain
            if state is None or state.run_id != run_id or not state.is_open:
                return super().wait(workflow_id, run_id, 0)
            if state.wait_kind == "worker":  # its type is not registered: only this process runs it
                raise TimeoutError(
                    f"workflow {workflow_id!r} cannot run here: {state.wait_name}; import the "
                    f"module that defines it"
                )
            wake = self.next_wake()
            if wake is None:
                raise TimeoutError(
                    f"workflow {workflow_id!r} waits for {state.wait_kind or 'work'} "
                    f"{state.wait_name!r} and nothing scheduled will wake it"
                )
            if limit is not None and wake > limit:
                self.clock.advance_to(limit)
                raise TimeoutError(f"workflow {workflow_id!r} still running after {timeout:g} s")
            self.clock.advance_to(wake)


class WorkflowEnvironment:
    """An in-process, time-skipping place to run workflows in tests.

    Args:
        store: where runs live (default: a fresh ``MemoryStore``).
        start: the virtual clock's starting time (default: now).
        **options: more ``WorkflowExecutor`` options (hooks, lease_seconds, ...).
    """

    def __init__(self, *, store: WorkflowStore | None = None, start: datetime | None = None,
                 **options: Any) -> None:
        self.clock = VirtualClock(start)
        self.store = store if store is not None else MemoryStore()
        self.executor = TimeSkippingExecutor(store=self.store, clock=self.clock, **options)

    def __enter__(self) -> WorkflowEnvironment:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.executor.close()

    def __getattr__(self, name: str) -> Any:
        # execute, signal, cancel, query, get_handle, run_until_idle, ...
        return getattr(self.executor, name)

    def advance(self, duration: timedelta | float) -> None:
        """Move the clock forward and run whatever became due."""
        seconds = to_seconds(duration, "duration") or 0.0
        self.executor.advance_to(self.clock.now() + timedelta(seconds=seconds))
