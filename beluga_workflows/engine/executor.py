"""Starting and steering workflows: the executor and its handles.

``WorkflowExecutor`` holds every operation on runs (execute, signal, cancel, query, recover) and
on events (send_event, and the fan-out the runtime runs) once; runtimes subclass it only to say
how a run, or an event's fan-out, is scheduled onto a worker (threads in this process, Celery
tasks). The admin, the REST API and the management commands all go through it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .async_api import AsyncExecutorOperations, AsyncHandleOperations
from .clock import Clock, SystemClock
from .errors import (
    InvalidInputError,
    StoreError,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowTimeoutError,
)
from .events import Event, SendResult, validate_event
from .fanout import cancel_waits, fan_out, fire_groups, intake, plan_triggers
from .flow import Admission, Bucket, check_priority
from .hooks import NO_SPAN, Hooks, compose_hooks, with_trace_context
from .lifecycle import forked_history, resumed_history
from .parallel import child_inbox, outcome_inbox, run_started_activity
from .registry import WorkflowDefinition, get_workflow, workflow_name
from .retention import (
    DEFAULT_BATCH,
    positive_duration,
    purge_cutoff,
    purge_filters,
    purge_in_batches,
)
from .retry import RetryPolicy
from .runner import ActivationResult, RunnerConfig, query_workflow, run_workflow
from .serialization import DEFAULT_MAX_PAYLOAD_BYTES, to_json_value
from .types import (
    EventType,
    HistoryEvent,
    Signal,
    WorkflowOptions,
    WorkflowState,
    WorkflowStatus,
    to_seconds,
)

if TYPE_CHECKING:
    from ..stores.base import WorkflowStore

__all__ = [
    "BUILTIN_QUERIES",
    "MAX_ID_LENGTH",
    "WorkflowExecutor",
    "WorkflowHandle",
    "validate_workflow_id",
]

logger = logging.getLogger("beluga_workflows.executor")

MAX_ID_LENGTH = 255
BUILTIN_QUERIES = ("status", "result", "history")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def validate_workflow_id(workflow_id: Any) -> str:
    """Return ``workflow_id`` if every store can hold it, else raise ``InvalidInputError``.

    Any printable text of 1 to 255 characters is accepted (unicode, ``/`` and inner spaces
    included); control characters, surrounding whitespace and ``.``/``..`` are refused.
    """
    if not isinstance(workflow_id, str):
        raise InvalidInputError(f"workflow id must be a string, not {type(workflow_id).__name__}")
    if not workflow_id:
        raise InvalidInputError("workflow id must not be empty")
    if len(workflow_id) > MAX_ID_LENGTH:
        raise InvalidInputError(
            f"workflow id is {len(workflow_id)} characters long; the limit is {MAX_ID_LENGTH}"
        )
    if _CONTROL_CHARS.search(workflow_id):
        raise InvalidInputError("workflow id must not contain control characters (newline, tab, NUL...)")
    if workflow_id != workflow_id.strip():
        raise InvalidInputError("workflow id must not start or end with whitespace")
    if workflow_id in (".", ".."):
        raise InvalidInputError("workflow id must not be '.' or '..'")
    return workflow_id


class WorkflowHandle(AsyncHandleOperations):
    """A started run: read its status, wait for its result, signal, query or cancel it (and the
    async twins ``astatus`` / ``aresult``, ``engine/async_api.py``)."""

    def __init__(self, executor: WorkflowExecutor, workflow_id: str, run_id: str):
        self.executor = executor
        self.id = workflow_id
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"<WorkflowHandle id={self.id!r} run_id={self.run_id!r}>"

    def state(self) -> WorkflowState:
        """This run as the store has it now (without history); the newest run of its chain once
        it continued as new."""
        state = self.executor.store.load(self.id, with_history=False)
        if state is None or (state.run_id != self.run_id and not self.executor.continues(state)):
            raise WorkflowNotFoundError(
                f"run {self.run_id} of workflow {self.id!r} is no longer in the store",
                workflow_id=self.id,
            )
        return state

    def status(self) -> WorkflowStatus:
        """The run's status, read from the store."""
        return self.state().status

    def result(self, timeout: timedelta | float | None = None) -> Any:
        """Wait for the run to end and return its result.

        Raises:
            WorkflowFailedError / WorkflowCanceledError / WorkflowTimeoutError: the run ended so.
            TimeoutError: the run was still open after ``timeout``.
        """
        seconds = to_seconds(timeout, "timeout")
        state = self.executor.wait(self.id, self.run_id, seconds)
        return outcome_of(state)

    def signal(self, name: str, payload: Any = None) -> Signal:
        """Send signal ``name`` to the workflow (see ``WorkflowExecutor.signal``); never lost once sent.

        Raises:
            WorkflowNotFoundError: the workflow is no longer in the store.
            WorkflowNotRunningError: the run has ended.
            InvalidInputError: bad name, or a non-JSON / oversized payload.
        """
        return self.executor.signal(self.id, Signal(name=name, payload=payload))

    def query(self, query_type: str) -> Any:
        """Answer a query about the workflow (see ``WorkflowExecutor.query``).

        Raises:
            WorkflowNotFoundError: the workflow is no longer in the store.
            InvalidInputError: unknown query type, or its handler failed.
        """
        return self.executor.query(self.id, query_type)

    def cancel(self) -> None:
        """Request cancellation of the workflow (see ``WorkflowExecutor.cancel``).

        Raises:
            WorkflowNotFoundError: the workflow is no longer in the store.
            WorkflowNotRunningError: the run has ended.
        """
        self.executor.cancel(self.id)


def outcome_of(state: WorkflowState) -> Any:
    """The result of an ended run, or the error its status stands for."""
    error = state.error or {}
    message = error.get("message", "")
    if state.status is WorkflowStatus.COMPLETED:
        return state.result
    if state.status is WorkflowStatus.FAILED:
        raise WorkflowFailedError(
            f"workflow {state.workflow_id!r} failed: {error.get('type', 'Error')}: {message}",
            workflow_id=state.workflow_id, error=error,
        )
    if state.status is WorkflowStatus.CANCELED:
        raise WorkflowCanceledError(f"workflow {state.workflow_id!r} was canceled",
                                    workflow_id=state.workflow_id)
    if state.status is WorkflowStatus.TIMED_OUT:
        raise WorkflowTimeoutError(f"workflow {state.workflow_id!r} timed out: {message}",
                                   workflow_id=state.workflow_id)
    raise InvalidInputError(f"workflow {state.workflow_id!r} is still running")


def _options(options: WorkflowOptions | dict | None) -> WorkflowOptions:
    """``execute``'s options as a ``WorkflowOptions`` (a dict is taken as its fields)."""
    if options is None:
        return WorkflowOptions()
    if isinstance(options, dict):
        return WorkflowOptions(**options)
    if not isinstance(options, WorkflowOptions):
        raise InvalidInputError("options must be a WorkflowOptions")
    return options


def _traced(span_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run a client operation on one workflow id inside the hooks' span ``span_name``."""

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def traced(self: WorkflowExecutor, workflow_id: str, *args: Any, **kwargs: Any) -> Any:
            if self.hooks.span is None:
                return method(self, workflow_id, *args, **kwargs)
            attributes = {"workflow.id": workflow_id} if isinstance(workflow_id, str) else {}
            with self.hooks.trace(span_name, attributes):
                return method(self, workflow_id, *args, **kwargs)

        return traced

    return decorate


class WorkflowExecutor(AsyncExecutorOperations):
    """Every operation on runs, written once. Subclasses provide ``schedule`` (and may improve ``wait``).

    The async twins (``aexecute``, ``asignal``...) are ``engine/async_api.py``'s.

    Args:
        store: where runs live, or a zero-argument callable returning it (asked on first use;
            the runtimes pass ``get_store``, the configured store).
        hooks: lifecycle hooks fired by activations this executor runs.
        clock: the time source (tests pass a ``VirtualClock``).
        lease_seconds: how long a worker's claim on a run lasts without renewal.
        in_place_wait: retry backoffs up to this many seconds are waited in place.
        max_payload_bytes: the largest encoded input, result or payload accepted.
        default_retry: the activities' retry policy when neither the call nor ``@activity``
            gives one.
        fan_out_grace: the sweep fans out again events not fanned out this many seconds after
            they were received (their fan-out died, or its message was lost).
        activity_redispatch: a started activity (``ctx.start_activity``) with no outcome this
            many seconds after it was handed out is handed out again (its message was lost).
        child_poll: a parent waiting for a child reads the child's state itself this often
            (the child's end notice may have been lost).
        retention: ended runs are kept this long, then the sweep deletes them (``purge``);
            ``None`` keeps every run (``BELUGA_WORKFLOWS["RETENTION"]``).
    """

    name = "base"

    def __init__(
        self,
        *,
        store: WorkflowStore | Callable[[], WorkflowStore] | None = None,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
        lease_seconds: float = 30.0,
        in_place_wait: float = 1.0,
        max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES,
        default_retry: RetryPolicy | None = None,
        retention: timedelta | float | str | None = None,
        fan_out_grace: timedelta | float | str = 30.0,
        activity_redispatch: timedelta | float | str = 300.0,
        child_poll: timedelta | float | str = 300.0,
        max_history_events: int | None = 50_000,
    ) -> None:
        self._store = store
        self.hooks = hooks or Hooks()
        self.clock = clock or SystemClock()
        self.lease_seconds = float(lease_seconds)
        self.in_place_wait = float(in_place_wait)
        self.max_payload_bytes = max_payload_bytes
        self.default_retry = default_retry or RetryPolicy()
        self.retention = positive_duration(retention, "retention")
        self.fan_out_grace = to_seconds(fan_out_grace, "fan_out_grace")
        self.activity_redispatch = to_seconds(activity_redispatch, "activity_redispatch")
        self.child_poll = to_seconds(child_poll, "child_poll")
        if max_history_events is not None and (
                isinstance(max_history_events, bool) or not isinstance(max_history_events, int)
                or max_history_events < 10):
            raise InvalidInputError(f"max_history_events must be a whole number of at least 10 "
                                    f"or None, not {max_history_events!r}")
        self.max_history_events = max_history_events

    # -- configuration ------------------------------------------------------------------------

    @property
    def store(self) -> WorkflowStore:
        """Where runs live (a store given as a zero-argument callable is asked on first use)."""
        if self._store is None:
            raise StoreError(f"{type(self).__name__} was built without a store")
        if callable(self._store):  # a provider: stores themselves are not callable
            self._store = self._store()
        return self._store

    def add_hooks(self, hooks: Hooks) -> None:
        """Fire ``hooks`` (after those already set) in activations this executor runs."""
        self.hooks = compose_hooks(self.hooks, hooks)

    def runner_config(self) -> RunnerConfig:
        """What an activation run by this executor uses: its store, clock, hooks and limits."""
        return RunnerConfig(
            store=self.store, clock=self.clock, hooks=self.hooks, lease_seconds=self.lease_seconds,
            in_place_wait=self.in_place_wait, max_payload=self.max_payload_bytes,
            default_retry=self.default_retry, send_event=self.send_event, promote=self.promote,
            dispatch_activity=self.dispatch_activity, start_child=self.start_child,
            notify_parent=self.notify_parent, cancel_children=self.cancel_children,
            redispatch=self.activity_redispatch, child_poll=self.child_poll,
            max_history=self.max_history_events,
        )

    # -- starting -------------------------------------------------------------------------------

    def execute(self, workflow: Callable[..., Any] | str, options: WorkflowOptions | None = None
                ) -> WorkflowHandle:
        """Record a new run and schedule it; returns without waiting for any of its work.

        Raises:
            InvalidInputError: unknown workflow type, bad id, non-JSON or oversized input, bad timeout.
            WorkflowAlreadyExistsError: a run of that id is still open.
        """
        with self.hooks.trace("workflow.execute", {}) as span:
            return self._start(workflow, _options(options), span=span)

    def _start(self, workflow: Callable[..., Any] | str, options: WorkflowOptions, *,
               parent: dict[str, Any] | None = None, span: Any = NO_SPAN) -> WorkflowHandle:
        """``execute``; ``parent``: the run is the child of that run's operation (its link is
        recorded in the run's ``workflow_started`` event); ``span``: ``execute``'s, told the
        run's type and ids."""
        type_name = workflow_name(workflow)
        span.set_attribute("workflow.type", type_name)
        definition = get_workflow(type_name)
        workflow_id = (validate_workflow_id(options.id) if options.id is not None
                       else f"wf-{uuid.uuid4()}")
        span.set_attribute("workflow.id", workflow_id)
        data = to_json_value(options.input, "workflow input", max_bytes=self.max_payload_bytes)
        timeout = to_seconds(options.timeout, "workflow timeout")
        if timeout is not None and timeout <= 0:
            raise InvalidInputError("workflow timeout must be positive")
        if options.queue is not None and (not isinstance(options.queue, str) or not options.queue):
            raise InvalidInputError("queue must be a non-empty string")

        priority = check_priority(options.priority)
        flow = definition.flow
        if flow is not None and flow.groups_events:
            raise InvalidInputError(
                f"workflow {type_name!r} {'debounces' if flow.debounce else 'batches'} its "
                f"events: start it by sending an event it is triggered by "
                f"({', '.join(t.event for t in definition.triggers)}), not with execute")

        state = self.new_state(type_name, workflow_id, data, timeout=timeout, queue=options.queue,
                               parent=parent)
        span.set_attribute("workflow.run_id", state.run_id)
        return self._create(definition, state, priority)

    def _create(self, definition: WorkflowDefinition, state: WorkflowState,
                priority: int | None = None) -> WorkflowHandle:
        """Store the new run ``state`` (admitted by its workflow's flow control, with its
        ``cancel_on`` waits) and schedule it. The caller's trace context (``Hooks.carrier``) is
        stored in its ``workflow_started`` event, for the worker's spans to continue."""
        carrier = self.hooks.carrier()
        if carrier and state.history:
            started = state.history[0]
            state.history[0] = dataclasses.replace(
                started, result=with_trace_context(started.result, carrier))
        flow = definition.flow
        admission = None if flow is None else flow.admission(
            state.workflow_type, flow.bindings(state.input, None), state.created_at, priority)
        waits = cancel_waits(definition, state) if definition.cancel_on else ()
        if admission is not None:
            self._flow_store("execute").create_with_waits(state, waits, admission=admission)
        elif waits:  # the run is findable by the events that cancel it from its first write on
            self._event_store("cancel_on").create_with_waits(state, waits)
        else:
            self.store.create(state)
        self.schedule_new(state, admission)
        return WorkflowHandle(self, state.workflow_id, state.run_id)

    def resume(self, workflow_id: str) -> WorkflowHandle:
        """Continue a failed, canceled or timed-out run: a new run of the same id replays the
        steps that finished and runs the one that failed again (``engine/lifecycle.py``). It
        keeps the run's input, queue, parent and unconsumed signals; a timeout starts again
        from now.

        Raises:
            WorkflowNotFoundError: no run of that id.
            InvalidInputError: the workflow type is not registered here; (``code ==
                "conflict"``) the run is open or completed.
            WorkflowAlreadyExistsError: another run of the id opened meanwhile.
        """
        state = self._load(workflow_id, with_history=True)
        definition = get_workflow(state.workflow_type)
        history = resumed_history(state)
        return self._create(definition, self._continuation(state, workflow_id, history,
                                                           parent_id=state.parent_id,
                                                           signals=state.signals))

    def fork(self, workflow_id: str, *, from_event: int | None = None, id: str | None = None
             ) -> WorkflowHandle:
        """Start a new run (id ``id``, else ``"<workflow_id>-fork-<8 hex>"``) of an ended run's
        workflow and input that replays its events before ``from_event`` (the first event of a
        step; ``None``: from the start, replaying nothing) and runs on from there
        (``engine/lifecycle.py``). Forking to the run's own id replaces it.

        Raises:
            WorkflowNotFoundError: no run of that id.
            InvalidInputError: a bad ``from_event`` (beyond the history, or inside a step) or
                ``id``, an unregistered workflow type; (``code == "conflict"``) the run is open.
            WorkflowAlreadyExistsError: a run of ``id`` is open.
        """
        state = self._load(workflow_id, with_history=True)
        definition = get_workflow(state.workflow_type)
        target = validate_workflow_id(id if id is not None
                                      else f"{workflow_id}-fork-{uuid.uuid4().hex[:8]}")
        history = forked_history(state, 2 if from_event is None else from_event)
        return self._create(definition, self._continuation(state, target, history))

    def _continuation(self, state: WorkflowState, workflow_id: str, history: list[HistoryEvent],
                      *, parent_id: str = "", signals: list[Signal] = ()) -> WorkflowState:
        """A new run of ``state``'s workflow and input, as ``workflow_id``, starting from
        ``history``; a timeout as long as ``state``'s, from now."""
        now = self.clock.now()
        started = history[0]
        if not parent_id:
            history[0] = dataclasses.replace(started, signal_name="", signal_payload=None)
        history[0] = dataclasses.replace(history[0], timestamp=now)
        span = state.deadline - state.created_at if state.deadline is not None else None
        return WorkflowState(
            workflow_id=workflow_id, run_id=uuid.uuid4().hex, workflow_type=state.workflow_type,
            input=state.input, created_at=now, updated_at=now,
            deadline=now + span if span is not None else None, queue=state.queue, wake_at=now,
            parent_id=parent_id, history=history,
            signals=[dataclasses.replace(s, id=None) for s in signals
                     if not outcome_inbox(s.name)],
        )

    def schedule_new(self, state: WorkflowState, admission: Admission | None) -> None:
        """Schedule a run just stored as its admission left it: its first activation now, at its
        throttled start, or (waiting for slots) a promotion pass of its buckets once the write
        has committed (so no slot freed meanwhile is missed: see ``engine/flow.py``)."""
        queue = state.queue or ""
        if state.wait_kind == "concurrency" and admission is not None:
            buckets = [bucket for bucket, _ in admission.slots]
            self.store.on_commit(lambda: self._promote_quietly(buckets))
        elif state.wait_kind == "throttle":
            self.schedule(state.workflow_id, at=state.wake_at, queue=queue)
        else:
            self.schedule_start(state.workflow_id, queue=queue)

    def new_state(self, workflow_type: str, workflow_id: str, input: Any, *,
                  timeout: float | None = None, queue: str | None = None,
                  parent: dict[str, Any] | None = None) -> WorkflowState:
        """A new run of ``workflow_type`` as ``execute`` stores it (due now, ``workflow_started``
        recorded, with the ``parent`` link of a child run); ``input`` is taken as it is."""
        now = self.clock.now()
        return WorkflowState(
            workflow_id=workflow_id,
            run_id=uuid.uuid4().hex,
            workflow_type=workflow_type,
            input=input,
            created_at=now,
            updated_at=now,
            deadline=now + timedelta(seconds=timeout) if timeout is not None else None,
            queue=queue,
            wake_at=now,
            parent_id=parent["workflow_id"] if parent else "",
            history=[HistoryEvent(id=1, type=EventType.WORKFLOW_STARTED, timestamp=now,
                                  activity_name=workflow_type, input=input,
                                  signal_name=parent["workflow_id"] if parent else "",
                                  signal_payload=parent)],
        )

    def get_handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle on the latest run of ``workflow_id``.

        Raises:
            WorkflowNotFoundError: no such workflow.
        """
        state = self._load(workflow_id, with_history=False)
        return WorkflowHandle(self, state.workflow_id, state.run_id)

    # -- steering -------------------------------------------------------------------------------

    @_traced("workflow.signal")
    def signal(self, workflow_id: str, signal: Signal) -> Signal:
        """Deliver ``signal`` to the open run; once this returns, the signal is never lost.

        Raises:
            WorkflowNotFoundError: no such workflow.
            WorkflowNotRunningError: its run has ended.
            InvalidInputError: bad signal name or a non-JSON / oversized payload.
        """
        validate_workflow_id(workflow_id)
        if not isinstance(signal, Signal):
            raise InvalidInputError("signal must be a Signal(name, payload)")
        if not isinstance(signal.name, str) or not signal.name.strip() or len(signal.name) > 255:
            raise InvalidInputError("signal name must be a non-empty string of at most 255 characters")
        if not isinstance(signal.sender_id, str):
            raise InvalidInputError("signal sender_id must be a string")
        payload = to_json_value(signal.payload, "signal payload", max_bytes=self.max_payload_bytes)
        accepted = self.store.add_signal(
            workflow_id,
            Signal(name=signal.name, payload=payload, sent_at=signal.sent_at or self.clock.now(),
                   sender_id=signal.sender_id),
            self.clock.now(),
        )
        self.schedule(workflow_id)
        return accepted

    @_traced("workflow.cancel")
    def cancel(self, workflow_id: str) -> None:
        """Request cancellation: the next ``ctx`` call in the workflow raises ``WorkflowCanceledError``.

        Raises:
            WorkflowNotFoundError: no such workflow.
            WorkflowNotRunningError: its run has ended.
        """
        validate_workflow_id(workflow_id)
        state = self.store.request_cancel(workflow_id, self.clock.now())
        self.schedule(workflow_id, queue=state.queue or "")

    # -- events ---------------------------------------------------------------------------------

    def send_event(self, event: Event) -> SendResult:
        """Accept ``event``: store it, then have the runtime fan it out (``schedule_fan_out``).

        Inside ``transaction.atomic()`` on the django store the event is stored in the caller's
        transaction and fanned out once it commits (a rollback leaves nothing). The runs its
        triggers start are decided here (ids ``"<workflow type>:<event id>"``, see
        ``events.trigger_workflow_id``) and listed in ``SendResult.started`` at once; ``woken``
        and ``canceled`` only when the fan-out ran before this returned (the time-skipping test
        environment), else the event's ``EventRecord.outcome`` tells them later.

        Raises:
            InvalidInputError: a bad name, id, data or ts (nothing is stored).
            StoreError: the store keeps no events (the document stores), or it failed.
        """
        event = validate_event(event, now=self.clock.now(), max_bytes=self.max_payload_bytes)
        store = self._event_store("send_event")
        planned, skipped = plan_triggers(event)
        received_at = self.clock.now()
        if not store.add_event(event, received_at, triggers=planned, skipped=skipped):
            return SendResult(event.id, True)
        # Triggers that may skip or hold the event (rate limit, debounce, batch) are decided
        # here, so the result can say so; the fan-out finds them decided (the ledger).
        decided = intake(self, event, received_at, planned)
        outcome = self.schedule_fan_out(event.id) or {}
        started = [p["workflow_id"] for p in planned if p["workflow_type"] not in decided.held]
        return SendResult(event.id, False, tuple(dict.fromkeys(started + decided.started)),
                          tuple(outcome.get("woken", ())), tuple(outcome.get("canceled", ())),
                          tuple(skipped + decided.skipped), tuple(decided.deferred))

    def fan_out(self, event_id: str) -> dict[str, list] | None:
        """Do event ``event_id``'s fan-out in this thread now (what a worker does when it is
        scheduled): see ``engine.fanout``. Returns what it did, or ``None`` when it could not."""
        return fan_out(self, event_id)

    def schedule_fan_out(self, event_id: str) -> dict[str, list] | None:
        """Arrange for ``fan_out(event_id)`` to run (after the current transaction commits).

        The default runs it in the calling thread and returns its outcome; a runtime with
        workers sends it to one and returns ``None``.
        """
        return self.fan_out(event_id)

    def finish_fan_outs(self, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """Schedule the fan-out of events received ``fan_out_grace`` seconds ago or more and not
        fanned out yet (the outbox); returns their ids (none on a store without events)."""
        if not self.store.supports_events:
            return []
        older_than = (now or self.clock.now()) - timedelta(seconds=self.fan_out_grace)
        pending = self.store.unfanned_events(older_than, limit)
        for event_id in pending:
            self.schedule_fan_out(event_id)
        return pending

    def _event_store(self, operation: str) -> WorkflowStore:
        store = self.store
        if not store.supports_events:
            raise store.events_unsupported(operation)
        return store

    def _flow_store(self, operation: str) -> WorkflowStore:
        store = self.store
        if not store.supports_flow_control:
            raise store.flow_unsupported(operation)
        return store

    # -- flow control ---------------------------------------------------------------------------

    def promote(self, buckets: list[Bucket]) -> list[str]:
        """Give free slots of ``buckets`` to the runs waiting for them and schedule those;
        returns their ids (see ``engine/flow.py``)."""
        if not buckets:
            return []
        promoted = self.store.promote(list(buckets), self.clock.now())
        for workflow_id, queue in promoted:
            self.schedule(workflow_id, queue=queue)
        return [workflow_id for workflow_id, _ in promoted]

    def _promote_quietly(self, buckets: list[Bucket]) -> None:
        """``promote``, its failure logged: the run is stored, and the sweep promotes it later."""
        try:
            self.promote(buckets)
        except Exception:
            logger.exception("promotion pass for %s failed; the sweep runs it again", buckets)

    def fire_groups(self, now: datetime | None = None, limit: int = 100) -> list[str]:
        """Start the runs of the debounce and batch groups due by ``now``; returns their ids."""
        if not self.store.supports_flow_control:
            return []
        return fire_groups(self, now or self.clock.now(), limit)

    def schedule_groups(self, at: datetime) -> None:
        """Arrange for ``fire_groups`` to run at ``at`` (a group's due time). The default does
        nothing: the sweep fires due groups; a runtime with timers fires them on time."""

    def flow_sweep(self, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """The sweep's flow-control pass: free the slots of runs that are no longer open, run
        the promotion pass of every bucket with waiters, fire the due groups; returns the ids of
        the runs it scheduled."""
        store = self.store
        if not store.supports_flow_control:
            return []
        now = now or self.clock.now()
        freed = store.release_orphans(now, limit)
        buckets = sorted(set(freed) | set(store.waiting_buckets(limit)))
        return self.promote(buckets) + self.fire_groups(now)

    @_traced("workflow.query")
    def query(self, workflow_id: str, query_type: str) -> Any:
        """Answer a query: built-ins ``status``, ``result``, ``history``; others go to the workflow.

        Raises:
            WorkflowNotFoundError: no such workflow.
            InvalidInputError: unknown query type.
        """
        if not isinstance(query_type, str) or not query_type:
            raise InvalidInputError("query type must be a non-empty string")
        builtin = query_type in BUILTIN_QUERIES
        state = self._load(workflow_id, with_history=not builtin or query_type == "history")
        if query_type == "status":
            return state.status.value
        if query_type == "result":
            return state.result
        if query_type == "history":
            return [event.to_dict() for event in state.history]
        return query_workflow(self.runner_config(), state, query_type)

    def recover(self, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """Schedule every run that is due (timers passed, wake-ups lost, or worker died: lease
        expired), finish the fan-outs that died (``finish_fan_outs``) and do the flow-control
        pass (``flow_sweep``), the schedules' (``fire_schedules``) and the retention pass
        (``apply_retention``); returns the ids of the due runs."""
        now = now or self.clock.now()
        due = self.store.due(now, limit)
        for workflow_id in due:
            self.schedule(workflow_id)
        self.finish_fan_outs(now, limit)
        self.flow_sweep(now, limit)
        self.fire_schedules(now)
        self.apply_retention(now, limit)
        return due

    def fire_schedules(self, now: datetime | None = None) -> list[str]:
        """The sweep's schedules pass: start the runs of the cron ticks due by ``now``; returns
        their ids. The engine keeps no schedules (they are rows of the site's database, see
        ``beluga_workflows.schedules``): the runtimes override this; the default starts none."""
        return []

    def sweep(self, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """The periodic recovery pass (Celery beat, a worker's timer); returns the ids it scheduled.

        By default ``recover``; a runtime whose wake-ups may already be on their way to a worker
        refines it (the Celery runtime sends runs shortly before they come due).
        """
        return self.recover(now, limit)

    def sweep_ahead(self, now: datetime, limit: int, *, grace: float, lookahead: float,
                    send_at: Callable[[str, str, datetime], None]) -> list[str]:
        """The sweep of a runtime whose wake-ups may already be on their way to a worker (the
        Celery and django_tasks runtimes); returns the ids it sent.

        Events left without their fan-out, flow control and schedules first; then the runs due
        for ``grace`` seconds are scheduled again now (the more recent ones are left to the
        wake-up on its way); then retention; then each run coming due within ``lookahead``
        seconds (a timer ending, the lease of a dead worker running out) goes to
        ``send_at(workflow_id, queue, when)``, ``when`` never before ``now``.
        """
        self.finish_fan_outs(now, limit)
        self.flow_sweep(now, limit)
        self.fire_schedules(now)
        sent = self.store.due(now - timedelta(seconds=grace), limit)
        for workflow_id in sent:
            self.schedule(workflow_id)
        self.apply_retention(now, limit)
        if lookahead <= 0 or len(sent) >= limit:
            return sent
        already_due = set(self.store.due(now, limit))
        for workflow_id in self.store.due(now + timedelta(seconds=lookahead), limit):
            if workflow_id in already_due:
                continue
            state = self.store.load(workflow_id, with_history=False)
            if state is None or not state.is_open or state.wake_at is None:
                continue
            at = state.wake_at
            if state.lease_owner and state.lease_expires_at and state.lease_expires_at > at:
                at = state.lease_expires_at  # its worker stopped renewing: try when the lease ends
            send_at(workflow_id, state.queue or "", max(at, now))
            sent.append(workflow_id)
        return sent

    # How ``dispatch`` hands runs over, in a few words (``workflows_recover`` prints it).
    dispatch_verb = "re-scheduled"

    def dispatch(self, workflow_ids: list[str]) -> None:
        """Hand these due runs to the workers now (``workflows_recover``): schedule each."""
        for workflow_id in workflow_ids:
            self.schedule(workflow_id)

    # -- retention (engine/retention.py) --------------------------------------------------------

    # Runs one store call deletes at most: each batch's statements stay this small.
    purge_batch = DEFAULT_BATCH

    def purge(self, older_than: timedelta | float | str | None = None, *,
              now: datetime | None = None, limit: int | None = None,
              batch: int | None = None, status: WorkflowStatus | str | None = None,
              workflow_type: str | None = None) -> list[str]:
        """Delete ended runs that ended more than ``older_than`` (default: ``retention``) before
        ``now``, oldest first, with their histories, in store calls of ``batch`` runs (default
        ``purge_batch``), at most ``limit`` in all (``None``: until none is left); returns the
        deleted ids. Open runs, and runs that ended since the cutoff, are never deleted.
        ``status`` (an ended status) and ``workflow_type`` keep it to runs of those.

        Raises:
            InvalidInputError: a bad duration, no duration at all, a ``batch`` below 1, or a
                ``status`` that is not an ended status (nothing is read or deleted).
            StoreError: the store cannot purge (``supports_purge`` is ``False``).
        """
        before = purge_cutoff(now or self.clock.now(), older_than, self.retention)
        return purge_in_batches(self.store, before, limit=limit,
                                batch=self.purge_batch if batch is None else batch,
                                status=status, workflow_type=workflow_type)

    def count_purgeable(self, older_than: timedelta | float | str | None = None, *,
                        now: datetime | None = None, status: WorkflowStatus | str | None = None,
                        workflow_type: str | None = None) -> int:
        """How many runs ``purge(older_than, now=now, status=..., workflow_type=...)`` would
        delete; nothing changes.

        Raises:
            InvalidInputError: a bad duration, no duration at all, or a bad ``status``.
            StoreError: the store cannot purge.
        """
        filters = purge_filters(status, workflow_type)
        return self.store.count_ended(
            purge_cutoff(now or self.clock.now(), older_than, self.retention), **filters)

    def apply_retention(self, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """The sweep's retention pass: ``purge`` at most ``limit`` runs ended longer than
        ``retention`` ago (a backlog goes over several sweeps); nothing without a retention or
        on a store that cannot purge (``manage.py check`` reports that). A failure is logged:
        the next sweep tries again. Returns the deleted ids."""
        if self.retention is None or limit <= 0 or not self.store.supports_purge:
            return []
        try:
            return self.purge(now=now, limit=limit)
        except Exception:
            logger.exception("retention pass failed; the next sweep tries again")
            return []

    # -- parallel steps (engine/parallel.py) ------------------------------------------------------

    def dispatch_activity(self, workflow_id: str, run_id: str, op: int, *,
                          queue: str | None = None, attempt: int = 1,
                          attempts: list[dict[str, Any]] = (), at: datetime | None = None) -> None:
        """Hand a started activity to a worker (``run_activity``), at ``at`` if given. The
        default runs it in the calling thread now (a runtime with workers sends it to one)."""
        if at is not None:
            self.clock.sleep(max((at - self.clock.now()).total_seconds(), 0.0))
        self.run_activity(workflow_id, run_id, op, attempt=attempt, attempts=list(attempts))

    def run_activity(self, workflow_id: str, run_id: str, op: int, *, attempt: int = 1,
                     attempts: list[dict[str, Any]] = ()) -> str:
        """Run the started activity of operation ``op`` (what a worker does when handed one):
        its attempts from ``attempt`` on, then its outcome to the run's inbox (see
        ``parallel.run_started_activity``). Returns what happened, in a word."""
        return run_started_activity(self, workflow_id, run_id, op, attempt, list(attempts))

    def start_child(self, parent: dict[str, Any], workflow_type: str, child_id: str, input: Any,
                    timeout: float | None, *, queue: str | None = None) -> str:
        """Start the child run of ``parent``'s operation (or find the one a crashed activation
        started: same id, same parent link); its run id.

        Raises:
            WorkflowAlreadyExistsError: ``child_id`` has an open run that is not this child.
            InvalidInputError: a bad id, input or timeout.
        """
        validate_workflow_id(child_id)
        first = self.store.history(child_id, limit=1)
        if first and first[0].signal_payload == parent:
            state = self.store.load(child_id, with_history=False)
            if state is not None:
                return state.run_id
        handle = self._start(workflow_type, WorkflowOptions(id=child_id, input=input,
                                                            timeout=timeout, queue=queue),
                             parent=parent)
        return handle.run_id

    def notify_parent(self, parent: dict[str, Any], child_id: str, status: str, result: Any,
                      error: dict | None) -> None:
        """Tell ``parent`` that its child ``child_id`` ended (its inbox; a wake-up): nothing if
        the parent run has ended or been replaced."""
        name = child_inbox(parent["run_id"], parent["op"])
        payload = {"workflow_id": child_id, "status": status, "result": result, "error": error}
        try:
            self.store.add_signal(parent["workflow_id"], Signal(name=name, payload=payload),
                                  self.clock.now())
        except (WorkflowNotFoundError, WorkflowNotRunningError):
            return
        self.schedule(parent["workflow_id"])

    def cancel_children(self, child_ids: list[str]) -> None:
        """Cancel these children of an ended run (those already ended are left alone)."""
        for child_id in child_ids:
            try:
                self.cancel(child_id)
            except (WorkflowNotFoundError, WorkflowNotRunningError):
                continue

    # -- running --------------------------------------------------------------------------------

    def run(self, workflow_id: str) -> ActivationResult:
        """Advance one run in this thread now (what a worker does when a run is scheduled)."""
        return run_workflow(self.runner_config(), workflow_id)

    def schedule(self, workflow_id: str, *, at: datetime | None = None, queue: str | None = None) -> None:
        """Arrange for a worker to call ``run(workflow_id)`` (at ``at``, if given).

        ``queue`` is the run's queue when the caller knows it (``""``: the default queue), ``None``
        when it does not (a runtime that routes by queue then looks it up).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot schedule runs")

    def schedule_start(self, workflow_id: str, *, queue: str | None = None) -> None:
        """Schedule a run's first activation (a runtime may rank it after wake-ups of older runs)."""
        self.schedule(workflow_id, queue=queue)

    def wait(self, workflow_id: str, run_id: str, timeout: float | None) -> WorkflowState:
        """Block until the run has ended and return it; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        # Subscribed before the first look, so an end in between still wakes us.
        with self.store.watch(workflow_id) as watch:
            while True:
                state = self.current_run(workflow_id, run_id)
                run_id = state.run_id
                if not state.is_open:
                    return state
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"workflow {workflow_id!r} still running after {timeout:g} s")
                # A store that pushes ends wakes us; look anyway now and then (a lost notification).
                pause = 1.0 if watch.pushed else delay
                if deadline is not None:
                    pause = min(pause, max(deadline - time.monotonic(), 0))
                if watch.pushed:
                    watch.wait(pause)
                else:
                    self._sleep_until_change(workflow_id, pause)
                    delay = min(delay * 2, 0.1)

    def current_run(self, workflow_id: str, run_id: str) -> WorkflowState:
        """Run ``run_id`` of ``workflow_id`` as stored now (no history), or the run that
        continued it as new.

        Raises:
            WorkflowNotFoundError: neither is in the store (deleted, or replaced by another run).
        """
        state = self.store.load(workflow_id, with_history=False)
        if state is not None and state.run_id != run_id and self.continues(state):
            return state  # the run continued as new: follow the chain
        if state is None or state.run_id != run_id:
            raise WorkflowNotFoundError(
                f"run {run_id} of workflow {workflow_id!r} is no longer in the store",
                workflow_id=workflow_id,
            )
        return state

    def continues(self, state: WorkflowState) -> bool:
        """Whether ``state`` is a run that another run of its id continued as new (its first
        event says so), so a waiter on an earlier run follows to it."""
        first = state.history[:1] or self.store.history(state.workflow_id, limit=1)
        started = first[0] if first else None
        return (started is not None and isinstance(started.result, dict)
                and "continued_from" in started.result)

    def _sleep_until_change(self, workflow_id: str, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        """Stop background threads, if any."""

    def _load(self, workflow_id: str, *, with_history: bool) -> WorkflowState:
        validate_workflow_id(workflow_id)
        state = self.store.load(workflow_id, with_history=with_history)
        if state is None:
            raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}", workflow_id=workflow_id)
        return state
