"""``WorkflowContext``: what workflow code may call, replaying recorded outcomes and recording new ones.

Every call that does work (``execute_activity``, ``receive_signal``, ``sleep``, ``now``,
``side_effect``) takes the next operation number. If the run's history already holds that
operation's outcome, the call returns it without doing the work again (replay); otherwise it does
the work and durably appends its events before returning (one checkpoint per step). A recorded
operation of another kind or name at that position raises ``NonDeterminismError``.

A wait that cannot finish now suspends the run by raising an internal ``BaseException``; the runner
catches it, releases the lease and records what the run waits for. ``finally`` blocks in workflow
code therefore also run on suspension: keep side effects out of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import (
    ActivityError,
    InvalidInputError,
    NonDeterminismError,
    SignalTimeoutError,
    WorkflowCanceledError,
    describe_exception,
)
from .registry import ActivityDefinition, activity_definition
from .retry import RetryPolicy
from .serialization import to_json_value
from .types import EventType, HistoryEvent, to_seconds

if TYPE_CHECKING:
    from .runner import Activation

__all__ = ["HUMAN_SIGNAL_PREFIX", "HUMAN_WAIT_KIND", "WorkflowContext"]

# A HumanActivity's request id (and the name of the signal answering it) is this prefix + its step.
HUMAN_SIGNAL_PREFIX = "human:"
HUMAN_WAIT_KIND = "human"

_KIND = {
    EventType.ACTIVITY_STARTED: "activity",
    EventType.ACTIVITY_COMPLETED: "activity",
    EventType.ACTIVITY_FAILED: "activity",
    EventType.SIGNAL_WAIT_STARTED: "signal",
    EventType.SIGNAL_RECEIVED: "signal",
    EventType.SIGNAL_TIMED_OUT: "signal",
    EventType.TIMER_STARTED: "timer",
    EventType.TIMER_FIRED: "timer",
    EventType.SIDE_EFFECT_RECORDED: "marker",
    EventType.CANCEL_REQUESTED: "cancel",
}


class Suspend(BaseException):  # noqa: N818 - control flow, not an error
    """Raised to unwind workflow code when the run must wait; caught by the runner."""

    def __init__(self, kind: str, name: str, until: datetime | None,
                 record: tuple[int, list[HistoryEvent]] | None = None):
        super().__init__(kind, name, until)
        self.kind, self.name, self.until = kind, name, until
        # Events of operation ``record[0]`` that the suspension writes in the same checkpoint.
        self.record = record


class TimedOut(BaseException):  # noqa: N818
    """Raised to unwind workflow code when the run passed its deadline."""


class StopReplay(BaseException):  # noqa: N818
    """Raised in read-only (query) replays when the code reaches work not yet recorded."""


class WorkflowContext:
    """The handle workflow code uses for everything durable. See the module docstring."""

    def __init__(self, activation: Activation):
        self._a = activation
        self._op = 0

    # -- identity -----------------------------------------------------------------------------

    @property
    def workflow_id(self) -> str:
        return self._a.state.workflow_id

    @property
    def run_id(self) -> str:
        return self._a.state.run_id

    @property
    def workflow_type(self) -> str:
        return self._a.state.workflow_type

    @property
    def is_cancel_requested(self) -> bool:
        """``True`` once a cancel was requested (replay-safe: as it was at this point of the run)."""
        a = self._a
        if a.cancel_op is not None and a.cancel_op <= self._op:
            return True
        return self._op >= a.last_op and a.cancel_requested

    # -- operations ---------------------------------------------------------------------------

    def execute_activity(
        self,
        fn: Callable[..., Any],
        input: Any = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        name: str | None = None,
    ) -> Any:
        """Run activity ``fn(input)`` durably and return its (JSON) result.

        Attempts follow ``retry`` (else the activity's default, else the configured default). Each
        attempt may run at most ``timeout``; a timed-out attempt counts as failed (the thread is
        left to finish on its own: activities should be idempotent and bounded).

        Raises:
            ActivityError: the activity failed for good.
            InvalidInputError: ``input`` is not JSON-serialisable.
        """
        if getattr(fn, "__beluga_human__", False):  # a HumanActivity waits on a signal instead
            return self._ask_human(fn, input)
        definition = activity_definition(fn)
        act_name = name or definition.name
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidInputError("retry must be a RetryPolicy")
        policy = retry or definition.retry or self._a.default_retry
        timeout_s = to_seconds(timeout, "activity timeout") if timeout is not None else definition.timeout
        input = to_json_value(input, f"input of activity {act_name!r}", max_bytes=self._a.max_payload)

        events = self._begin("activity", act_name)
        op = self._op
        last = events[-1] if events else None
        if last is not None and last.type is EventType.ACTIVITY_COMPLETED:
            return last.result
        if last is not None and last.type is EventType.ACTIVITY_FAILED and last.fire_at is None:
            raise _activity_error(act_name, last, self.workflow_id)
        attempt = sum(1 for e in events if e.type is EventType.ACTIVITY_FAILED) + 1
        retry_at = last.fire_at if last is not None else None

        a, clock, hooks = self._a, self._a.clock, self._a.hooks
        while True:
            if retry_at is not None:
                self._wait(retry_at, "retry", act_name)
            self._go_live()
            started = clock.now()
            hooks.fire("on_activity_start", self.workflow_id, act_name, input)
            try:
                result = _call_activity(definition, input, timeout_s, act_name)
                result = to_json_value(result, f"result of activity {act_name!r}",
                                       max_bytes=a.max_payload)
            except Exception as exc:
                ended = clock.now()
                final = (attempt >= policy.max_attempts or not policy.is_retryable(exc)
                         or isinstance(exc, InvalidInputError))
                delay = None if final else policy.interval(attempt)
                retry_at = None if final else ended + timedelta(seconds=delay)
                failed = a.event(EventType.ACTIVITY_FAILED, activity_name=act_name, attempt=attempt,
                                 error=describe_exception(exc), timestamp=ended,
                                 duration=(ended - started).total_seconds(), fire_at=retry_at)
                a.record(op, [self._started(act_name, input, attempt, started), failed])
                hooks.fire("on_activity_fail", self.workflow_id, act_name, exc)
                if final:
                    raise _activity_error(act_name, failed, self.workflow_id) from exc
                hooks.fire("on_retry", self.workflow_id, act_name, exc, attempt, delay)
                attempt += 1
                continue
            ended = clock.now()
            a.record(op, [
                self._started(act_name, input, attempt, started),
                a.event(EventType.ACTIVITY_COMPLETED, activity_name=act_name, attempt=attempt,
                        result=result, timestamp=ended, duration=(ended - started).total_seconds()),
            ])
            hooks.fire("on_activity_complete", self.workflow_id, act_name, result)
            return result

    def receive_signal(self, name: str, *, timeout: timedelta | float | None = None) -> Any:
        """The payload of the oldest signal ``name`` not yet consumed by this run; waits durably.

        Raises:
            SignalTimeoutError: ``timeout`` passed with no such signal.
        """
        if not isinstance(name, str) or not name:
            raise InvalidInputError("signal name must be a non-empty string")
        timeout_s = to_seconds(timeout, "signal timeout")
        events = self._begin("signal", name)
        last = events[-1] if events else None
        if last is not None and last.type is EventType.SIGNAL_RECEIVED:
            return last.signal_payload
        if last is not None and last.type is EventType.SIGNAL_TIMED_OUT:
            raise SignalTimeoutError(f"no signal {name!r} within the timeout", workflow_id=self.workflow_id)
        fire_at = events[0].fire_at if events else None

        a, op = self._a, self._op
        self._go_live()
        signal = a.next_signal(name)
        if signal is not None:
            a.record(op, [a.event(EventType.SIGNAL_RECEIVED, signal_name=name,
                                  signal_payload=signal.payload)], consume_signal=signal.id)
            a.signals.remove(signal)
            a.hooks.fire("on_signal", self.workflow_id, signal)
            return signal.payload
        now = a.clock.now()
        if timeout_s is not None and fire_at is None:
            fire_at = now + timedelta(seconds=timeout_s)
            if fire_at > now:
                a.record(op, [a.event(EventType.SIGNAL_WAIT_STARTED, signal_name=name,
                                      duration=timeout_s, fire_at=fire_at)])
        if fire_at is not None and fire_at <= now:
            a.record(op, [a.event(EventType.SIGNAL_TIMED_OUT, signal_name=name)])
            raise SignalTimeoutError(f"no signal {name!r} within the timeout", workflow_id=self.workflow_id)
        raise a.suspend("signal", name, fire_at)

    def sleep(self, duration: timedelta | float) -> None:
        """Wait ``duration`` durably: the run is suspended and holds no worker meanwhile."""
        seconds = to_seconds(duration, "sleep duration")
        if seconds is None:
            raise InvalidInputError("sleep duration is required")
        events = self._begin("timer", "sleep")
        if any(e.type is EventType.TIMER_FIRED for e in events):
            return
        a, op = self._a, self._op
        if events:
            fire_at = events[0].fire_at
        else:
            self._go_live()
            now = a.clock.now()
            fire_at = now + timedelta(seconds=seconds)
            started = a.event(EventType.TIMER_STARTED, activity_name="sleep", duration=seconds,
                              fire_at=fire_at, timestamp=now)
            if fire_at > now:
                # The run suspends right away: the suspension records the timer in the same
                # write (the code goes on only once a later activation replays it from there).
                raise a.suspend("timer", "sleep", fire_at, record=(op, [started]))
            a.record(op, [started])
        self._wait(fire_at, "timer", "sleep")
        a.record(op, [a.event(EventType.TIMER_FIRED, activity_name="sleep", duration=seconds)])

    def now(self) -> datetime:
        """The current time, recorded once: replays return the same aware ``datetime``."""
        return datetime.fromisoformat(self._marker("now", lambda: self._a.clock.now().isoformat()))

    def side_effect(self, fn: Callable[[], Any]) -> Any:
        """Run non-deterministic ``fn()`` once, record its JSON value and return it (also on replay)."""
        if not callable(fn):
            raise InvalidInputError("side_effect needs a zero-argument callable")
        return self._marker("side_effect", fn)

    def set_query_handler(self, name: str, fn: Callable[[], Any]) -> None:
        """Answer ``executor.query(id, name)`` with ``fn()`` evaluated on the workflow's state."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError("query name must be a non-empty string")
        if not callable(fn):
            raise InvalidInputError("query handler must be callable")
        self._a.query_handlers[name] = fn

    # -- internals ----------------------------------------------------------------------------

    def _ask_human(self, task: Any, data: Any) -> Any:
        """Ask a person (a ``HumanActivity``): record the request, then wait durably for the answer.

        Built on the signal machinery: the request (``task.human_request(data)``) is recorded in a
        ``signal_wait_started`` event (its ``input``), the run suspends with wait kind ``"human"``
        and holds no worker, and the answer is the signal named by the request id
        (``"human:<step>"``). Past ``task.timeout``, ``task.human_timed_out`` decides (it raises
        ``SignalTimeoutError`` or returns a default answer).
        """
        a = self._a
        request_id = f"{HUMAN_SIGNAL_PREFIX}{self._op + 1}"
        events = self._begin("signal", request_id)
        op = self._op
        last = events[-1] if events else None
        if last is not None and last.type is EventType.SIGNAL_RECEIVED:
            return task.human_answer(last.signal_payload)
        if last is not None and last.type is EventType.SIGNAL_TIMED_OUT:
            return task.human_timed_out(self.workflow_id)
        self._go_live()
        if events:
            fire_at = events[0].fire_at
        else:
            request = to_json_value(dict(task.human_request(data), request_id=request_id),
                                    "human task request", max_bytes=a.max_payload)
            timeout_s = to_seconds(task.timeout, "human task timeout")
            fire_at = a.clock.now() + timedelta(seconds=timeout_s) if timeout_s else None
            a.record(op, [a.event(EventType.SIGNAL_WAIT_STARTED, signal_name=request_id,
                                  input=request, duration=timeout_s, fire_at=fire_at)])
        signal = a.next_signal(request_id)
        if signal is not None:
            a.record(op, [a.event(EventType.SIGNAL_RECEIVED, signal_name=request_id,
                                  signal_payload=signal.payload)], consume_signal=signal.id)
            a.signals.remove(signal)
            a.hooks.fire("on_signal", self.workflow_id, signal)
            return task.human_answer(signal.payload)
        if fire_at is not None and fire_at <= a.clock.now():
            a.record(op, [a.event(EventType.SIGNAL_TIMED_OUT, signal_name=request_id)])
            return task.human_timed_out(self.workflow_id)
        raise a.suspend(HUMAN_WAIT_KIND, request_id, fire_at)

    def _marker(self, name: str, compute: Callable[[], Any]) -> Any:
        events = self._begin("marker", name)
        if events:
            return events[0].result
        self._go_live()
        value = to_json_value(compute(), f"{name} value", max_bytes=self._a.max_payload)
        self._a.record(self._op, [self._a.event(EventType.SIDE_EFFECT_RECORDED, activity_name=name,
                                                result=value)])
        return value

    def _started(self, name: str, input: Any, attempt: int, at: datetime) -> HistoryEvent:
        return self._a.event(EventType.ACTIVITY_STARTED, activity_name=name, input=input,
                             attempt=attempt, timestamp=at)

    def _begin(self, kind: str, name: str) -> list[HistoryEvent]:
        """Take the next operation number and return what the history recorded for it."""
        a = self._a
        if a.diverged is not None:  # workflow code swallowed it: every later call fails too
            raise a.diverged
        if a.suspending is not None:
            raise a.suspending
        self._op += 1
        events = a.ops.get(self._op)
        if not events:
            return []
        first = events[0]
        recorded = _KIND[first.type]
        if recorded != "cancel" and (recorded != kind or first.name != name):
            a.diverged = NonDeterminismError(
                f"workflow {a.state.workflow_type!r} diverged from its history at step {self._op}: "
                f"the code now calls {kind} {name!r} but the history recorded {recorded} "
                f"{first.name!r} (event {first.id}); the workflow code changed while this run was "
                f"open, or it is not deterministic",
                workflow_id=a.state.workflow_id,
            )
            raise a.diverged
        if any(e.type is EventType.CANCEL_REQUESTED for e in events):
            raise WorkflowCanceledError("workflow cancel requested", workflow_id=a.state.workflow_id)
        return events

    def _go_live(self) -> None:
        """About to do new work: stop a read-only replay, enforce the deadline, deliver a cancel."""
        a = self._a
        if a.read_only:
            raise StopReplay()
        if a.deadline is not None and a.clock.now() >= a.deadline:
            raise TimedOut()
        if a.cancel_requested and a.cancel_op is None:
            a.record(self._op, [a.event(EventType.CANCEL_REQUESTED)])
            a.cancel_op = self._op
            a.hooks.fire("on_cancel", a.state.workflow_id)
            raise WorkflowCanceledError("workflow cancel requested", workflow_id=a.state.workflow_id)

    def _wait(self, until: datetime, kind: str, name: str) -> None:
        """Return once ``until`` has passed, by suspending the run (retry backoffs up to
        ``in_place_wait`` seconds are waited in place: they are short and frequent)."""
        a = self._a
        self._go_live()
        remaining = (until - a.clock.now()).total_seconds()
        if remaining <= 0:
            return
        if (kind == "retry" and remaining <= a.in_place_wait
                and (a.deadline is None or until < a.deadline)):
            a.clock.sleep(remaining)
            return
        raise a.suspend(kind, name, until)


def _activity_error(name: str, failed: HistoryEvent, workflow_id: str) -> ActivityError:
    cause = failed.error or {}
    return ActivityError(
        f"activity {name!r} failed after {failed.attempt} attempt(s): "
        f"{cause.get('type', 'Error')}: {cause.get('message', '')}",
        workflow_id=workflow_id, activity_name=name, attempts=failed.attempt, cause=cause,
    )


def _call_activity(definition: ActivityDefinition, input: Any, timeout: float | None, name: str) -> Any:
    """Call the activity, bounded by ``timeout`` seconds when one is given."""
    if timeout is None:
        return definition(input)
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["result"] = definition(input)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=f"beluga-activity-{name}", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"activity {name!r} timed out after {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
