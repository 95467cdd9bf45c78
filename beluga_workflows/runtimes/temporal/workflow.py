"""The Temporal side of a run: one dynamic async workflow re-executing our sync function.

``BelugaWorkflow`` is registered for every workflow type (``dynamic=True``); its ``run`` looks up
our registered function by the Temporal workflow type and calls it with a ``TemporalContext``
(``context.py``). When a pass stops at an operation not logged yet, ``run`` awaits the Temporal
call for it, logs its outcome and calls the function again, until the function returns or
raises. Signals go to per-name queues (a dynamic signal handler: a signal sent before the run
reaches ``receive_signal`` waits in its queue), queries to the handlers the function set (a
dynamic query handler). The workflow is unsandboxed: our function and the registry are plain
imports of the worker process.

How runs end: a return completes the run; an exception fails it (an ``ApplicationError`` whose
type is the exception's class name and whose details are our ``{"type", "message",
"traceback"}``); once a cancel has reached the run, any end is ``canceled`` (clean-up activities
the function runs after catching ``WorkflowCanceledError`` still run first). A replay whose
commands do not match the history raises the SDK's ``NondeterminismError``, which fails the run
(it is one of the workflow's failure exception types) instead of retrying the task for ever.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError as TActivityError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as TTimeoutError
from temporalio.workflow import NondeterminismError

from ...engine.errors import (
    ActivityError,
    InvalidInputError,
    SignalTimeoutError,
    describe_exception,
)
from ...engine.registry import get_workflow
from ...engine.serialization import DEFAULT_MAX_PAYLOAD_BYTES, to_json_value
from .context import NeedOperation, Operation, Outcome, RunLog, TemporalContext
from .mapping import RECORD_VALUE, WAIT_PATCH, temporal_retry

__all__ = ["DEFAULT_ACTIVITY_TIMEOUT", "LOCAL_ACTIVITIES_MEMO", "RECORD_VALUE", "WAIT_MEMO",
           "BelugaWorkflow"]

# Each attempt of an activity given no timeout may run this long (Temporal needs a bound).
DEFAULT_ACTIVITY_TIMEOUT = 300.0
# The run's memo key saying which activities run as Temporal local activities (set by the
# executor when it starts the run, so every replay of the run decides the same way).
LOCAL_ACTIVITIES_MEMO = "beluga.local_activities"
# The run's memo key holding what it waits for now, ``{"kind", "name", "until"}`` (the store's
# wait_kind / wait_name / wait_until), upserted as each wait begins; and the patch that guards it
# (runs started before it replay without it).
WAIT_MEMO = "beluga.wait"


def _decode(args: Sequence[RawValue]) -> Any:
    if not args:
        return None
    return workflow.payload_converter().from_payload(args[0].payload)


@workflow.defn(dynamic=True, sandboxed=False, failure_exception_types=[NondeterminismError])
class BelugaWorkflow:
    """Every beluga workflow type, run by re-execution. See the module docstring."""

    def __init__(self) -> None:
        self._signals: defaultdict[str, deque[Any]] = defaultdict(deque)
        self._log: RunLog | None = None
        self._started: dict[int, Any] = {}  # op -> the Temporal activity handle it started
        self._started_names: dict[int, str] = {}  # op -> the name of the activity it started
        self._local: bool | frozenset[str] = False  # which activities run as local activities
        self._wait: dict[str, Any] | None = None  # the wait last put in the memo
        self._wait_memo: bool | None = None  # whether this run records its waits (WAIT_PATCH)

    @workflow.signal(dynamic=True)
    def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Queue signal ``name``'s payload (FIFO per name) for ``receive_signal``."""
        self._signals[name].append(_decode(args))

    @workflow.query(dynamic=True)
    def on_query(self, name: str, args: Sequence[RawValue]) -> Any:
        """Answer query ``name`` with the handler the function set, evaluated now."""
        handler = self._log.queries.get(name) if self._log is not None else None
        if handler is None:
            known = ", ".join(sorted(self._log.queries)) if self._log is not None else ""
            raise ApplicationError(f"unknown query type {name!r}; this run answers: "
                                   f"{known or '(no query handlers)'}", type="InvalidInputError")
        return to_json_value(handler(), f"answer of query {name!r}")

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> Any:
        """Call the function pass after pass, doing each new operation in between."""
        info = workflow.info()
        try:
            definition = get_workflow(info.workflow_type)
        except InvalidInputError as exc:
            raise ApplicationError(str(exc), describe_exception(exc), type="InvalidInputError",
                                   non_retryable=True) from None
        data = _decode(args)
        log = self._log = RunLog(info.workflow_id, info.run_id, info.workflow_type,
                                 DEFAULT_MAX_PAYLOAD_BYTES)
        log.patches = _patch
        local = workflow.memo_value(LOCAL_ACTIVITIES_MEMO, False)
        self._local = frozenset(local) if isinstance(local, list) else bool(local)
        while True:
            ctx = TemporalContext(log)
            try:
                result = definition(ctx, data)
            except NeedOperation as need:
                await self._perform(need.op, need.operation)
                continue
            except Exception as exc:  # noqa: BLE001 - the user's error ends the run
                if log.cancel_op is not None:
                    raise asyncio.CancelledError() from None
                raise ApplicationError(str(exc), describe_exception(exc), type=type(exc).__name__,
                                       non_retryable=True) from None
            if log.cancel_op is not None:
                raise asyncio.CancelledError()
            return to_json_value(result, "workflow result", max_bytes=log.max_payload)

    # -- one operation ------------------------------------------------------------------------

    async def _perform(self, op: int, operation: Operation) -> None:
        """Do ``operation`` (number ``op``) in Temporal and log how it ended."""
        log = self._log
        assert log is not None
        kind, name = operation.kind, operation.name
        try:
            if kind == "continue":
                workflow.continue_as_new(operation.spec["input"])
            self._note_wait(operation)
            value = await getattr(self, f"_do_{kind}")(op, operation)
        except asyncio.CancelledError:
            if log.cancel_op is None:
                log.cancel_op = op
            log.outcomes[op] = Outcome(kind, name, canceled=True)
            return
        except _Failed as failed:
            log.outcomes[op] = Outcome(kind, name, error=failed.build)
            return
        log.outcomes[op] = Outcome(kind, name, value=value)

    async def _do_activity(self, op: int, operation: Operation) -> Any:
        try:
            return await self._start(operation)
        # A local activity fails with its own error (no ActivityError around it).
        except (TActivityError, ApplicationError, TTimeoutError, CancelledError) as exc:
            raise self._activity_failure(operation.name, exc) from None

    async def _do_start_activity(self, op: int, operation: Operation) -> None:
        self._started[op] = asyncio.ensure_future(self._start(operation))
        self._started_names[op] = operation.name

    async def _do_gather(self, op: int, operation: Operation) -> list[tuple[bool, Any]]:
        tasks = [self._started[ref] for ref in operation.spec["ops"]]
        await asyncio.wait(tasks)
        outcomes = []
        for ref, task in zip(operation.spec["ops"], tasks, strict=True):
            exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
            if isinstance(exc, asyncio.CancelledError):
                raise exc
            if exc is None:
                outcomes.append((True, task.result()))
            else:
                name = log_name(self._log, ref)
                outcomes.append((False, self._activity_failure(name, exc).build))
        return outcomes

    async def _do_signal(self, op: int, operation: Operation) -> Any:
        queue = self._signals[operation.name]
        if not queue:
            timeout = operation.spec["timeout"]
            try:
                await workflow.wait_condition(lambda: bool(queue), timeout=timeout)
            except (asyncio.TimeoutError, TTimeoutError):
                wf_id, name = self._log.workflow_id, operation.name
                raise _Failed(lambda: SignalTimeoutError(
                    f"no signal {name!r} within the timeout", workflow_id=wf_id)) from None
        return queue.popleft()

    async def _do_timer(self, op: int, operation: Operation) -> None:
        await workflow.sleep(operation.spec["seconds"])

    async def _do_now(self, op: int, operation: Operation) -> Any:
        return workflow.now()

    async def _do_side_effect(self, op: int, operation: Operation) -> Any:
        # On replay the local activity's marker holds the value: the function is not called again.
        value = None if workflow.unsafe.is_replaying() else to_json_value(
            operation.compute(), "side_effect value", max_bytes=self._log.max_payload)
        return await workflow.execute_local_activity(
            RECORD_VALUE, value, start_to_close_timeout=timedelta(seconds=30))

    # -- helpers ------------------------------------------------------------------------------

    def _note_wait(self, operation: Operation) -> None:
        """Put what the run is about to wait for in its memo (what the store shows as its
        wait_kind / wait_name / wait_until); nothing for steps that do not wait on the server."""
        kind, name, spec, until = operation.kind, operation.name, operation.spec, None
        if kind == "activity" and not self._is_local(operation):
            wait = "activity"
        elif kind == "gather":
            wait = "activity"
            names = [log_name(self._log, ref) or self._started_names.get(ref, "")
                     for ref in spec["ops"]]
            name = ", ".join(sorted({n for n in names if n})) or name
        elif kind == "signal":
            wait = "signal"
            if spec["timeout"] is not None:
                until = workflow.now() + timedelta(seconds=spec["timeout"])
            if self._signals[name]:  # already there: no wait
                return
        elif kind == "timer":
            wait, until = "timer", workflow.now() + timedelta(seconds=spec["seconds"])
        else:
            return
        value = {"kind": wait, "name": name if wait != "timer" else "sleep",
                 "until": until.isoformat() if until is not None else None}
        if value == self._wait:
            return
        if self._wait_memo is None:
            self._wait_memo = workflow.patched(WAIT_PATCH)
        if self._wait_memo:
            self._wait = value
            workflow.upsert_memo({WAIT_MEMO: value})

    def _is_local(self, operation: Operation) -> bool:
        if operation.spec.get("queue"):  # another task queue: only a (remote) activity gets there
            return False
        local = self._local
        return operation.name in local if isinstance(local, frozenset) else local

    def _start(self, operation: Operation) -> Any:
        spec = operation.spec
        timeout = spec["timeout"] or DEFAULT_ACTIVITY_TIMEOUT
        if self._is_local(operation):
            # In this worker, in the workflow task: no activity task round trip through the
            # server; its outcome is a marker the workflow task's completion records.
            return workflow.execute_local_activity(
                operation.name, spec["input"], start_to_close_timeout=timedelta(seconds=timeout),
                retry_policy=temporal_retry(spec["retry"]))
        return workflow.execute_activity(
            operation.name, spec["input"], start_to_close_timeout=timedelta(seconds=timeout),
            retry_policy=temporal_retry(spec["retry"]), task_queue=spec.get("queue"))

    def _activity_failure(self, name: str, exc: BaseException) -> _Failed:
        """Our ``ActivityError`` for the SDK's (its cause: the activity's own error)."""
        if isinstance(exc, CancelledError) or (isinstance(exc, TActivityError)
                                                and isinstance(exc.cause, CancelledError)):
            raise asyncio.CancelledError()
        cause = exc.cause if isinstance(exc, TActivityError) else exc
        error, attempts = _cause_of(cause)
        wf_id = self._log.workflow_id

        def build() -> ActivityError:
            return ActivityError(
                f"activity {name!r} failed after {attempts or 'its'} attempt(s): "
                f"{error['type']}: {error['message']}",
                workflow_id=wf_id, activity_name=name, attempts=attempts or 0, cause=error)

        return _Failed(build)


class _Failed(Exception):
    """An operation ended with an error for workflow code (``build`` makes it anew each pass)."""

    def __init__(self, build: Any) -> None:
        super().__init__()
        self.build = build


def _cause_of(cause: BaseException | None) -> tuple[dict[str, Any], int]:
    """Our error dict and the attempt count an activity's failure carries."""
    if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
        details = cause.details[0]
        error = {key: details.get(key, "") for key in ("type", "message", "traceback")}
        return error, int(details.get("attempt") or 0)
    if isinstance(cause, TTimeoutError):
        return {"type": "TimeoutError", "message": str(cause) or "activity timed out",
                "traceback": ""}, 0
    kind = getattr(cause, "type", None) or type(cause).__name__
    return {"type": kind, "message": str(cause), "traceback": ""}, 0


def log_name(log: RunLog | None, op: int) -> str:
    outcome = log.outcomes.get(op) if log is not None else None
    return outcome.name if outcome is not None else ""


def _patch(patch_id: str, deprecated: bool) -> bool:
    if deprecated:
        workflow.deprecate_patch(patch_id)
        return True
    return workflow.patched(patch_id)
