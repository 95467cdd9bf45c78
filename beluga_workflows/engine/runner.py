"""The runner: one activation of one run — claim, replay, run, checkpoint, then suspend or finish.

``run_workflow`` is what every runtime (threads, Celery) calls when a run may have work to do. It is
safe to call for any id at any time, as often as you like: a run leased by another worker, ended or
missing is left alone, and a run that has nothing to do yet suspends again after a fast replay.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .clock import Clock, SystemClock
from .context import StopReplay, Suspend, TimedOut, WorkflowContext
from .errors import (
    ConflictError,
    InvalidInputError,
    NonDeterminismError,
    WorkflowCanceledError,
    WorkflowError,
    describe_exception,
)
from .hooks import Hooks
from .registry import get_workflow
from .retry import RetryPolicy
from .serialization import DEFAULT_MAX_PAYLOAD_BYTES, to_json_value
from .types import EventType, HistoryEvent, RunEnd, Signal, WorkflowState, WorkflowStatus

if TYPE_CHECKING:
    from ..stores.base import WorkflowStore

__all__ = ["ActivationResult", "RunnerConfig", "new_owner", "query_workflow", "run_workflow"]

logger = logging.getLogger("beluga_workflows.runner")

# How long to wait before a worker that does not know a run's workflow type lets another try.
UNKNOWN_TYPE_RETRY = timedelta(seconds=30)


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


class _LeaseLost(BaseException):  # noqa: N818 - unwinds workflow code when the lease is gone
    pass


class _StoreDown(BaseException):  # noqa: N818 - unwinds workflow code when a checkpoint cannot be written
    """A checkpoint failed for a reason other than a lost lease (database down, network).

    The activation is abandoned rather than failing the run: the run keeps its recorded steps and
    is picked up again once its lease expires, by which time the store may be back.
    """


class Activation:
    """One worker's pass over one run. Holds the run in memory and writes through the store."""

    def __init__(self, config: RunnerConfig, state: WorkflowState, owner: str, *, read_only: bool = False):
        self.config = config
        self.store = config.store
        self.clock = config.clock
        self.hooks = config.hooks
        self.in_place_wait = config.in_place_wait
        self.max_payload = config.max_payload
        self.default_retry = config.default_retry
        self.state = state
        self.owner = owner
        self.read_only = read_only
        self.ops: dict[int, list[HistoryEvent]] = defaultdict(list)
        self.cancel_op: int | None = None
        for event in state.history:
            if event.op:
                self.ops[event.op].append(event)
                if event.type is EventType.CANCEL_REQUESTED and self.cancel_op is None:
                    self.cancel_op = event.op
        self.last_op = max(self.ops, default=0)
        self.next_id = (state.history[-1].id + 1) if state.history else 1
        self.cancel_requested = state.cancel_requested
        self.deadline = state.deadline
        self.wake_seq = state.wake_seq
        self.signals: list[Signal] = list(state.signals)
        self.query_handlers: dict[str, Any] = {}
        self.suspending: Suspend | None = None
        # Set once replay diverged from the history; the run fails even if workflow code caught it.
        self.diverged: NonDeterminismError | None = None
        self.lease_until = state.lease_expires_at

    # -- used by WorkflowContext ------------------------------------------------------------------

    def event(self, type: EventType, **fields: Any) -> HistoryEvent:
        fields.setdefault("timestamp", self.clock.now())
        return HistoryEvent(id=0, type=type, **fields)

    def record(self, op: int, events: list[HistoryEvent], *, consume_signal: int | None = None,
               end: RunEnd | None = None) -> None:
        """Durably append ``events`` (of operation ``op``) before the workflow code goes on."""
        self._number(op, events)
        lease_until = self.clock.now() + timedelta(seconds=self.config.lease_seconds)
        try:
            control = self.store.append(
                self.state.workflow_id, self.state.run_id, self.owner, events,
                lease_until=lease_until, consume_signal=consume_signal, end=end,
            )
        except ConflictError:
            raise _LeaseLost() from None
        except Exception as exc:
            raise _StoreDown() from exc
        self._recorded(op, events, control, lease_until)

    def _number(self, op: int, events: list[HistoryEvent]) -> None:
        for event in events:
            event.id = self.next_id
            event.op = op
            self.next_id += 1

    def _recorded(self, op: int, events: list[HistoryEvent], control: WorkflowState,
                  lease_until: datetime) -> None:
        """Take in what the store just appended."""
        self.lease_until = lease_until
        self.state.history.extend(events)
        if op:
            self.ops[op].extend(events)
            self.last_op = max(self.last_op, op)
        # Adopt the cancel flag at once; wake_seq only changes with refresh() (see suspend()).
        self.cancel_requested = self.cancel_requested or control.cancel_requested

    def next_signal(self, name: str) -> Signal | None:
        for signal in self.signals:
            if signal.name == name:
                return signal
        return None

    def suspend(self, kind: str, name: str, until: datetime | None, *,
                record: tuple[int, list[HistoryEvent]] | None = None) -> Suspend:
        self.suspending = Suspend(kind, name, until, record)
        return self.suspending

    # -- the activation ---------------------------------------------------------------------------

    def run(self) -> ActivationResult:
        state = self.state
        try:
            definition = get_workflow(state.workflow_type)
        except InvalidInputError:
            logger.error("workflow type %r of run %s is not registered in this worker; "
                         "leaving it for another", state.workflow_type, state.workflow_id)
            wake_at = self.clock.now() + UNKNOWN_TYPE_RETRY
            self._try_suspend("worker", f"unknown workflow type {state.workflow_type}", wake_at, None)
            return ActivationResult(True, WorkflowStatus.RUNNING, suspended=True, wake_at=wake_at,
                                    queue=self.state.queue or "")

        if not self.ops and len(state.history) <= 1:
            self.hooks.fire("on_workflow_start", state.workflow_id, state.input)
        while True:
            self.suspending = None
            ctx = WorkflowContext(self)
            try:
                if self.deadline is not None and self.clock.now() >= self.deadline:
                    raise TimedOut()
                result = definition(ctx, state.input)
                if self.diverged is not None:  # the code swallowed the divergence
                    raise self.diverged
                if self.suspending is not None:  # the code swallowed the suspension
                    raise self.suspending
            except Suspend as suspension:
                outcome = self._suspend(suspension)
                if outcome is not None:
                    return outcome
                continue  # a signal or cancel raced the suspension: look again
            except _LeaseLost:
                return self._lost()
            except _StoreDown as down:
                return self._abandon(down.__cause__)
            except TimedOut:
                return self._end(WorkflowStatus.TIMED_OUT, error={
                    "type": "WorkflowTimeoutError",
                    "message": f"workflow passed its deadline {self.deadline.isoformat()}",
                    "traceback": "",
                })
            except NonDeterminismError as exc:
                return self._fail(exc)
            except WorkflowCanceledError as exc:
                if self.diverged is not None:
                    return self._fail(self.diverged)
                if self.cancel_op is not None:
                    return self._end(WorkflowStatus.CANCELED, error=describe_exception(exc))
                return self._fail(exc)
            except Exception as exc:
                if self.diverged is not None:
                    return self._fail(self.diverged)
                if self.cancel_op is not None:
                    return self._end(WorkflowStatus.CANCELED, error=describe_exception(exc))
                return self._fail(exc)
            return self._complete(ctx, result)

    def _complete(self, ctx: WorkflowContext, result: Any) -> ActivationResult:
        try:
            if ctx._op < self.last_op:
                raise NonDeterminismError(
                    f"workflow {self.state.workflow_type!r} returned after step {ctx._op} but its "
                    f"history records {self.last_op} steps; the workflow code changed while this "
                    f"run was open, or it is not deterministic",
                    workflow_id=self.state.workflow_id,
                )
            result = to_json_value(result, "workflow result", max_bytes=self.max_payload)
        except WorkflowError as exc:
            return self._fail(exc)
        status = WorkflowStatus.CANCELED if self.cancel_op is not None else WorkflowStatus.COMPLETED
        return self._end(status, result=result)

    def _fail(self, exc: BaseException) -> ActivationResult:
        return self._end(WorkflowStatus.FAILED, error=describe_exception(exc), exc=exc)

    def _end(self, status: WorkflowStatus, *, result: Any = None, error: dict | None = None,
             exc: BaseException | None = None) -> ActivationResult:
        event_type = {
            WorkflowStatus.COMPLETED: EventType.WORKFLOW_COMPLETED,
            WorkflowStatus.FAILED: EventType.WORKFLOW_FAILED,
            WorkflowStatus.CANCELED: EventType.WORKFLOW_CANCELED,
            WorkflowStatus.TIMED_OUT: EventType.WORKFLOW_TIMED_OUT,
        }[status]
        event = self.event(event_type, result=result, error=error)
        try:
            self.record(0, [event], end=RunEnd(status, result, error))
        except _LeaseLost:
            return self._lost()
        except _StoreDown as down:
            return self._abandon(down.__cause__)
        wf_id = self.state.workflow_id
        if status is WorkflowStatus.COMPLETED:
            self.hooks.fire("on_workflow_complete", wf_id, result)
        elif status is WorkflowStatus.FAILED:
            self.hooks.fire("on_workflow_fail", wf_id, exc or WorkflowError(str(error)))
        elif status is WorkflowStatus.TIMED_OUT:
            from .errors import WorkflowTimeoutError

            self.hooks.fire("on_workflow_fail", wf_id, WorkflowTimeoutError(error["message"],
                                                                           workflow_id=wf_id))
        return ActivationResult(True, status)

    def _suspend(self, suspension: Suspend) -> ActivationResult | None:
        wake_at = suspension.until
        if self.deadline is not None and (wake_at is None or self.deadline < wake_at):
            wake_at = self.deadline
        if self._try_suspend(suspension.kind, suspension.name, wake_at, suspension.until,
                             suspension.record):
            return ActivationResult(True, WorkflowStatus.RUNNING, suspended=True, wake_at=wake_at,
                                    queue=self.state.queue or "")
        return None

    def _try_suspend(self, kind: str, name: str, wake_at: datetime | None,
                     wait_until: datetime | None,
                     record: tuple[int, list[HistoryEvent]] | None = None) -> bool:
        """Release the run (appending ``record``'s events in the same write); on a raced
        signal/cancel, keep the lease, reload the inbox and return False."""
        wf_id, run_id = self.state.workflow_id, self.state.run_id
        try:
            if record is not None:
                op, events = record
                self._number(op, events)
                lease_until = self.clock.now() + timedelta(seconds=self.config.lease_seconds)
                control, suspended = self.store.append_and_suspend(
                    wf_id, run_id, self.owner, events, lease_until=lease_until,
                    seen_wake_seq=self.wake_seq, wake_at=wake_at, wait_kind=kind, wait_name=name,
                    wait_until=wait_until)
                self._recorded(op, events, control, lease_until)
                if suspended:
                    return True
            elif self.store.suspend(wf_id, run_id, self.owner, seen_wake_seq=self.wake_seq,
                                    wake_at=wake_at, wait_kind=kind, wait_name=name,
                                    wait_until=wait_until):
                return True
            fresh = self.store.refresh(wf_id, run_id, self.owner)
        except ConflictError:
            raise _LeaseLost() from None
        except Exception as exc:
            raise _StoreDown() from exc
        self.wake_seq = fresh.wake_seq
        self.signals = list(fresh.signals)
        self.cancel_requested = fresh.cancel_requested
        return False

    def _abandon(self, cause: BaseException | None) -> ActivationResult:
        logger.error("could not checkpoint %s (%s); leaving it for a retry after its lease expires",
                     self.state.workflow_id, cause)
        return ActivationResult(True, abandoned=True)

    def _lost(self) -> ActivationResult:
        logger.warning("lost the lease on %s; another worker has the run", self.state.workflow_id)
        return ActivationResult(True, lease_lost=True)


class _LeaseKeeper:
    """One thread per process that renews the leases of activations still working."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, Activation] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, activation: Activation) -> None:
        with self._lock:
            self._active[id(activation)] = activation
            self._wake.set()  # re-read the period: this lease may be the shortest
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="beluga-lease-keeper",
                                                daemon=True)
                self._thread.start()

    def remove(self, activation: Activation) -> None:
        with self._lock:
            self._active.pop(id(activation), None)

    def _loop(self) -> None:
        while True:
            # Look at least three times per lease: a lease shorter than this loop's period would
            # expire under a live worker and let the recovery sweep start a second one.
            with self._lock:
                period = min((a.config.lease_seconds / 3 for a in self._active.values()), default=1.0)
            self._wake.wait(min(max(period, 0.01), 1.0))
            self._wake.clear()
            with self._lock:
                active = list(self._active.values())
            for a in active:
                now = a.clock.now()
                lease = a.config.lease_seconds
                if a.lease_until is None or (a.lease_until - now).total_seconds() < lease * 2 / 3:
                    until = now + timedelta(seconds=lease)
                    try:
                        if a.store.renew(a.state.workflow_id, a.state.run_id, a.owner, until):
                            a.lease_until = until
                    except Exception:
                        logger.exception("renewing the lease of %s failed", a.state.workflow_id)


lease_keeper = _LeaseKeeper()


def run_workflow(config: RunnerConfig, workflow_id: str, *, owner: str | None = None) -> ActivationResult:
    """Advance the open run of ``workflow_id`` as far as it can go now.

    Returns without doing anything (``claimed=False``) when the run is missing, ended, or leased
    by another worker. A workflow's own exception fails that run; it never escapes this function.
    """
    owner = owner or new_owner()
    now = config.clock.now()
    state = config.store.claim(workflow_id, owner, now + timedelta(seconds=config.lease_seconds), now)
    if state is None:
        return ActivationResult(False)
    activation = Activation(config, state, owner)
    lease_keeper.add(activation)
    try:
        return activation.run()
    except _LeaseLost:
        return activation._lost()
    except _StoreDown as down:
        return activation._abandon(down.__cause__)
    finally:
        lease_keeper.remove(activation)


def query_workflow(config: RunnerConfig, state: WorkflowState, query_type: str) -> Any:
    """Answer a custom query: replay the run read-only to its current point, then ask its handler.

    Raises:
        InvalidInputError: the workflow registers no handler of that name.
    """
    definition = get_workflow(state.workflow_type)
    activation = Activation(config, state, owner="", read_only=True)
    activation.cancel_requested = False  # a query never delivers anything
    try:
        definition(WorkflowContext(activation), state.input)
    except (StopReplay, Suspend, TimedOut):
        pass
    except Exception:  # the run failed or was canceled at this point: handlers still answer
        pass
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
