"""``WorkflowContext``: what workflow code may call, replaying recorded outcomes and recording new ones.

Every call that does work (``execute_activity``, ``receive_signal``, ``sleep``, ``now``,
``side_effect``, ``wait_for_event``, ``send_event``) takes the next operation number. If the run's
history already holds that operation's outcome, the call returns it without doing the work again
(replay); otherwise it does the work and durably appends its events before returning (one
checkpoint per step). A recorded operation of another kind or name at that position raises
``NonDeterminismError``.

A wait that cannot finish now suspends the run by raising an internal ``BaseException``; the runner
catches it, releases the lease and records what the run waits for. ``finally`` blocks in workflow
code therefore also run on suspension: keep side effects out of them.

The context never sees the runner: it talks to the activation running it through one small port,
``ActivationPort`` (``port.py``: the history, the inbox, the clock, the hooks, cancel and deadline,
waiting, events), as Temporal's workflow module talks to its ``_Runtime``. The runner's
``Activation`` implements it; anything else that does may drive a context (a replayer, a test
double).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from ._control import ContinueAsNew, Suspend
from .errors import (
    ActivityError,
    InvalidInputError,
    RetryAfterError,
    SignalTimeoutError,
    WorkflowCanceledError,
    describe_exception,
)
from .events import (
    Event,
    EventWait,
    SendResult,
    compile_where,
    match_pairs,
    validate_event,
    validate_event_name,
)
from .parallel import (
    ActivityFuture,
    ChildWorkflowHandle,
    _Future,
    activity_inbox,
    child_inbox,
    final_event,
    later,
    outcome_events,
)
from .port import ActivationPort, Limits, RunInfo
from .registry import ActivityDefinition, activity_definition, get_workflow, workflow_name
from .replay import OPERATION_KIND, diverged_error
from .retry import RetryPolicy
from .serialization import to_json_value
from .types import EventType, HistoryEvent, Signal, to_seconds

__all__ = [
    "HUMAN_SIGNAL_PREFIX",
    "HUMAN_WAIT_KIND",
    "ActivationPort",
    "Limits",
    "RunInfo",
    "WorkflowContext",
    "operations_taken",
]

# A HumanActivity's request id (and the name of the signal answering it) is this prefix + its step.
HUMAN_SIGNAL_PREFIX = "human:"
HUMAN_WAIT_KIND = "human"


class WorkflowContext:
    """The handle workflow code uses for everything durable. See the module docstring.

    Args:
        port: the activation running this pass of the workflow code.
    """

    def __init__(self, port: ActivationPort):
        self._a = port
        self._info = port.info
        self._limits = port.limits
        self._op = 0
        # patched()/deprecate_patch(): each patch id's answer, decided once per run.
        self._patches: dict[str, bool] = {}

    # -- identity -----------------------------------------------------------------------------

    @property
    def workflow_id(self) -> str:
        """The id of the workflow this run belongs to."""
        return self._info.workflow_id

    @property
    def run_id(self) -> str:
        """The id of this run (a new one for each run of the same workflow id)."""
        return self._info.run_id

    @property
    def workflow_type(self) -> str:
        """The registered name of the workflow function."""
        return self._info.workflow_type

    @property
    def is_cancel_requested(self) -> bool:
        """``True`` once a cancel was requested (replay-safe: as it was at this point of the run)."""
        return self._a.cancel_requested_at(self._op)

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
        left to finish on its own: activities should be idempotent and bounded). A completed
        attempt is recorded before this returns and never runs again.

        Raises:
            ActivityError: the activity failed for good.
            InvalidInputError: ``input`` is not JSON-serialisable, or ``retry`` is no ``RetryPolicy``.
        """
        if getattr(fn, "__beluga_human__", False):  # a HumanActivity waits on a signal instead
            return self._ask_human(fn, input)
        definition = activity_definition(fn)
        act_name = name or definition.name
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidInputError("retry must be a RetryPolicy")
        policy = retry or definition.retry or self._limits.default_retry
        timeout_s = to_seconds(timeout, "activity timeout") if timeout is not None else definition.timeout
        input = to_json_value(input, f"input of activity {act_name!r}", max_bytes=self._limits.max_payload)

        events = self._begin("activity", act_name)
        last = events[-1] if events else None
        if last is not None and last.type is EventType.ACTIVITY_COMPLETED:
            return last.result
        if last is not None and last.type is EventType.ACTIVITY_FAILED and last.fire_at is None:
            raise _activity_error(act_name, last, self._info.workflow_id)
        attempt = sum(1 for e in events if e.type is EventType.ACTIVITY_FAILED) + 1
        retry_at = last.fire_at if last is not None else None
        return self._attempts(definition, act_name, input, policy, timeout_s, attempt, retry_at)

    def receive_signal(self, name: str, *, timeout: timedelta | float | None = None) -> Any:
        """The payload of the oldest signal ``name`` not yet consumed by this run; waits durably.

        The signal is consumed in the same write that records it: exactly once, in FIFO order.

        Raises:
            SignalTimeoutError: ``timeout`` passed with no such signal.
            InvalidInputError: ``name`` is not a non-empty string, or ``timeout`` is no duration.
        """
        if not isinstance(name, str) or not name:
            raise InvalidInputError("signal name must be a non-empty string")
        timeout_s = to_seconds(timeout, "signal timeout")
        events = self._begin("signal", name)
        last = events[-1] if events else None
        if last is not None and last.type is EventType.SIGNAL_RECEIVED:
            return last.signal_payload
        if last is not None and last.type is EventType.SIGNAL_TIMED_OUT:
            raise SignalTimeoutError(f"no signal {name!r} within the timeout",
                                     workflow_id=self._info.workflow_id)
        fire_at = events[0].fire_at if events else None

        a, op = self._a, self._op
        a.go_live(op)
        signal = self._take_signal(op, name)
        if signal is not None:
            return signal.payload
        now = a.now()
        if timeout_s is not None and fire_at is None:
            fire_at = now + timedelta(seconds=timeout_s)
            if fire_at > now:
                a.record(op, [self._event(EventType.SIGNAL_WAIT_STARTED, signal_name=name,
                                          duration=timeout_s, fire_at=fire_at)])
        if fire_at is not None and fire_at <= now:
            a.record(op, [self._event(EventType.SIGNAL_TIMED_OUT, signal_name=name)])
            raise SignalTimeoutError(f"no signal {name!r} within the timeout",
                                     workflow_id=self._info.workflow_id)
        raise a.interrupt(Suspend("signal", name, fire_at))

    def sleep(self, duration: timedelta | float) -> None:
        """Wait ``duration`` durably: the run is suspended and holds no worker meanwhile.

        Raises:
            InvalidInputError: ``duration`` is missing, negative or not a duration.
        """
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
            a.go_live(op)
            now = a.now()
            fire_at = now + timedelta(seconds=seconds)
            started = self._event(EventType.TIMER_STARTED, activity_name="sleep", duration=seconds,
                                  fire_at=fire_at, timestamp=now)
            if fire_at > now:
                # The run suspends right away: the suspension records the timer in the same
                # write (the code goes on only once a later activation replays it from there).
                raise a.interrupt(Suspend("timer", "sleep", fire_at, record=(op, [started])))
            a.record(op, [started])
        a.wait(op, fire_at, "timer", "sleep")
        a.record(op, [self._event(EventType.TIMER_FIRED, activity_name="sleep", duration=seconds)])

    def now(self) -> datetime:
        """The current time, recorded once: replays return the same aware ``datetime``."""
        return datetime.fromisoformat(self._marker("now", lambda: self._a.now().isoformat()))

    def side_effect(self, fn: Callable[[], Any]) -> Any:
        """Run non-deterministic ``fn()`` once, record its JSON value and return it (also on replay).

        Raises:
            InvalidInputError: ``fn`` is not callable, or its value is not JSON-serialisable.
        """
        if not callable(fn):
            raise InvalidInputError("side_effect needs a zero-argument callable")
        return self._marker("side_effect", fn)

    # -- versioning (API.md §11) -------------------------------------------------------------

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the code path of patch ``patch_id``.

        ``True`` on a run that reaches this point under code that has the patch (a marker is
        recorded the first time, taking an operation), and on replays of such a run; ``False``
        where the history recorded another operation here: the run got past this point under
        code without the patch, so it keeps to the old path. The answer is decided once per run
        and patch id: later calls with the same id return the same, recording nothing.

        Raises:
            InvalidInputError: ``patch_id`` is not a non-empty string of at most 200 characters.
        """
        name = _patch_marker(patch_id)
        if patch_id not in self._patches:
            self._patches[patch_id] = self._take_patch(name)
        return self._patches[patch_id]

    def deprecate_patch(self, patch_id: str) -> None:
        """Mark patch ``patch_id`` as the only path (the ``else`` branch of ``patched`` removed).

        Call it where ``patched(patch_id)`` was once no open run predates the patch: it records
        the same marker (so code that still has ``patched`` can replay runs started under this
        code), replays over a recorded marker, and records nothing where an older history has
        another operation here.

        Raises:
            InvalidInputError: a bad ``patch_id`` (see ``patched``).
        """
        name = _patch_marker(patch_id)
        if patch_id not in self._patches:
            self._take_patch(name)
            self._patches[patch_id] = True

    def continue_as_new(self, input: Any = None) -> NoReturn:
        """End this run and start the next run of this workflow, under the same id, with
        ``input``: both in one store write, so a loop that runs for ever (a monthly billing
        cycle) keeps a short history. The run ends ``completed`` (result ``None``); the next one
        keeps its queue, deadline, parent and unconsumed signals and records in its
        ``workflow_started`` event the run it continues (``{"continued_from", "generation"}``);
        ``handle.result()`` follows to the newest run. Children still open are canceled, as at
        any end. Nothing after this call runs.

        Raises:
            InvalidInputError: ``input`` is not JSON or too large (this run goes on).
        """
        a = self._a
        if a.interrupted is not None:
            raise a.interrupted
        data = to_json_value(input, "continue_as_new input", max_bytes=self._limits.max_payload)
        a.go_live(self._op + 1)
        raise a.interrupt(ContinueAsNew(data))

    def _take_patch(self, name: str) -> bool:
        """The patch marker ``name`` at the next operation: recorded already (``True``),
        recorded now at the live edge (``True``), or another operation recorded there
        (``False``: no operation is taken)."""
        a = self._a
        if a.interrupted is not None:
            raise a.interrupted
        events = a.recorded(self._op + 1)
        if events and not (events[0].type is EventType.SIDE_EFFECT_RECORDED
                           and events[0].activity_name == name):
            return False
        self._op += 1
        if not events:
            a.go_live(self._op)
            a.record(self._op, [self._event(EventType.SIDE_EFFECT_RECORDED, activity_name=name,
                                            result=True)])
        return True

    def wait_for_event(self, name: str, *, match: str | dict[str, Any] | None = None,
                       where: str | None = None, timeout: timedelta | float | str | None = None,
                       lookback: timedelta | float | str | None = None) -> Event | None:
        """The first event ``name`` that matches and this run has not consumed yet; waits durably.

        Events received since the run started (or, with ``lookback``, since that long before the
        wait began) count: one sent just before the run reached the wait is not missed.
        ``lookback=0`` counts only events received after the wait began (Inngest's behaviour).
        ``match``: a dotted path whose value must equal the run's input's (its trigger event's)
        at that path, or a dict of path -> value. ``where``: an expression over ``event`` (the
        candidate) and ``input``. The event consumed is recorded: a replay returns it again.

        Returns:
            The event, or ``None`` once ``timeout`` passed without one.

        Raises:
            InvalidInputError: a bad name, match, expression or duration, or a ``match`` path the
                run's input lacks.
            StoreError: the store keeps no events.
        """
        name = validate_event_name(name)
        timeout_s = to_seconds(timeout, "event wait timeout")
        lookback_s = to_seconds(lookback, "event wait lookback")
        compile_where(where, "wait_for_event where")
        pairs = match_pairs(match, self._info.input, "wait_for_event match")
        if pairs is None:
            raise InvalidInputError(f"wait_for_event match path {match!r} is not in the run's "
                                    f"input", workflow_id=self._info.workflow_id)
        events = self._begin("event", name)
        last = events[-1] if events else None
        if last is not None and last.type is EventType.EVENT_RECEIVED:
            return Event.from_dict(last.result)
        if last is not None and last.type is EventType.EVENT_TIMED_OUT:
            return None
        a, op = self._a, self._op
        a.go_live(op)
        if events:  # the wait was recorded by an earlier activation, with its anchor and timeout
            anchor, fire_at = datetime.fromisoformat(events[0].input["anchor"]), events[0].fire_at
        else:
            now = a.now()
            anchor = (self._info.started_at or now) if lookback_s is None else (
                now - timedelta(seconds=lookback_s))
            fire_at = now + timedelta(seconds=timeout_s) if timeout_s is not None else None
        wait = EventWait(self._info.workflow_id, self._info.run_id, op, name, pairs, where or "",
                         anchor)
        if not events:
            # The wait is stored in the write that records it, before the run looks for events:
            # a sender that commits later finds it (see fanout.py).
            a.record(op, [self._event(EventType.EVENT_WAIT_STARTED, signal_name=name,
                                      input=_wait_record(wait, lookback_s), duration=timeout_s,
                                      fire_at=fire_at)], add_wait=wait)
        found = a.find_event(wait)
        if found is not None:
            received = found.to_dict()
            a.record(op, [self._event(EventType.EVENT_RECEIVED, signal_name=name, result=received)],
                     drop_wait=True)
            return Event.from_dict(received)
        if fire_at is not None and fire_at <= a.now():
            a.record(op, [self._event(EventType.EVENT_TIMED_OUT, signal_name=name)], drop_wait=True)
            return None
        raise a.interrupt(Suspend("event", wait.describe(), fire_at))

    def send_event(self, name: str, data: dict | None = None, *, id: str | None = None
                   ) -> SendResult:
        """Send an event from the workflow, as a recorded step: a replay never sends it again.

        Its id defaults to ``"<run id>:<operation>"``, so a run that dies after sending it and
        before recording it sends the same id again, which the store takes as a duplicate.

        Raises:
            InvalidInputError: a bad name, id or data.
            StoreError: the store keeps no events.
        """
        probe = validate_event(Event(name, data, id or "pending", self._info.started_at),
                               max_bytes=self._limits.max_payload)
        events = self._begin("send_event", probe.name)
        if events:
            return SendResult.from_dict(events[-1].result)
        a, op = self._a, self._op
        a.go_live(op)
        event = Event(probe.name, probe.data, id or f"{self._info.run_id}:{op}", a.now())
        result = a.send_event(event)
        a.record(op, [self._event(EventType.EVENT_SENT, signal_name=event.name,
                                  input=event.to_dict(), result=result.to_dict())])
        return result

    # -- parallel steps (API.md §10, parallel.py) ---------------------------------------------

    def start_activity(
        self,
        fn: Callable[..., Any],
        input: Any = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        name: str | None = None,
        queue: str | None = None,
    ) -> ActivityFuture:
        """Start activity ``fn(input)`` on a worker and return at once with its future.

        Retries and per-attempt timeouts are those of ``execute_activity``; ``queue`` (else
        ``@activity(queue=...)``, else the run's) is the Celery queue it runs on. The outcome is
        recorded once workflow code asks for it (``result()``, ``gather``, ``wait_any``).

        Raises:
            InvalidInputError: ``input`` is not JSON, ``retry`` is no ``RetryPolicy``, a bad
                queue, or ``fn`` is a ``HumanActivity`` (ask people with ``execute_activity``).
        """
        if getattr(fn, "__beluga_human__", False):
            raise InvalidInputError("a HumanActivity cannot be started in parallel: call "
                                    "execute_activity")
        definition = activity_definition(fn)
        act_name = name or definition.name
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidInputError("retry must be a RetryPolicy")
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise InvalidInputError("queue must be a non-empty string")
        policy = retry or definition.retry or self._limits.default_retry
        timeout_s = to_seconds(timeout, "activity timeout") if timeout is not None else definition.timeout
        input = to_json_value(input, f"input of activity {act_name!r}", max_bytes=self._limits.max_payload)
        events = self._begin("started activity", act_name)
        op = self._op
        if not events:
            self._a.go_live(op)
            self._schedule(op, act_name, {"input": input, "retry": policy.to_dict(),
                                          "timeout": timeout_s, "queue": queue or definition.queue})
        return ActivityFuture(self, op, act_name)

    def start_child(self, workflow: Callable[..., Any] | str, input: Any = None, *,
                    id: str | None = None, timeout: timedelta | float | None = None
                    ) -> ChildWorkflowHandle:
        """Start a child workflow (a full run of its own, id ``f"{parent}/{op}"`` unless ``id``
        is given) and return its handle at once; canceling or ending this run cancels it if it
        is still open.

        Raises:
            InvalidInputError: an unknown workflow, a bad id, input or timeout.
            WorkflowAlreadyExistsError: ``id`` is an open run that is not this run's child.
        """
        type_name = workflow_name(workflow)
        get_workflow(type_name)
        input = to_json_value(input, f"input of child workflow {type_name!r}",
                              max_bytes=self._limits.max_payload)
        timeout_s = to_seconds(timeout, "child workflow timeout")
        events = self._begin("child", type_name)
        op = self._op
        if events:
            started = events[0]
            return ChildWorkflowHandle(self, op, type_name, started.signal_name, started.result)
        a = self._a
        a.go_live(op)
        child_id = id if id is not None else f"{self._info.workflow_id}/{op}"
        run_id = a.start_child(op, type_name, child_id, input, timeout_s)
        a.record(op, [self._event(EventType.CHILD_WORKFLOW_STARTED, activity_name=type_name,
                                  signal_name=child_id, input=input, result=run_id)])
        return ChildWorkflowHandle(self, op, type_name, child_id, run_id)

    def execute_child(self, workflow: Callable[..., Any] | str, input: Any = None, *,
                      id: str | None = None, timeout: timedelta | float | None = None) -> Any:
        """``start_child(...).result()``: run a child workflow and return its result.

        Raises:
            ChildWorkflowError: the child failed, was canceled or timed out.
        """
        return self.start_child(workflow, input, id=id, timeout=timeout).result()

    def gather(self, *futures: _Future, return_exceptions: bool = False) -> list[Any]:
        """Wait (durably, holding no worker) until every future has ended; their results in
        argument order. A failure raises the first failed future's error, in argument order,
        unless ``return_exceptions`` (then the errors are in the list).

        Raises:
            InvalidInputError: something that is not a future of this run.
            ActivityError / ChildWorkflowError: see above.
        """
        self._check_futures(futures)
        events = self._begin("marker", "gather")
        a, op = self._a, self._op
        if not events:
            a.go_live(op)
            pending = [f for f in futures if not self._settle(f)]
            if pending:
                raise a.interrupt(self._waiting(pending, len(futures)))
            a.record(op, [self._event(EventType.SIDE_EFFECT_RECORDED, activity_name="gather",
                                      result=[f.op for f in futures])])
        results = []
        for future in futures:
            ok, value = future.outcome(a.recorded(future.op), self._info.workflow_id)
            if not ok and not return_exceptions:
                raise value
            results.append(value)
        return results

    def wait_any(self, *futures: _Future) -> _Future:
        """Wait until one of ``futures`` has ended and return it (the first to end; a replay
        returns the same one, whatever ends first in the replay's world).

        Raises:
            InvalidInputError: no futures, or something that is not a future of this run.
        """
        if not futures:
            raise InvalidInputError("wait_any needs at least one future")
        self._check_futures(futures)
        events = self._begin("marker", "wait_any")
        if events:
            return futures[events[0].result]
        a, op = self._a, self._op
        a.go_live(op)
        ended = [(final_event(a.recorded(f.op)).id, i) for i, f in enumerate(futures)
                 if final_event(a.recorded(f.op)) is not None]
        winner = min(ended)[1] if ended else self._first_arrival(futures)
        if winner is None:
            raise a.interrupt(self._waiting(list(futures), len(futures), any_of=True))
        a.record(op, [self._event(EventType.SIDE_EFFECT_RECORDED, activity_name="wait_any",
                                  result=winner)])
        return futures[winner]

    def _done(self, future: _Future) -> bool:
        """``future.done()``: a recorded answer (a marker), so replays answer the same."""
        self._check_futures((future,))
        events = self._begin("marker", "done")
        if events:
            return bool(events[0].result)
        self._a.go_live(self._op)
        answer = self._settle(future)
        self._a.record(self._op, [self._event(EventType.SIDE_EFFECT_RECORDED, activity_name="done",
                                              result=answer)])
        return answer

    def set_query_handler(self, name: str, fn: Callable[[], Any]) -> None:
        """Answer ``executor.query(id, name)`` with ``fn()`` evaluated on the workflow's state.

        Raises:
            InvalidInputError: ``name`` is not a non-empty string, or ``fn`` is not callable.
        """
        if not isinstance(name, str) or not name:
            raise InvalidInputError("query name must be a non-empty string")
        if not callable(fn):
            raise InvalidInputError("query handler must be callable")
        self._a.add_query_handler(name, fn)

    # -- internals ----------------------------------------------------------------------------

    def _check_futures(self, futures: tuple[Any, ...]) -> None:
        for future in futures:
            if not isinstance(future, _Future) or future._ctx is not self:
                raise InvalidInputError(
                    f"expected futures of this run (from start_activity / start_child), not "
                    f"{type(future).__name__}")

    def _schedule(self, op: int, name: str, spec: dict[str, Any], handed: int = 0) -> None:
        """Record operation ``op``'s activity as handed out (``handed`` times before), then hand
        it to a worker."""
        a = self._a
        policy_attempts = (spec.get("retry") or {}).get("max_attempts", 1)
        redispatch = max(self._limits.redispatch, 2 * (spec.get("timeout") or 0) * policy_attempts)
        redispatch *= 2 ** min(handed, 10)
        # Held for the next write (a burst of start_activity calls is one write); the activity
        # is handed out only once it is durable.
        a.record_soon(op, [self._event(EventType.ACTIVITY_SCHEDULED, activity_name=name,
                                       input=spec, fire_at=later(a.now(), redispatch))])
        a.dispatch_activity(op, spec.get("queue"))

    def _settle(self, future: _Future) -> bool:
        """Whether ``future`` has ended: recorded, or now recorded from the run's inbox (or, for
        a child, from the child's state)."""
        a = self._a
        if final_event(a.recorded(future.op)) is not None:
            return True
        if isinstance(future, ActivityFuture):
            signal = a.next_signal(activity_inbox(self._info.run_id, future.op))
            if signal is None:
                return False
            # Held for the next write: every outcome settled by this pass is one write.
            a.record_soon(future.op, outcome_events(future.name, signal.payload), consume=signal)
            return True
        signal = a.next_signal(child_inbox(self._info.run_id, future.op))
        ended = signal.payload if signal is not None else self._child_end(future)
        if ended is None:
            return False
        ok = ended.get("status") == "completed"
        a.record(future.op, [self._event(
            EventType.CHILD_WORKFLOW_COMPLETED if ok else EventType.CHILD_WORKFLOW_FAILED,
            activity_name=future.name, signal_name=future.id,
            result=ended.get("result") if ok else None,
            error=None if ok else {**(ended.get("error") or {}), "status": ended.get("status")})],
            consume=signal)
        return True

    def _child_end(self, child: ChildWorkflowHandle) -> dict[str, Any] | None:
        """How the child ended, read from the store (its end notice may have been lost)."""
        state = self._a.child_state(child.id)
        if state is None or state.run_id != child.run_id:
            return {"status": "failed", "error": {
                "type": "WorkflowNotFoundError", "traceback": "",
                "message": f"child run {child.run_id} of {child.id!r} is no longer in the store"}}
        if state.is_open:
            return None
        return {"status": state.status.value, "result": state.result, "error": state.error}

    def _first_arrival(self, futures: tuple[_Future, ...]) -> int | None:
        """The index of the future whose outcome reached the inbox first, now recorded."""
        a, run_id = self._a, self._info.run_id
        arrived = []
        for index, future in enumerate(futures):
            name = (activity_inbox if isinstance(future, ActivityFuture) else child_inbox)(
                run_id, future.op)
            signal = a.next_signal(name)
            if signal is not None:
                arrived.append((signal.id if signal.id is not None else 0, index))
        for _, index in sorted(arrived):
            if self._settle(futures[index]):
                return index
        for index, future in enumerate(futures):  # a child whose end notice was lost
            if isinstance(future, ChildWorkflowHandle) and self._settle(future):
                return index
        return None

    def _waiting(self, pending: list[_Future], total: int, *, any_of: bool = False) -> Suspend:
        """The suspension of a run waiting for ``pending``: woken by their outcomes; at the
        latest when a started activity is due to be handed out again, or a child's state is due
        to be read again.

        A started activity is handed out again (now, if due) only when no started activity of
        the run has delivered an outcome for a whole hand-out interval: while outcomes keep
        coming, the workers are alive and a backlog is being worked through; each hand-out of an
        operation doubles its interval, so a long activity is duplicated a bounded number of
        times (give long activities a ``timeout``: the interval is at least twice their attempts'
        time)."""
        a = self._a
        now = a.now()
        last_outcome = max((e.timestamp for events in map(a.recorded, range(1, self._op + 1))
                            for e in events or () if e.type is EventType.ACTIVITY_COMPLETED
                            or (e.type is EventType.ACTIVITY_FAILED and e.fire_at is None)),
                           default=None)
        wake: list[datetime] = []
        for future in pending:
            if isinstance(future, ActivityFuture):
                scheduled = [e for e in a.recorded(future.op) or ()
                             if e.type is EventType.ACTIVITY_SCHEDULED]
                last = scheduled[-1]
                due = last.fire_at
                interval = (due - last.timestamp) if due is not None else timedelta(
                    seconds=self._limits.redispatch)
                stalled = last_outcome is None or last_outcome <= now - interval
                if due is not None and due <= now and stalled:  # its outcome never came
                    self._schedule(future.op, future.name, last.input, len(scheduled))
                    due = a.recorded(future.op)[-1].fire_at
                elif due is not None and due <= now:  # others are delivering: look again later
                    due = now + interval
                if due is not None:
                    wake.append(due)
            else:
                wake.append(later(now, self._limits.child_poll))
        kinds = {f.kind for f in pending}
        what = "children" if kinds == {"child"} else "activities" if kinds == {"activity"} else "work"
        name = (f"any of {total} started {what}" if any_of
                else f"{len(pending)} of {total} started {what}")
        return Suspend("parallel", name, min(wake, default=None))

    def _attempts(self, definition: ActivityDefinition, name: str, input: Any, policy: RetryPolicy,
                  timeout: float | None, attempt: int, retry_at: datetime | None) -> Any:
        """Run attempts of the current activity operation, from ``attempt`` on, until one is final."""
        a, op = self._a, self._op
        while True:
            if retry_at is not None:
                a.wait(op, retry_at, "retry", name)
            a.go_live(op)
            started = a.now()
            a.fire("on_activity_start", self._info.workflow_id, name, input)
            try:
                with a.trace("activity.run", self._info.span_attributes(**{"activity.name": name})):
                    result = _call_activity(definition, input, timeout, name)
                result = to_json_value(result, f"result of activity {name!r}",
                                       max_bytes=self._limits.max_payload)
            except Exception as exc:
                retry_at = self._failed(op, name, input, attempt, started, exc, policy)
                attempt += 1
                continue
            ended = a.now()
            a.record(op, [
                self._started(name, input, attempt, started),
                self._event(EventType.ACTIVITY_COMPLETED, activity_name=name, attempt=attempt,
                            result=result, timestamp=ended, duration=(ended - started).total_seconds()),
            ])
            a.fire("on_activity_complete", self._info.workflow_id, name, result)
            return result

    def _failed(self, op: int, name: str, input: Any, attempt: int, started: datetime,
                exc: Exception, policy: RetryPolicy) -> datetime:
        """Record failed attempt ``attempt`` of operation ``op``; return when the next one is due.

        Raises:
            ActivityError: that attempt was the last (attempts exhausted, a non-retryable error).
        """
        a, wf_id = self._a, self._info.workflow_id
        ended = a.now()
        final = (attempt >= policy.max_attempts or not policy.is_retryable(exc)
                 or isinstance(exc, InvalidInputError))
        if final:
            delay = None
        elif isinstance(exc, RetryAfterError):  # the activity says when: no backoff, no jitter
            delay = exc.delay
        else:
            delay = policy.interval(attempt)
        retry_at = None if final else ended + timedelta(seconds=delay)
        failed = self._event(EventType.ACTIVITY_FAILED, activity_name=name, attempt=attempt,
                             error=describe_exception(exc), timestamp=ended,
                             duration=(ended - started).total_seconds(), fire_at=retry_at)
        a.record(op, [self._started(name, input, attempt, started), failed])
        a.fire("on_activity_fail", wf_id, name, exc)
        if final:
            raise _activity_error(name, failed, wf_id) from exc
        a.fire("on_retry", wf_id, name, exc, attempt, delay)
        return retry_at

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
            return task.human_timed_out(self._info.workflow_id)
        a.go_live(op)
        fire_at = events[0].fire_at if events else self._request_human(op, request_id, task, data)
        signal = self._take_signal(op, request_id)
        if signal is not None:
            return task.human_answer(signal.payload)
        if fire_at is not None and fire_at <= a.now():
            a.record(op, [self._event(EventType.SIGNAL_TIMED_OUT, signal_name=request_id)])
            return task.human_timed_out(self._info.workflow_id)
        raise a.interrupt(Suspend(HUMAN_WAIT_KIND, request_id, fire_at))

    def _request_human(self, op: int, request_id: str, task: Any, data: Any) -> datetime | None:
        """Record human task ``request_id`` as operation ``op``'s wait; return when it times out."""
        request = to_json_value(dict(task.human_request(data), request_id=request_id),
                                "human task request", max_bytes=self._limits.max_payload)
        timeout_s = to_seconds(task.timeout, "human task timeout")
        fire_at = self._a.now() + timedelta(seconds=timeout_s) if timeout_s else None
        self._a.record(op, [self._event(EventType.SIGNAL_WAIT_STARTED, signal_name=request_id,
                                        input=request, duration=timeout_s, fire_at=fire_at)])
        return fire_at

    def _take_signal(self, op: int, name: str) -> Signal | None:
        """Consume the oldest signal ``name``, recorded as operation ``op``; ``None`` if none came."""
        a = self._a
        signal = a.next_signal(name)
        if signal is not None:
            a.record(op, [self._event(EventType.SIGNAL_RECEIVED, signal_name=name,
                                      signal_payload=signal.payload)], consume=signal)
            a.fire("on_signal", self._info.workflow_id, signal)
        return signal

    def _marker(self, name: str, compute: Callable[[], Any]) -> Any:
        events = self._begin("marker", name)
        if events:
            return events[0].result
        self._a.go_live(self._op)
        value = to_json_value(compute(), f"{name} value", max_bytes=self._limits.max_payload)
        self._a.record(self._op, [self._event(EventType.SIDE_EFFECT_RECORDED, activity_name=name,
                                              result=value)])
        return value

    def _event(self, type: EventType, **fields: Any) -> HistoryEvent:
        fields.setdefault("timestamp", self._a.now())
        return HistoryEvent(id=0, type=type, **fields)

    def _started(self, name: str, input: Any, attempt: int, at: datetime) -> HistoryEvent:
        return HistoryEvent(id=0, type=EventType.ACTIVITY_STARTED, timestamp=at, activity_name=name,
                            input=input, attempt=attempt)

    def _begin(self, kind: str, name: str) -> list[HistoryEvent]:
        """Take the next operation number and return what the history recorded for it."""
        a = self._a
        if a.interrupted is not None:  # workflow code swallowed a stop: every later call fails too
            raise a.interrupted
        self._op += 1
        events = a.recorded(self._op)
        if not events:
            return []
        first = events[0]
        recorded = OPERATION_KIND[first.type]
        if recorded != "cancel" and (recorded != kind or first.name != name):
            info = self._info
            raise a.interrupt(diverged_error(info.workflow_type, info.workflow_id, self._op, kind,
                                             name, first))
        if any(e.type is EventType.CANCEL_REQUESTED for e in events):
            raise WorkflowCanceledError("workflow cancel requested", workflow_id=self._info.workflow_id)
        return events


# The name of the marker that ``patched`` / ``deprecate_patch`` record.
PATCH_MARKER = "patched:"


def _patch_marker(patch_id: Any) -> str:
    """The marker name of ``patch_id``, validated."""
    if not isinstance(patch_id, str) or not patch_id or len(patch_id) > 200 or "\x00" in patch_id:
        raise InvalidInputError(f"a patch id must be a non-empty string of at most 200 "
                                f"characters without NUL, not {patch_id!r}")
    return PATCH_MARKER + patch_id


def _wait_record(wait: EventWait, lookback: float | None) -> dict[str, Any]:
    """What an ``event_wait_started`` event records of ``wait`` (its ``input``)."""
    return {"match": [list(pair) for pair in wait.match], "where": wait.where or None,
            "anchor": wait.anchor.isoformat(), "lookback": lookback, "waits_for": wait.describe()}


def operations_taken(ctx: WorkflowContext) -> int:
    """How many operations workflow code took through ``ctx`` (the runner's completeness check)."""
    return ctx._op


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
