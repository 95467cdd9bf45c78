"""The runner: one activation of one run — claim, replay, run, checkpoint, then suspend or finish.

``run_workflow`` is what every runtime (threads, Celery) calls when a run may have work to do. It is
safe to call for any id at any time, as often as you like: a run leased by another worker, ended or
missing is left alone, and a run that has nothing to do yet suspends again after a fast replay.

An ``Activation`` holds the run in memory and writes through the store; it is the
``ActivationPort`` its ``WorkflowContext`` talks to, and the ``LeaseHolder`` the lease keeper
renews while it works.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._control import ContinueAsNew, LeaseLost, StopReplay, StoreDown, Suspend, TimedOut
from .clock import Clock, SystemClock
from .context import Limits, RunInfo, WorkflowContext, operations_taken
from .errors import (
    ConflictError,
    HistoryTooLongError,
    InvalidInputError,
    NonDeterminismError,
    StoreError,
    WorkflowCanceledError,
    WorkflowError,
    WorkflowTimeoutError,
    describe_exception,
)
from .events import Event, EventWait, SendResult
from .hooks import Hooks, stored_trace_context, with_trace_context
from .lease import lease_keeper
from .parallel import final_event, parent_of
from .registry import WorkflowDefinition, get_workflow
from .replay import index_by_op, returned_early_error
from .retry import RetryPolicy
from .serialization import DEFAULT_MAX_PAYLOAD_BYTES, to_json_value
from .types import EventType, HistoryEvent, RunEnd, Signal, WorkflowState, WorkflowStatus

if TYPE_CHECKING:
    from ..stores.base import WorkflowStore

__all__ = ["ActivationResult", "RunnerConfig", "new_owner", "query_workflow", "run_workflow"]

logger = logging.getLogger("beluga_workflows.runner")

# How long to wait before a worker that does not know a run's workflow type lets another try.
UNKNOWN_TYPE_RETRY = timedelta(seconds=30)
# How many events ``find_event`` reads from the store at a time.
_EVENT_PAGE = 100

_END_EVENT = {
    WorkflowStatus.COMPLETED: EventType.WORKFLOW_COMPLETED,
    WorkflowStatus.FAILED: EventType.WORKFLOW_FAILED,
    WorkflowStatus.CANCELED: EventType.WORKFLOW_CANCELED,
    WorkflowStatus.TIMED_OUT: EventType.WORKFLOW_TIMED_OUT,
}


@dataclass
class RunnerConfig:
    """What an activation needs from its runtime."""

    store: WorkflowStore
    clock: Clock = field(default_factory=SystemClock)
    hooks: Hooks = field(default_factory=Hooks)
    lease_seconds: float = 30.0
    # Waits (retry backoffs) at most this long are served in place instead of suspending.
    in_place_wait: float = 1.0
    max_payload: int | None = DEFAULT_MAX_PAYLOAD_BYTES
    default_retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How ``ctx.send_event`` sends (the executor's ``send_event``); ``None``: it cannot.
    send_event: Callable[[Event], SendResult] | None = None
    # The promotion pass run after an end freed concurrency slots (the executor's ``promote``).
    promote: Callable[[list[tuple[str, str, str]]], Any] | None = None
    # Parallel steps (parallel.py): hand a started activity to a worker (workflow id, run id,
    # op, queue); start a child run (parent link, type, child id, input, timeout -> run id);
    # tell a parent its child ended (parent link, child id, status, result, error); cancel
    # open children (their ids). ``None``: this runtime cannot.
    dispatch_activity: Callable[..., Any] | None = None
    start_child: Callable[..., str] | None = None
    notify_parent: Callable[..., Any] | None = None
    cancel_children: Callable[[list[str]], Any] | None = None
    redispatch: float = 300.0
    child_poll: float = 300.0
    # A run that would record more events fails (HistoryTooLongError); ``None``: no limit.
    max_history: int | None = 50_000


# Interrupts that fail the run whatever workflow code does with them.
_FATAL = (NonDeterminismError, HistoryTooLongError)


@dataclass
class ActivationResult:
    """What an activation did: ``claimed`` False when it left the run alone."""

    claimed: bool
    status: WorkflowStatus | None = None
    suspended: bool = False
    wake_at: datetime | None = None
    lease_lost: bool = False
    # The store failed mid-activation; the run is retried once its lease expires.
    abandoned: bool = False
    # The run's queue ("" = the default one), so a runtime can send the wake-up without a lookup.
    queue: str | None = None


def new_owner() -> str:
    """A lease owner token unique to one activation: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@contextmanager
def _writing() -> Iterator[None]:
    """Translate a failed store write into the activation's control flow (not on the hot path)."""
    try:
        yield
    except ConflictError:
        raise LeaseLost() from None
    except Exception as exc:
        raise StoreDown() from exc


class Activation:
    """One worker's pass over one run. Holds the run in memory and writes through the store.

    Every store write may raise ``LeaseLost`` (another worker owns the run) or ``StoreDown``;
    ``run_workflow`` turns them into its result.
    """

    def __init__(self, config: RunnerConfig, state: WorkflowState, owner: str, *, read_only: bool = False):
        self.config = config
        self.store = config.store
        self.clock = config.clock
        self.state = state
        self.owner = owner
        self.read_only = read_only
        self.lease_seconds = config.lease_seconds
        self._lease = timedelta(seconds=config.lease_seconds)
        self.in_place_wait = config.in_place_wait
        self.info = RunInfo(state.workflow_id, state.run_id, state.workflow_type, state.created_at,
                            state.input)
        self.limits = Limits(config.max_payload, config.default_retry, config.redispatch,
                             config.child_poll)
        self.ops, self.cancel_op = index_by_op(state.history)
        self.last_op = max(self.ops, default=0)
        self.next_id = (state.history[-1].id + 1) if state.history else 1
        self.cancel_requested = state.cancel_requested
        self.deadline = state.deadline
        self.wake_seq = state.wake_seq
        self.signals: list[Signal] = list(state.signals)
        self.query_handlers: dict[str, Callable[[], Any]] = {}
        self.interrupted: BaseException | None = None
        # The workflow's cancel_on makes the store keep event waits for the run (see _end()).
        self.cancels_on_events = False
        # The run holds (or waits for) concurrency slots: its end frees them (see _end()).
        self.releases_slots = False
        self._consumed_events: set[str] | None = None
        # Held for the activation's next write (``record_soon``): events already numbered and
        # in the index, the inbox ids they consume, and what runs once that write is durable.
        self._unwritten: list[HistoryEvent] = []
        self._unconsumed: list[int] = []
        self._after_write: list[Callable[[], Any]] = []
        self.lease_until = state.lease_expires_at
        # The port's now(), fire() and recorded() are the clock's, the hooks' and the index's own
        # bound methods: going through the port costs the hot path no extra call.
        self.now: Callable[[], datetime] = config.clock.now
        self.fire: Callable[..., None] = config.hooks.fire
        self.trace = config.hooks.trace
        self.recorded: Callable[[int], list[HistoryEvent] | None] = self.ops.get

    # -- the ActivationPort (see port.py) ---------------------------------------------------------

    def record(self, op: int, events: list[HistoryEvent], *, consume: Signal | None = None,
               end: RunEnd | None = None, add_wait: EventWait | None = None,
               drop_wait: bool = False, drop_all_waits: bool = False) -> None:
        """Durably append ``events`` (of operation ``op``; 0 with ``end``: the run's end), after
        what ``record_soon`` holds, in one write.

        ``add_wait`` / ``drop_wait`` (operation ``op``'s) / ``drop_all_waits`` change the run's
        event waits in the same write.

        Raises:
            StoreError: event waits on a store that keeps no events.
            LeaseLost / StoreDown: the write failed (``run_workflow`` reports it).
        """
        waits = add_wait is not None or drop_wait or drop_all_waits
        if waits and not self.store.supports_events:
            raise self.store.events_unsupported("wait_for_event / cancel_on")
        if end is None:
            self._check_length(events)
        if waits and (self._unwritten or self._unconsumed):
            self._flush()  # a write with waits consumes no signals: what is held goes first
        self._number(op, events)
        lease_until = self.now() + self._lease
        wf_id, run_id = self.info.workflow_id, self.info.run_id
        held = self._unwritten + events if self._unwritten else events
        try:
            if waits:
                cancel_requested = self.store.append_with_waits(
                    wf_id, run_id, self.owner, held, lease_until=lease_until,
                    add_waits=() if add_wait is None else (add_wait,),
                    drop_waits=(op,) if drop_wait else (), end=end,
                ).cancel_requested
            elif end is None:  # a step: the store answers only what going on needs
                cancel_requested = self.store.checkpoint(
                    wf_id, run_id, self.owner, held, lease_until=lease_until,
                    consume_signals=tuple(self._consumed(consume)))
            else:
                consumed = self._consumed(consume)
                cancel_requested = self.store.append(
                    wf_id, run_id, self.owner, held, lease_until=lease_until, end=end,
                    consume_signal=consumed[0] if consumed else None,
                    **({"consume_signals": tuple(consumed[1:])} if len(consumed) > 1 else {}),
                ).cancel_requested
        except ConflictError:
            raise LeaseLost() from None
        except Exception as exc:
            raise StoreDown() from exc
        self._take_in(op, events)
        self._recorded(cancel_requested, lease_until)
        if consume is not None:
            self.signals.remove(consume)
        self._written()

    def record_soon(self, op: int, events: list[HistoryEvent], *,
                    consume: Signal | None = None) -> None:
        """Hold ``events`` (numbered, in the index at once) and ``consume``'s inbox id for the
        activation's next write: every write appends what is held first, and a pass never
        suspends or ends without writing (see port.py)."""
        self._check_length(events)
        self._number(op, events)
        self._take_in(op, events)
        self._unwritten.extend(events)
        if consume is not None:
            self.signals.remove(consume)
            self._unconsumed.append(consume.id)

    def _check_length(self, events: list[HistoryEvent]) -> None:
        """Refuse events that would take the history past ``MAX_HISTORY_EVENTS``.

        Raises:
            HistoryTooLongError: (through ``interrupt``: the run fails whatever the code does).
        """
        limit = self.config.max_history
        if limit is not None and self.next_id - 1 + len(events) > limit:
            raise self.interrupt(HistoryTooLongError(
                f"workflow {self.info.workflow_type!r} would record more than {limit} history "
                f"events (MAX_HISTORY_EVENTS) in run {self.info.run_id}; a workflow that loops "
                f"for ever should end each round with ctx.continue_as_new(...), which starts "
                f"the next run with a short history", workflow_id=self.info.workflow_id))

    def _flush(self) -> None:
        """Write what ``record_soon`` holds now, alone."""
        self.record(0, [])

    def _consumed(self, consume: Signal | None) -> list[int]:
        """The inbox ids the next write consumes: those held, then ``consume``'s."""
        return [*self._unconsumed, *(() if consume is None else (consume.id,))]

    def _written(self) -> None:
        """What was held is durable now: forget it, then hand out what waited for it."""
        self._unwritten, self._unconsumed = [], []
        after, self._after_write = self._after_write, []
        for call in after:
            call()

    def find_event(self, wait: EventWait) -> Event | None:
        """The earliest event ``wait`` accepts that the history has not consumed, read page by
        page from the store (oldest first)."""
        if self._consumed_events is None:
            self._consumed_events = {e.result["id"] for e in self.state.history
                                     if e.type is EventType.EVENT_RECEIVED}
        after = None
        while True:
            with _writing():
                page = self.store.find_events(wait.name, since=wait.anchor, match=wait.match,
                                              after=after, limit=_EVENT_PAGE)
            for event, received_at in page:
                if event.id not in self._consumed_events and wait.accepts(
                        event, received_at, self.info.input):
                    self._consumed_events.add(event.id)
                    return event
            if len(page) < _EVENT_PAGE:
                return None
            after = (page[-1][1], page[-1][0].id)

    def send_event(self, event: Event) -> SendResult:
        """Send through the executor this activation runs for (``RunnerConfig.send_event``).

        Raises:
            InvalidInputError: a bad event. StoreError: no events here.
            StoreDown: the store failed.
        """
        if self.config.send_event is None:
            raise StoreError("this runtime cannot send events")
        try:
            return self.config.send_event(event)
        except WorkflowError as exc:
            if isinstance(exc, InvalidInputError) or not self.store.supports_events:
                raise
            raise StoreDown() from exc
        except Exception as exc:
            raise StoreDown() from exc

    def next_signal(self, name: str) -> Signal | None:
        """The oldest signal ``name`` in the inbox as this activation last read it."""
        for signal in self.signals:
            if signal.name == name:
                return signal
        return None

    def go_live(self, op: int) -> None:
        """Stop a read-only replay or a run past its deadline; deliver a requested cancel at ``op``.

        Raises:
            StopReplay / TimedOut / WorkflowCanceledError: in that order of precedence.
        """
        if self.read_only:
            raise StopReplay()
        if self.deadline is not None and self.now() >= self.deadline:
            raise TimedOut()
        if self.cancel_requested and self.cancel_op is None:
            self.record(op, [HistoryEvent(id=0, type=EventType.CANCEL_REQUESTED, timestamp=self.now())])
            self.cancel_op = op
            self.fire("on_cancel", self.info.workflow_id)
            raise WorkflowCanceledError("workflow cancel requested", workflow_id=self.info.workflow_id)

    def cancel_requested_at(self, op: int) -> bool:
        """Whether a cancel was delivered by ``op``, or (past the history) is pending."""
        if self.cancel_op is not None and self.cancel_op <= op:
            return True
        return op >= self.last_op and self.cancel_requested

    def wait(self, op: int, until: datetime, kind: str, name: str) -> None:
        """Return once ``until`` has passed; retry backoffs up to ``in_place_wait`` seconds (and
        ending before the deadline) are slept in place: they are short and frequent.

        Raises:
            Suspend: the run suspends until ``until``.
        """
        self.go_live(op)
        remaining = (until - self.now()).total_seconds()
        if remaining <= 0:
            return
        if (kind == "retry" and remaining <= self.in_place_wait
                and (self.deadline is None or until < self.deadline)):
            self.clock.sleep(remaining)
            return
        raise self.interrupt(Suspend(kind, name, until))

    def interrupt(self, stop: Suspend | ContinueAsNew | WorkflowError) -> BaseException:
        """Remember ``stop`` (a divergence or a history too long is never replaced) and return
        it."""
        if not isinstance(self.interrupted, _FATAL):
            self.interrupted = stop
        return stop

    def add_query_handler(self, name: str, fn: Callable[[], Any]) -> None:
        """Keep ``fn`` as the handler of query ``name``."""
        self.query_handlers[name] = fn

    def dispatch_activity(self, op: int, queue: str | None) -> None:
        """Hand the started activity of ``op`` to the runtime's workers (``RunnerConfig``), once
        its ``activity_scheduled`` event is durable: after the next write while ``record_soon``
        holds events.

        Raises:
            StoreError: the runtime cannot run started activities.
        """
        if self.config.dispatch_activity is None:
            raise StoreError("this runtime cannot run started activities")
        send = functools.partial(self.config.dispatch_activity, self.info.workflow_id,
                                 self.info.run_id, op, queue=queue or self.state.queue or None)
        if self._unwritten:  # its activity_scheduled is held: hand it out once that is written
            self._after_write.append(send)
        else:
            send()

    def start_child(self, op: int, workflow_type: str, child_id: str, input: Any,
                    timeout: float | None) -> str:
        """Start (or find, after a crash) the child run of ``op`` through the executor."""
        if self.config.start_child is None:
            raise StoreError("this runtime cannot start child workflows")
        parent = {"workflow_id": self.info.workflow_id, "run_id": self.info.run_id, "op": op}
        try:
            return self.config.start_child(parent, workflow_type, child_id, input, timeout,
                                           queue=self.state.queue or None)
        except WorkflowError:
            raise
        except Exception as exc:
            raise StoreDown() from exc

    def child_state(self, child_id: str) -> WorkflowState | None:
        """The child run as the store has it now (no history)."""
        with _writing():
            return self.store.load(child_id, with_history=False)

    # -- the LeaseHolder (see lease.py) -----------------------------------------------------------

    def renew_lease(self, until: datetime) -> bool:
        """Extend this activation's lease to ``until``; ``False`` if another worker owns the run."""
        return self.store.renew(self.info.workflow_id, self.info.run_id, self.owner, until)

    # -- the activation ---------------------------------------------------------------------------

    def run(self) -> ActivationResult:
        """Replay and run the workflow code until the run suspends or ends.

        Raises:
            LeaseLost / StoreDown: a store write failed (``run_workflow`` reports it).
        """
        try:
            definition: WorkflowDefinition | None = get_workflow(self.info.workflow_type)
        except InvalidInputError:
            definition = None
        if definition is not None:
            self.cancels_on_events = bool(definition.cancel_on)
            self.releases_slots = bool(definition.flow is not None and definition.flow.concurrency)
        gated = self._gate()
        if gated is not None:
            return gated
        if definition is None:
            return self._leave_unknown_type()
        if not self.ops and len(self.state.history) <= 1:
            self.fire("on_workflow_start", self.info.workflow_id, self.state.input)
        while True:
            outcome = self._pass(definition)
            if outcome is not None:
                return outcome

    def _gate(self) -> ActivationResult | None:
        """A run not admitted yet (waiting for concurrency slots, or for its throttled start) is
        released again without running any workflow code; a cancel or its deadline ends it.
        ``None``: the run is admitted (a promotion that races the release bumps ``wake_seq``,
        so the release is refused and the fresh wait fields are read)."""
        if self.ops or len(self.state.history) > 1:
            return None
        while True:
            kind, until = self.state.wait_kind, self.state.wait_until
            now = self.now()
            if kind not in ("concurrency", "throttle") or (
                    kind == "throttle" and (until is None or until <= now)):
                return None
            self.releases_slots = True
            if self.cancel_requested:
                return self._end(WorkflowStatus.CANCELED, error={
                    "type": "WorkflowCanceledError", "traceback": "",
                    "message": f"canceled before it started, waiting for {self.state.wait_name}"})
            if self.deadline is not None and now >= self.deadline:
                return self._end(WorkflowStatus.TIMED_OUT, error={
                    "type": "WorkflowTimeoutError", "traceback": "",
                    "message": f"passed its deadline {self.deadline.isoformat()} before it "
                               f"started, waiting for {self.state.wait_name}"})
            wake_at = self.deadline if kind == "concurrency" else until
            if self.deadline is not None and wake_at is not None:
                wake_at = min(wake_at, self.deadline)
            if self._release(kind, self.state.wait_name, wake_at, until, None):
                return self._suspended(wake_at)
            self._reload_inbox()

    def _pass(self, definition: WorkflowDefinition) -> ActivationResult | None:
        """Run the workflow code once over the history; ``None``: run it again (a signal or a
        cancel raced the suspension it ended in)."""
        if not isinstance(self.interrupted, _FATAL):
            self.interrupted = None
        ctx = WorkflowContext(self)
        try:
            result = self._call(definition, ctx)
        except Suspend as suspension:
            return self._suspend(suspension)
        except ContinueAsNew as continued:
            return self._continue(ctx, continued.input)
        except TimedOut:
            return self._end(WorkflowStatus.TIMED_OUT, error={
                "type": "WorkflowTimeoutError",
                "message": f"workflow passed its deadline {self.deadline.isoformat()}",
                "traceback": "",
            })
        except _FATAL as exc:  # the run fails, canceled or not
            return self._fail(exc)
        except Exception as exc:  # the workflow's own error (a delivered cancel included)
            return self._raised(exc)
        return self._complete(ctx, result)

    def _call(self, definition: WorkflowDefinition, ctx: WorkflowContext) -> Any:
        """Call the workflow function; a stop it swallowed is raised again once it returns."""
        if self.deadline is not None and self.now() >= self.deadline:
            raise TimedOut()
        result = definition(ctx, self.state.input)
        if self.interrupted is not None:
            raise self.interrupted
        return result

    def _raised(self, exc: Exception) -> ActivationResult:
        """The workflow code raised ``exc``: a divergence it swallowed fails the run; otherwise a
        delivered cancel ends it canceled, and anything else fails it."""
        if isinstance(self.interrupted, _FATAL):
            return self._fail(self.interrupted)
        if self.cancel_op is not None:
            return self._end(WorkflowStatus.CANCELED, error=describe_exception(exc))
        return self._fail(exc)

    def _complete(self, ctx: WorkflowContext, result: Any) -> ActivationResult:
        """The workflow code returned ``result``: record it (canceled if a cancel was delivered)."""
        try:
            steps = operations_taken(ctx)
            if steps < self.last_op:
                raise returned_early_error(self.info.workflow_type, self.info.workflow_id, steps,
                                           self.last_op)
            result = to_json_value(result, "workflow result", max_bytes=self.limits.max_payload)
        except WorkflowError as exc:
            return self._fail(exc)
        status = WorkflowStatus.CANCELED if self.cancel_op is not None else WorkflowStatus.COMPLETED
        return self._end(status, result=result)

    def _continue(self, ctx: WorkflowContext, data: Any) -> ActivationResult:
        """``ctx.continue_as_new(data)``: end the run and store the next one in its place in one
        write (the inbox, the concurrency slots and the ``cancel_on`` waits move to it), then
        cancel the children still open and schedule the next run now."""
        steps = operations_taken(ctx)
        if steps < self.last_op:
            return self._fail(returned_early_error(self.info.workflow_type, self.info.workflow_id,
                                                   steps, self.last_op))
        now = self.now()
        origin = self.state.history[0]
        before = origin.result if isinstance(origin.result, dict) else {}
        started = replace(
            origin, id=1, op=0, timestamp=now, input=data,
            result=with_trace_context({"continued_from": self.info.run_id,
                                       "generation": int(before.get("generation", 1)) + 1},
                                      stored_trace_context([origin])))
        following = WorkflowState(
            workflow_id=self.info.workflow_id, run_id=uuid.uuid4().hex,
            workflow_type=self.info.workflow_type, input=data, created_at=now, updated_at=now,
            deadline=self.deadline, queue=self.state.queue, wake_at=now,
            parent_id=self.state.parent_id, history=[started])
        with _writing():
            self.store.continue_as_new(self.info.workflow_id, self.info.run_id, self.owner,
                                       following)
        self._ended_relatives(WorkflowStatus.COMPLETED, None, None, notify_parent=False)
        return ActivationResult(True, WorkflowStatus.RUNNING, suspended=True, wake_at=now,
                                queue=self.state.queue or "")

    def _keeps_event_waits(self) -> bool:
        """Whether the store may hold event waits of this run: its workflow's ``cancel_on``, or
        a ``wait_for_event`` still open (one that ended dropped its wait in the same write)."""
        if self.cancels_on_events:
            return True
        ended = (EventType.EVENT_RECEIVED, EventType.EVENT_TIMED_OUT)
        return any(events[0].type is EventType.EVENT_WAIT_STARTED
                   and not any(e.type in ended for e in events)
                   for events in self.ops.values() if events)

    def _ended_relatives(self, status: WorkflowStatus, result: Any, error: dict | None, *,
                         notify_parent: bool = True) -> None:
        """After the end write: tell the parent (a wake-up; it also reads this run's state),
        and cancel the children still open. Failures are logged: the parent reads the child's
        state itself when it looks again."""
        parent = parent_of(self.state.history) if notify_parent else None
        if parent is not None and self.config.notify_parent is not None:
            try:
                self.config.notify_parent(parent, self.info.workflow_id, status.value, result,
                                          error)
            except Exception:
                logger.exception("could not tell parent %s that %s ended",
                                 parent["workflow_id"], self.info.workflow_id)
        children = [events[0].signal_name for events in self.ops.values()
                    if events and events[0].type is EventType.CHILD_WORKFLOW_STARTED
                    and final_event(events) is None]
        if children and self.config.cancel_children is not None:
            try:
                self.config.cancel_children(children)
            except Exception:
                logger.exception("could not cancel the open children of %s",
                                 self.info.workflow_id)

    def _fail(self, exc: BaseException) -> ActivationResult:
        return self._end(WorkflowStatus.FAILED, error=describe_exception(exc), exc=exc)

    def _end(self, status: WorkflowStatus, *, result: Any = None, error: dict | None = None,
             exc: BaseException | None = None) -> ActivationResult:
        """Record the run's end, then fire its hook."""
        event = HistoryEvent(id=0, type=_END_EVENT[status], timestamp=self.now(), result=result,
                             error=error)
        end = RunEnd(status, result, error, release=self.releases_slots)
        self.record(0, [event], end=end, drop_all_waits=self._keeps_event_waits())
        if end.freed and self.config.promote is not None:
            try:
                self.config.promote(end.freed)
            except Exception:  # the sweep's promotion pass does it later
                logger.exception("could not promote the runs waiting for the slots %s freed",
                                 self.info.workflow_id)
        self._ended_relatives(status, result, error)
        wf_id = self.info.workflow_id
        if status is WorkflowStatus.COMPLETED:
            self.fire("on_workflow_complete", wf_id, result)
        elif status is WorkflowStatus.FAILED:
            self.fire("on_workflow_fail", wf_id, exc or WorkflowError(str(error)))
        elif status is WorkflowStatus.TIMED_OUT:
            self.fire("on_workflow_fail", wf_id, WorkflowTimeoutError(error["message"],
                                                                      workflow_id=wf_id))
        return ActivationResult(True, status)

    # -- suspending -------------------------------------------------------------------------------

    def _suspend(self, suspension: Suspend) -> ActivationResult | None:
        """Release the run until its wake-up (the deadline, if sooner); ``None`` if a signal or a
        cancel came in meanwhile (the inbox is reloaded and the lease kept)."""
        wake_at = suspension.until
        if self.deadline is not None and (wake_at is None or self.deadline < wake_at):
            wake_at = self.deadline
        if self._release(suspension.kind, suspension.name, wake_at, suspension.until,
                         suspension.record):
            return self._suspended(wake_at)
        self._reload_inbox()
        return None

    def _leave_unknown_type(self) -> ActivationResult:
        """This worker does not know the run's workflow type: leave the run to another for a while."""
        logger.error("workflow type %r of run %s is not registered in this worker; "
                     "leaving it for another", self.info.workflow_type, self.info.workflow_id)
        wake_at = self.now() + UNKNOWN_TYPE_RETRY
        if not self._release("worker", f"unknown workflow type {self.info.workflow_type}",
                             wake_at, None, None):
            self._reload_inbox()
        return self._suspended(wake_at)

    def _release(self, kind: str, name: str, wake_at: datetime | None, wait_until: datetime | None,
                 record: tuple[int, list[HistoryEvent]] | None) -> bool:
        """Suspend the run unless a signal or cancel came that this activation has not seen,
        appending what ``record_soon`` holds and ``record``'s events in the same write; ``True``
        once it is released."""
        wf_id, run_id = self.info.workflow_id, self.info.run_id
        wait = {"seen_wake_seq": self.wake_seq, "wake_at": wake_at, "wait_kind": kind,
                "wait_name": name, "wait_until": wait_until}
        if record is None and not self._unwritten and not self._unconsumed:
            with _writing():
                return self.store.suspend(wf_id, run_id, self.owner, **wait)
        op, events = record if record is not None else (0, [])
        self._number(op, events)
        lease_until = self.now() + self._lease
        if self._unconsumed:
            wait["consume_signals"] = tuple(self._unconsumed)
        with _writing():
            control, suspended = self.store.append_and_suspend(
                wf_id, run_id, self.owner, self._unwritten + events, lease_until=lease_until,
                **wait)
        self._take_in(op, events)
        self._recorded(control.cancel_requested, lease_until)
        self._written()
        return suspended

    def _reload_inbox(self) -> None:
        """Read the signals, cancel flag and wake sequence the store has now (the lease is kept)."""
        with _writing():
            fresh = self.store.refresh(self.info.workflow_id, self.info.run_id, self.owner)
        self.wake_seq = fresh.wake_seq
        self.signals = list(fresh.signals)
        self.cancel_requested = fresh.cancel_requested
        # A promotion (flow control) changes what a run not yet admitted waits for.
        self.state.wait_kind, self.state.wait_name = fresh.wait_kind, fresh.wait_name
        self.state.wait_until = fresh.wait_until

    def _suspended(self, wake_at: datetime | None) -> ActivationResult:
        return ActivationResult(True, WorkflowStatus.RUNNING, suspended=True, wake_at=wake_at,
                                queue=self.state.queue or "")

    # -- bookkeeping ------------------------------------------------------------------------------

    def _number(self, op: int, events: list[HistoryEvent]) -> None:
        for event in events:
            event.id = self.next_id
            event.op = op
            self.next_id += 1

    def _take_in(self, op: int, events: list[HistoryEvent]) -> None:
        """Add ``events`` of operation ``op`` to the history and its index."""
        self.state.history.extend(events)
        if op and events:
            self.ops[op].extend(events)
            self.last_op = max(self.last_op, op)

    def _recorded(self, cancel_requested: bool, lease_until: datetime) -> None:
        """Take in what the store answered to a write."""
        self.lease_until = lease_until
        # Adopt the cancel flag at once; wake_seq only changes with a reload (see _suspend()).
        self.cancel_requested = self.cancel_requested or cancel_requested

    def _abandon(self, cause: BaseException | None) -> ActivationResult:
        logger.error("could not checkpoint %s (%s); leaving it for a retry after its lease expires",
                     self.info.workflow_id, cause)
        return ActivationResult(True, abandoned=True)

    def _lost(self) -> ActivationResult:
        logger.warning("lost the lease on %s; another worker has the run", self.info.workflow_id)
        return ActivationResult(True, lease_lost=True)


def run_workflow(config: RunnerConfig, workflow_id: str, *, owner: str | None = None) -> ActivationResult:
    """Advance the open run of ``workflow_id`` as far as it can go now.

    Returns without doing anything (``claimed=False``) when the run is missing, ended, or leased
    by another worker. A workflow's own exception fails that run; it never escapes this function,
    and neither does a store failure during the activation (``abandoned``) or a lost lease
    (``lease_lost``).

    Raises:
        Exception: the store failed while claiming the run (nothing was changed).
    """
    owner = owner or new_owner()
    now = config.clock.now()
    state = config.store.claim(workflow_id, owner, now + timedelta(seconds=config.lease_seconds), now)
    if state is None:
        return ActivationResult(False)
    activation = Activation(config, state, owner)
    lease_keeper.add(activation)
    try:
        if config.hooks.span is None:
            return activation.run()
        # One span per activation, continuing the trace stored with the run.
        with config.hooks.trace("workflow.run", activation.info.span_attributes(),
                                stored_trace_context(state.history)) as span:
            result = activation.run()
            if result.status is not None:
                span.set_attribute("workflow.status", result.status.value)
            return result
    except LeaseLost:
        return activation._lost()
    except StoreDown as down:
        return activation._abandon(down.__cause__)
    finally:
        lease_keeper.remove(activation)


def query_workflow(config: RunnerConfig, state: WorkflowState, query_type: str) -> Any:
    """Answer a custom query: replay the run read-only to its current point, then ask its handler.

    The replay does no work and writes nothing: it stops at the first operation not recorded yet.

    Raises:
        InvalidInputError: the workflow registers no handler of that name, its handler raised, or
            its answer is not JSON-serialisable.
    """
    definition = get_workflow(state.workflow_type)
    activation = Activation(config, state, owner="", read_only=True)
    activation.cancel_requested = False  # a query never delivers anything
    _replay_read_only(definition, activation)
    handler = activation.query_handlers.get(query_type)
    if handler is None:
        known = ", ".join(["status", "result", "history", *sorted(activation.query_handlers)])
        raise InvalidInputError(
            f"unknown query type {query_type!r} for workflow {state.workflow_id!r}; "
            f"it answers: {known}",
            workflow_id=state.workflow_id,
        )
    try:
        answer = handler()
    except Exception as exc:
        raise InvalidInputError(
            f"query {query_type!r} of workflow {state.workflow_id!r} could not be answered: "
            f"its handler raised {type(exc).__name__}: {exc}",
            workflow_id=state.workflow_id, code="query_failed",
        ) from exc
    return to_json_value(answer, f"answer to query {query_type!r}", max_bytes=config.max_payload)


def _replay_read_only(definition: WorkflowDefinition, activation: Activation) -> None:
    """Run the workflow code over its history until it reaches the present, registering handlers."""
    try:
        definition(WorkflowContext(activation), activation.state.input)
    except (StopReplay, Suspend, TimedOut):  # it reached the present, a wait or its deadline
        pass
    except Exception:  # the run failed or was canceled at this point: handlers still answer
        pass
