"""``TemporalContext``: the ``WorkflowContext`` API for a sync workflow function run on Temporal.

The SDK runs only async workflow code, on its own deterministic loop. Our workflow functions are
synchronous, so they run by re-execution (``workflow.py``): every pass calls the function from
the top with a fresh ``TemporalContext`` over the run's in-memory log of operation outcomes.
Each operation takes the next number; a logged outcome is returned (or raised) at once, and the
first operation not logged yet raises ``NeedOperation``, an internal ``BaseException`` that
carries what to do. The Temporal workflow awaits the matching Temporal call (an activity, a timer,
a signal queue), logs its outcome and calls the function again. ``finally`` blocks of workflow
code run on every pass: keep side effects out of them (as on our own engine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

from ...engine.errors import (
    InvalidInputError,
    NonDeterminismError,
    StoreError,
    WorkflowCanceledError,
)
from ...engine.registry import activity_definition
from ...engine.retry import RetryPolicy
from ...engine.serialization import to_json_value
from ...engine.types import to_seconds

__all__ = ["NeedOperation", "Operation", "Outcome", "RunLog", "TemporalContext"]


@dataclass(frozen=True)
class Operation:
    """What workflow code asked for at one operation number.

    ``kind``: ``activity``, ``signal``, ``timer``, ``now``, ``side_effect``, ``continue``,
    ``start_activity`` or ``gather``; ``name`` the activity/signal name; ``spec`` the rest.
    """

    kind: str
    name: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    compute: Callable[[], Any] | None = None


class NeedOperation(BaseException):  # noqa: N818 - control flow, not an error
    """Raised by a context operation whose outcome is not logged yet (internal)."""

    def __init__(self, op: int, operation: Operation) -> None:
        super().__init__(op, operation.kind, operation.name)
        self.op = op
        self.operation = operation


@dataclass(frozen=True)
class Outcome:
    """How operation ``op`` ended: a ``value``, an ``error`` (built anew for each raise), or
    ``canceled`` (the run's cancel arrived while it waited)."""

    kind: str
    name: str
    value: Any = None
    error: Callable[[], BaseException] | None = None
    canceled: bool = False


class RunLog:
    """The outcomes of one run's operations, by number, and where its cancel arrived."""

    def __init__(self, workflow_id: str, run_id: str, workflow_type: str, max_payload: int | None
                 ) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.workflow_type = workflow_type
        self.max_payload = max_payload
        self.outcomes: dict[int, Outcome] = {}
        self.cancel_op: int | None = None
        self.queries: dict[str, Callable[[], Any]] = {}
        self.patches: Callable[[str, bool], bool] | None = None


class TemporalContext:
    """What workflow code may call (API.md §1), run on Temporal. See the module docstring."""

    def __init__(self, log: RunLog, *, default_retry: RetryPolicy | None = None) -> None:
        self._log = log
        self._op = 0
        self._default_retry = default_retry or RetryPolicy()

    # -- identity -----------------------------------------------------------------------------

    @property
    def workflow_id(self) -> str:
        """The id of the workflow this run belongs to."""
        return self._log.workflow_id

    @property
    def run_id(self) -> str:
        """The Temporal run id of this run."""
        return self._log.run_id

    @property
    def workflow_type(self) -> str:
        """The registered name of the workflow function (the Temporal workflow type)."""
        return self._log.workflow_type

    @property
    def is_cancel_requested(self) -> bool:
        """``True`` once a cancel reached this run (as it was at this point of the run)."""
        cancel_op = self._log.cancel_op
        return cancel_op is not None and self._op >= cancel_op

    # -- operations ---------------------------------------------------------------------------

    def execute_activity(self, fn: Callable[..., Any], input: Any = None, *,
                         retry: RetryPolicy | None = None, timeout: timedelta | float | None = None,
                         name: str | None = None) -> Any:
        """Run activity ``fn(input)`` as a Temporal activity (type: its name) and return its result.

        Raises:
            ActivityError: it failed for good (attempts exhausted, a non-retryable error).
            InvalidInputError: bad input, retry or timeout.
        """
        return self._take(self._activity("activity", fn, input, retry, timeout, name))

    def start_activity(self, fn: Callable[..., Any], input: Any = None, *,
                       retry: RetryPolicy | None = None, timeout: timedelta | float | None = None,
                       name: str | None = None, queue: str | None = None) -> ActivityFuture:
        """Start activity ``fn(input)`` and return at once with its future (``gather``,
        ``future.result()``); ``queue`` is the Temporal task queue it runs on.

        Raises:
            InvalidInputError: bad input, retry, timeout or queue.
        """
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise InvalidInputError("queue must be a non-empty string")
        operation = self._activity("start_activity", fn, input, retry, timeout, name)
        operation.spec["queue"] = queue
        self._take(operation)
        return ActivityFuture(self, self._op, operation.name)

    def gather(self, *futures: ActivityFuture, return_exceptions: bool = False) -> list[Any]:
        """Wait until every future has ended; their results in argument order.

        Raises:
            ActivityError: the first failed future, in argument order (unless
                ``return_exceptions``: then the errors are in the list).
            InvalidInputError: something that is not a future of this run.
        """
        for future in futures:
            if not isinstance(future, ActivityFuture) or future._ctx is not self:
                raise InvalidInputError("gather takes futures of this run (from start_activity)")
        outcomes = self._take(Operation("gather", "gather", {"ops": [f.op for f in futures]}))
        results = []
        for ok, value in outcomes:
            if not ok and not return_exceptions:
                raise value()
            results.append(value if ok else value())
        return results

    def receive_signal(self, name: str, *, timeout: timedelta | float | None = None) -> Any:
        """The payload of the oldest signal ``name`` not consumed yet by this run; waits for it.

        Raises:
            SignalTimeoutError: ``timeout`` passed with no such signal.
            InvalidInputError: a bad name or timeout.
        """
        if not isinstance(name, str) or not name:
            raise InvalidInputError("signal name must be a non-empty string")
        timeout_s = to_seconds(timeout, "signal timeout")
        return self._take(Operation("signal", name, {"timeout": timeout_s}))

    def sleep(self, duration: timedelta | float) -> None:
        """Wait ``duration`` with a Temporal timer (durable; holds no worker).

        Raises:
            InvalidInputError: ``duration`` is missing, negative or not a duration.
        """
        seconds = to_seconds(duration, "sleep duration")
        if seconds is None:
            raise InvalidInputError("sleep duration is required")
        self._take(Operation("timer", "sleep", {"seconds": seconds}))

    def now(self) -> datetime:
        """Temporal's workflow time when the run first got here (the same on every replay)."""
        return self._take(Operation("now", "now"))

    def side_effect(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` once, record its JSON value (a local activity's marker), return it.

        Raises:
            InvalidInputError: ``fn`` is not callable, or its value is not JSON.
        """
        if not callable(fn):
            raise InvalidInputError("side_effect needs a zero-argument callable")
        return self._take(Operation("side_effect", "side_effect", compute=fn))

    def set_query_handler(self, name: str, fn: Callable[[], Any]) -> None:
        """Answer ``executor.query(id, name)`` with ``fn()`` (Temporal's dynamic query handler).

        Raises:
            InvalidInputError: ``name`` is not a non-empty string, or ``fn`` is not callable.
        """
        if not isinstance(name, str) or not name:
            raise InvalidInputError("query name must be a non-empty string")
        if not callable(fn):
            raise InvalidInputError("query handler must be callable")
        self._log.queries[name] = fn

    def patched(self, patch_id: str) -> bool:
        """Temporal's ``workflow.patched``: ``True`` on runs that reach here under patched code."""
        return self._patch(patch_id, deprecated=False)

    def deprecate_patch(self, patch_id: str) -> None:
        """Temporal's ``workflow.deprecate_patch``."""
        self._patch(patch_id, deprecated=True)

    def continue_as_new(self, input: Any = None) -> NoReturn:
        """End this run and start the next run of the id with ``input`` (Temporal's
        continue-as-new; ``handle.result()`` follows to the newest run).

        Raises:
            InvalidInputError: ``input`` is not JSON or too large (this run goes on).
        """
        data = to_json_value(input, "continue_as_new input", max_bytes=self._log.max_payload)
        self._op += 1
        raise NeedOperation(self._op, Operation("continue", "continue_as_new", {"input": data}))

    def wait_for_event(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not on Temporal: events live in the django store."""
        raise StoreError("wait_for_event needs the django store's events; the temporal executor "
                         "has none (send the run a signal instead)")

    def send_event(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not on Temporal: events live in the django store."""
        raise StoreError("send_event needs the django store's events; the temporal executor has "
                         "none")

    def start_child(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not on Temporal yet."""
        raise InvalidInputError("child workflows are not supported by the temporal executor yet")

    execute_child = start_child

    # -- internals ----------------------------------------------------------------------------

    def _activity(self, kind: str, fn: Callable[..., Any], input: Any, retry: RetryPolicy | None,
                  timeout: timedelta | float | None, name: str | None) -> Operation:
        if getattr(fn, "__beluga_human__", False):
            raise InvalidInputError("human activities need the django store's signals inbox; the "
                                    "temporal executor does not run them")
        definition = activity_definition(fn)
        act_name = name or definition.name
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidInputError("retry must be a RetryPolicy")
        policy = retry or definition.retry or self._default_retry
        timeout_s = (to_seconds(timeout, "activity timeout") if timeout is not None
                     else definition.timeout)
        data = to_json_value(input, f"input of activity {act_name!r}",
                             max_bytes=self._log.max_payload)
        return Operation(kind, act_name, {"input": data, "retry": policy, "timeout": timeout_s})

    def _take(self, operation: Operation) -> Any:
        """Take the next operation number: its logged outcome, or ``NeedOperation``."""
        self._op += 1
        outcome = self._log.outcomes.get(self._op)
        if outcome is None:
            raise NeedOperation(self._op, operation)
        if outcome.kind != operation.kind or outcome.name != operation.name:
            raise NonDeterminismError(
                f"workflow {self.workflow_type!r} ({self.workflow_id!r}) diverged at operation "
                f"{self._op}: it asked for {operation.kind} {operation.name!r} where this run "
                f"did {outcome.kind} {outcome.name!r}", workflow_id=self.workflow_id)
        if outcome.canceled:
            raise WorkflowCanceledError("workflow cancel requested", workflow_id=self.workflow_id)
        if outcome.error is not None:
            raise outcome.error()
        return outcome.value

    def _patch(self, patch_id: str, *, deprecated: bool) -> bool:
        if not isinstance(patch_id, str) or not patch_id or len(patch_id) > 200:
            raise InvalidInputError(f"a patch id must be a non-empty string of at most 200 "
                                    f"characters, not {patch_id!r}")
        assert self._log.patches is not None
        return self._log.patches(patch_id, deprecated)


class ActivityFuture:
    """A started activity of a run on Temporal (``TemporalContext.start_activity``)."""

    def __init__(self, ctx: TemporalContext, op: int, name: str) -> None:
        self._ctx = ctx
        self.op = op
        self.name = name

    def __repr__(self) -> str:
        return f"<ActivityFuture {self.name!r} op={self.op}>"

    def result(self) -> Any:
        """Wait for the activity and return its result (``gather`` of this one future).

        Raises:
            ActivityError: it failed for good.
        """
        return self._ctx.gather(self)[0]
