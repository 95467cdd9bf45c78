"""The store contract: where runs, their histories and their signal inboxes live.

A store keeps the latest run of each workflow id. Four methods are the public contract of the Go
package (``save``, ``load``, ``list``, ``delete``); the others are what the engine needs to hold its
guarantees under concurrency:

- ``create`` refuses a second open run of an id;
- ``claim`` gives a run's lease to exactly one worker (compare-and-set on the lease);
- ``append`` adds events to a run's history without rewriting it, only while the caller still
  holds the lease (fencing), and may consume signals and end the run in the same write;
- ``suspend`` releases the lease only if no signal or cancel arrived since the worker last looked
  (compare-and-set on ``wake_seq``), so a signal that races a suspension is never stranded;
- ``add_signal`` / ``request_cancel`` append to the inbox and bump ``wake_seq`` atomically;
- ``due`` lists runs a worker should pick up: not leased (or lease expired) and ``wake_at`` passed.

Backends that cannot do compare-and-set set ``supports_compare_and_set = False`` and say so.

Events (API.md §8) are optional: a store that keeps them (``supports_events = True``: the django
and memory stores) implements the methods of the "events" section below, which the fan-out of
``engine/fanout.py`` relies on (its module docstring gives the ordering they must keep); the
others refuse each of them with ``events_unsupported(...)``, a ``StoreError`` that names the
stores that have them.

Flow control (API.md §9, ``engine/flow.py``) is optional too (``supports_flow_control``: the
django and memory stores): ``create_with_waits`` and ``record_delivery`` then enforce an
``Admission`` in the write that starts the run, an end with ``RunEnd.release`` frees the run's
slots in the write that ends it, and the methods of the "flow control" section below promote
waiting runs and keep debounce and batch groups. Other stores refuse an admission with
``flow_unsupported(...)``.

Every store reports the same refusals with the same words (``lease_lost``, ``already_open``,
``no_open_run``), and its backend's own failures as the contract's errors: a method decorated with
``guarded(operation)`` turns the exceptions in ``backend_errors`` into ``backend_error(...)``, a
``StoreError`` naming the backend and the operation unless the store says otherwise.
``check()`` is what ``manage.py check`` asks the store (see ``beluga_workflows.checks``).

Retention (API.md §11) is optional too (``supports_purge``: every store shipped but ``inngest``,
which cannot list runs): ``purge_ended`` deletes ended runs by end time in bounded batches, each
run's condition checked again in the write that deletes it, and ``count_ended`` counts them;
both may be narrowed to one ended status and one workflow type (``purge_filter`` checks those).
Other stores refuse both with ``purge_unsupported(...)``.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from django.core import checks

from ..engine.errors import (
    ConflictError,
    InvalidInputError,
    StoreError,
    WorkflowAlreadyExistsError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ..engine.events import Event, EventRecord, EventWait
from ..engine.flow import Admission, Bucket
from ..engine.retention import purge_filter
from ..engine.types import (
    HistoryEvent,
    RunEnd,
    Signal,
    WorkflowFilter,
    WorkflowState,
    WorkflowStatus,
)

__all__ = [
    "RunEnd",
    "RunWatch",
    "WorkflowStore",
    "already_open",
    "check_history",
    "guarded",
    "lease_lost",
    "no_open_run",
    "purge_filter",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(operation: str) -> Callable[[_F], _F]:
    """Decorate a store method so that its backend's failures surface as the contract's errors.

    An exception in the store's ``backend_errors`` raised by the method is replaced by
    ``store.backend_error(operation, exc)`` (chained to it); the contract's own errors
    (``WorkflowError``) and anything else pass through unchanged.
    """

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: WorkflowStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except WorkflowError:
                raise
            except self.backend_errors as exc:
                raise self.backend_error(operation, exc) from exc

        return wrapper  # type: ignore[return-value]

    return decorate


def lease_lost(workflow_id: str) -> ConflictError:
    """The error of a fenced write whose caller no longer holds the run's lease."""
    return ConflictError(f"lease on {workflow_id!r} lost", workflow_id=workflow_id)


def already_open(workflow_id: str, run_id: str) -> WorkflowAlreadyExistsError:
    """The error of ``create`` while run ``run_id`` of ``workflow_id`` is still open."""
    return WorkflowAlreadyExistsError(
        f"workflow {workflow_id!r} already has an open run ({run_id})", workflow_id=workflow_id)


def no_open_run(workflow_id: str, status: str | None) -> WorkflowError:
    """Why a signal or cancel found no open run: none at all (``status`` ``None``), or it ended.

    Returns ``WorkflowNotFoundError`` or ``WorkflowNotRunningError`` (naming ``status``).
    """
    if status is None:
        return WorkflowNotFoundError(f"no workflow with id {workflow_id!r}", workflow_id=workflow_id)
    return WorkflowNotRunningError(f"workflow {workflow_id!r} has ended ({status})",
                                   workflow_id=workflow_id)


def check_history(state: WorkflowState) -> None:
    """Refuse a run to ``save`` or ``create`` whose history numbers two events alike.

    Raises:
        InvalidInputError: two events of ``state.history`` have the same ``id``.
    """
    ids = [e.id for e in state.history]
    if len(set(ids)) != len(ids):
        raise InvalidInputError(f"history of {state.workflow_id!r} has duplicate event ids",
                                workflow_id=state.workflow_id)


class RunWatch:
    """A subscription to the end of one run (``WorkflowStore.watch``); use it as a context manager.

    This base watch cannot be told anything (``pushed`` is ``False``): ``wait`` just sleeps, and
    the waiter polls. A store that pushes run ends returns a watch whose ``wait`` returns early.
    """

    @property
    def pushed(self) -> bool:
        """``True`` while the store pushes ends: ``wait`` then returns as soon as one may have come."""
        return False

    def wait(self, seconds: float) -> None:
        """Return after ``seconds``, or sooner when the run may have ended."""
        time.sleep(seconds)

    def close(self) -> None:
        """End the subscription."""

    def __enter__(self) -> RunWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WorkflowStore(abc.ABC):
    """Base class of every store backend. Options come from ``BELUGA_WORKFLOWS["STORE"]["OPTIONS"]``."""

    # Writes are conditional (versions / compare-and-set), so concurrent workers cannot clobber
    # each other and the lease is exclusive.
    supports_compare_and_set: bool = True
    # ``list`` reads the backend itself, so every process sees every run.
    supports_listing: bool = True
    # The store's name in messages ("the redis workflow store cannot be reached", "redis/claim").
    backend_name: str = "custom"
    # The client library's exceptions that ``guarded`` methods report through ``backend_error``.
    backend_errors: tuple[type[BaseException], ...] = ()
    # What ``manage.py check`` advises when ``ping`` fails.
    unreachable_hint: str = "Start its server or fix its OPTIONS."
    # The store keeps events, their trigger ledger and the runs' event waits (the "events" methods).
    supports_events: bool = False
    # The store enforces flow control (the "flow control" methods; needs ``supports_events``).
    supports_flow_control: bool = False
    # The store finds ended runs by end time and deletes them (``purge_ended``, ``count_ended``).
    supports_purge: bool = False

    def __init__(self, **options: Any) -> None:
        self.options = options

    # -- health and failures --------------------------------------------------------------------

    def ping(self) -> None:  # noqa: B027 - optional hook: a store without a server has nothing to ask
        """Check that the backend answers (optional; the default asks nothing).

        Raises:
            StoreError: it cannot be reached (the message says where and why).
        """

    def check(self, *, multi_process: bool = False) -> list[checks.CheckMessage]:
        """What ``manage.py check`` reports about this store: ``beluga_workflows.E004`` when
        ``ping`` fails, with the store's ``unreachable_hint``; nothing when it answers.

        ``multi_process``: the executor runs workflows in several processes (a store may warn
        about what then goes wrong or slow).
        """
        try:
            self.ping()
        except StoreError as exc:
            return [checks.Error(f"the {self.backend_name} workflow store cannot be reached: {exc}",
                                 hint=self.unreachable_hint, id="beluga_workflows.E004")]
        return []

    @property
    def database_alias(self) -> str | None:
        """The Django ``DATABASES`` alias the store writes to, or ``None`` (not a database).

        A runtime sends a run's messages only once that database's transaction commits, and a
        worker keeps that connection open across activations.
        """
        return None

    def on_commit(self, fn: Callable[[], Any]) -> None:
        """Call ``fn`` once the store's writes made so far are committed: now, unless the caller
        holds a transaction open on the store's database (the django store then waits for it)."""
        fn()

    def backend_error(self, operation: str, exc: BaseException) -> WorkflowError:
        """The contract's error for ``exc``, a failure of the backend in ``operation``.

        The default is a ``StoreError`` naming the backend and the operation (``"redis/claim:
        ..."``); a store whose backend tells bad input from an outage overrides it.
        """
        return StoreError(f"{self.backend_name}/{operation}: {exc}")

    # -- the public contract -------------------------------------------------------------------

    @abc.abstractmethod
    def save(self, state: WorkflowState) -> None:
        """Store ``state`` (with its history and inbox) as the latest run of its id, overwriting."""

    @abc.abstractmethod
    def load(self, workflow_id: str, *, with_history: bool = True) -> WorkflowState | None:
        """The latest run of ``workflow_id`` with its history and unconsumed signals, or ``None``."""

    @abc.abstractmethod
    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """Runs matching ``filter``, newest first, without their histories."""

    @abc.abstractmethod
    def delete(self, workflow_id: str) -> None:
        """Remove every run of ``workflow_id``; a missing id is not an error."""

    # -- what the engine needs ------------------------------------------------------------------

    @abc.abstractmethod
    def create(self, state: WorkflowState) -> None:
        """Store a new run (its history holds ``workflow_started``).

        Raises:
            WorkflowAlreadyExistsError: a run of that id is still open. An ended run is replaced.
        """

    @abc.abstractmethod
    def claim(self, workflow_id: str, owner: str, lease_until: datetime, now: datetime
              ) -> WorkflowState | None:
        """Take the lease of the open run of ``workflow_id`` if nobody holds an unexpired one.

        Returns the run with its history and unconsumed signals, or ``None`` when the run is ended,
        missing, or leased by another worker. Two callers can never both win.
        """

    @abc.abstractmethod
    def append(
        self,
        workflow_id: str,
        run_id: str,
        owner: str,
        events: list[HistoryEvent],
        *,
        lease_until: datetime,
        consume_signal: int | None = None,
        end: RunEnd | None = None,
        consume_signals: tuple[int, ...] = (),
    ) -> WorkflowState:
        """Append ``events`` to the run's history, extending the lease to ``lease_until``.

        ``consume_signal`` and each of ``consume_signals`` (inbox ids) are removed from the inbox
        in the same write (a run settling many parallel outcomes consumes them in one write);
        ``end`` ends the run and releases the lease. Returns the run's control fields
        (``cancel_requested``, ``wake_seq``, ``deadline``), not its history.

        Raises:
            ConflictError: ``owner`` no longer holds the lease (nothing was written).
        """

    def checkpoint(self, workflow_id: str, run_id: str, owner: str, events: list[HistoryEvent],
                   *, lease_until: datetime, consume_signals: tuple[int, ...] = ()) -> bool:
        """The write of a step: ``append`` without an end, answering only ``cancel_requested``
        (all a worker needs back to go on). A store may do it in less work than ``append``
        (the django store on PostgreSQL returns that one column instead of the run's control
        fields); by default it is ``append``.

        Raises:
            ConflictError: ``owner`` no longer holds the lease (nothing was written).
        """
        first, rest = (consume_signals[0], consume_signals[1:]) if consume_signals else (None, ())
        return self.append(workflow_id, run_id, owner, events, lease_until=lease_until,
                           consume_signal=first, consume_signals=rest).cancel_requested

    @abc.abstractmethod
    def suspend(
        self,
        workflow_id: str,
        run_id: str,
        owner: str,
        *,
        seen_wake_seq: int,
        wake_at: datetime | None,
        wait_kind: str,
        wait_name: str,
        wait_until: datetime | None,
    ) -> bool:
        """Release the lease and record what the run waits for.

        Returns ``False`` (and changes nothing) when a signal or cancel arrived after the worker
        saw ``seen_wake_seq``: the worker must look again instead of sleeping on it.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """

    def append_and_suspend(
        self,
        workflow_id: str,
        run_id: str,
        owner: str,
        events: list[HistoryEvent],
        *,
        lease_until: datetime,
        seen_wake_seq: int,
        wake_at: datetime | None,
        wait_kind: str,
        wait_name: str,
        wait_until: datetime | None,
        consume_signals: tuple[int, ...] = (),
    ) -> tuple[WorkflowState, bool]:
        """``append(events, consume_signals=...)`` then ``suspend(...)``: the run's control fields
        and whether it was released. The events are appended (and the signals consumed) either
        way. A backend that can do both in one write overrides this (a sleep then costs one
        checkpoint instead of two).

        Raises:
            ConflictError: ``owner`` no longer holds the lease (nothing was written).
        """
        control = self.append(workflow_id, run_id, owner, events, lease_until=lease_until,
                              consume_signals=consume_signals)
        return control, self.suspend(workflow_id, run_id, owner, seen_wake_seq=seen_wake_seq,
                                     wake_at=wake_at, wait_kind=wait_kind, wait_name=wait_name,
                                     wait_until=wait_until)

    def continue_as_new(self, workflow_id: str, run_id: str, owner: str,
                        following: WorkflowState) -> None:
        """End the leased run and put ``following`` (a new run of the same id, due now) in its
        place, in one write: the old run and its history are gone; its unconsumed signals are
        in the new run's inbox, in order (but for outcomes of started activities and children:
        ``engine.parallel.outcome_inbox``), and a cancel requested meanwhile is the new run's
        (``cancel_requested``, ``wake_seq`` carried over); concurrency slots it holds and its ``cancel_on``
        event waits (``op <= 0``) pass to the new run, its other event waits are dropped.

        Raises:
            ConflictError: ``owner`` no longer holds the lease (nothing was written).
            StoreError: the store cannot do it in one write (this default).
        """
        raise StoreError(f"{type(self).__name__} cannot continue a run as new in one write")

    @abc.abstractmethod
    def refresh(self, workflow_id: str, run_id: str, owner: str) -> WorkflowState:
        """The run's current control fields and unconsumed signals (no history), lease held.

        Raises:
            ConflictError: ``owner`` no longer holds the lease.
        """

    @abc.abstractmethod
    def renew(self, workflow_id: str, run_id: str, owner: str, lease_until: datetime) -> bool:
        """Extend the lease; ``False`` when ``owner`` no longer holds it."""

    @abc.abstractmethod
    def add_signal(self, workflow_id: str, signal: Signal, now: datetime) -> Signal:
        """Put ``signal`` in the open run's inbox, bump ``wake_seq`` and make the run due now.

        Returns the signal with its inbox ``id``.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the latest run has ended.
        """

    def deliver_signal(self, workflow_id: str, signal: Signal, now: datetime
                       ) -> tuple[Signal, bool]:
        """``add_signal``, and whether the sender need not wake the run (``True``), as read once
        the signal was filed:

        - a worker holds the run's unexpired lease: it sees the signal before it can release
          the run (``suspend`` refuses a ``wake_seq`` it has not seen; a claim after the signal
          reads it);
        - or the run is unleased and was due before the signal (``wake_at`` earlier than
          ``now``): the wake-up of whoever made it due is on its way, and ``due`` lists it for
          the recovery sweep should that message be lost.

        So a run of 1,000 parallel activities is not sent 1,000 wake-ups. ``False`` promises
        nothing: wake the run. The default always answers ``False``; a store that can read the
        run cheaply overrides it. Raises what ``add_signal`` raises.
        """
        return self.add_signal(workflow_id, signal, now), False

    @abc.abstractmethod
    def request_cancel(self, workflow_id: str, now: datetime) -> WorkflowState:
        """Flag the open run as cancel-requested, bump ``wake_seq`` and make it due now.

        Raises:
            WorkflowNotFoundError: no run of that id.
            WorkflowNotRunningError: the latest run has ended.
        """

    @abc.abstractmethod
    def due(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of open runs a worker should pick up now: unleased or lease expired, ``wake_at <= now``."""

    def history(self, workflow_id: str, *, after: int = 0, limit: int = 0) -> list[HistoryEvent]:
        """The run's events with ``id > after``, in order, at most ``limit`` (``<= 0``: all)."""
        state = self.load(workflow_id)
        if state is None:
            return []
        events = [e for e in state.history if e.id > after]
        return events[:limit] if limit > 0 else events

    def load_operation(self, workflow_id: str, op: int, signal_name: str) -> WorkflowState | None:
        """The latest run of ``workflow_id`` as ``load`` has it, its history narrowed to
        operation ``op``'s events and its inbox to the signals named ``signal_name``, or
        ``None``: what a worker handed a started activity reads (so a run of 1,000 parallel
        activities is not read whole 1,000 times).

        The default loads the whole run and narrows it; a store that can read less overrides it.
        """
        state = self.load(workflow_id)
        if state is not None:
            state.history = [e for e in state.history if e.op == op]
            state.signals = [s for s in state.signals if s.name == signal_name]
        return state

    def count(self, filter: WorkflowFilter | None = None) -> int:
        """How many runs match ``filter`` (its ``limit`` and ``offset`` ignored)."""
        filter = filter or WorkflowFilter()
        return len(self.list(dataclasses.replace(filter, limit=0, offset=0)))

    def count_by_status(self) -> dict[str, int]:
        """How many runs are in each status (every status present, zeros included)."""
        counts = {s.value: 0 for s in WorkflowStatus}
        for state in self.list(WorkflowFilter()):
            counts[state.status.value] += 1
        return counts

    def count_children(self, workflow_ids: Iterable[str]) -> dict[str, int]:
        """How many child runs (``WorkflowState.parent_id``) each of ``workflow_ids`` has; ids
        without children are left out. Stores should answer it from an index of parents."""
        wanted = set(workflow_ids)
        counts: dict[str, int] = {}
        for state in self.list(WorkflowFilter()) if wanted else ():
            if state.parent_id in wanted:
                counts[state.parent_id] = counts.get(state.parent_id, 0) + 1
        return counts

    def watch(self, workflow_id: str) -> RunWatch:
        """Subscribe to the end of ``workflow_id``'s run, for waiters (``handle.result()``).

        Subscribe before reading the run, so an end that comes in between still wakes the waiter.
        The default cannot push (its watch only sleeps); a store that can tell overrides this.
        """
        return RunWatch()

    def close(self) -> None:  # noqa: B027 - optional hook: most stores hold nothing to release
        """Release connections held by the store (optional)."""

    # -- retention (optional: ``supports_purge``) ----------------------------------------------

    def purge_unsupported(self, operation: str) -> StoreError:
        """The error of a retention operation on a store that cannot find runs by end time."""
        return StoreError(
            f"the {self.backend_name} workflow store cannot find ended runs by end time "
            f"({operation}), so it cannot purge them: RETENTION and workflows_purge need a store "
            f"that lists runs (django, memory, redis, nats, dapr)")

    def purge_ended(self, before: datetime, *, limit: int = 500,
                    status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> list[str]:
        """Delete at most ``limit`` ended runs (status not ``running``) whose ``ended_at`` is
        before ``before``, oldest end first, each with its history, inbox and event waits;
        returns their workflow ids in that order (``limit <= 0``: none).

        Filters (both optional, ``None``: any): ``status``, one ended status (``completed``,
        ``failed``, ``canceled`` or ``timed_out``), and ``workflow_type``: only runs of that
        status and type are picked, and checked again in the write that deletes them. A status
        that is ``running`` or unknown raises ``InvalidInputError`` (``purge_filter``) before
        anything is read.

        Fences: the condition is checked again in the write that deletes each run, so a run that
        was resumed, reopened, or replaced by a newer run of its id after the store picked it is
        kept; an open run and a run without ``ended_at`` are never deleted. One call is one
        bounded batch: its statements touch at most ``limit`` runs.
        """
        raise self.purge_unsupported("purge_ended")

    def count_ended(self, before: datetime, *, status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> int:
        """How many runs ``purge_ended(before, status=..., workflow_type=...)`` would delete
        without a limit (nothing changes); the filters as there."""
        raise self.purge_unsupported("count_ended")

    # -- events (optional: ``supports_events``) -------------------------------------------------

    def events_unsupported(self, operation: str) -> StoreError:
        """The error of an event operation on a store that keeps no events."""
        return StoreError(
            f"the {self.backend_name} workflow store keeps no events ({operation}): events, "
            f"on_event triggers, wait_for_event and cancel_on need the django and memory stores "
            f'(BELUGA_WORKFLOWS["STORE"]["BACKEND"] = "django")')

    def add_event(self, event: Event, received_at: datetime, *,
                  triggers: list[dict[str, str]] = (), skipped: list[dict[str, str]] = ()
                  ) -> bool:
        """Store the accepted ``event`` (validated: id and ts set), not fanned out yet, with the
        runs its ``triggers`` start (``[{"workflow_type", "workflow_id"}]``) and the ``skipped``
        ones in its outcome. Inside a caller's database transaction it is part of it.

        Returns ``False`` (and stores nothing) when an event with that id exists.
        """
        raise self.events_unsupported("add_event")

    def get_event(self, event_id: str) -> EventRecord | None:
        """The event of that id with its outcome, or ``None``."""
        raise self.events_unsupported("get_event")

    def list_events(self, *, name: str | None = None, limit: int = 50, offset: int = 0
                    ) -> list[EventRecord]:
        """Events (of ``name``, if given), newest first (``received_at`` then id, descending),
        ``offset`` skipped, at most ``limit`` (``<= 0``: all)."""
        raise self.events_unsupported("list_events")

    def count_events(self, *, name: str | None = None) -> int:
        """How many events (of ``name``, if given) the store holds."""
        raise self.events_unsupported("count_events")

    def find_events(self, name: str, *, since: datetime | None,
                    after: tuple[datetime, str] | None = None,
                    match: tuple[tuple[str, Any], ...] = (), limit: int = 100
                    ) -> list[tuple[Event, datetime]]:
        """Events ``name`` received at or after ``since`` (``None``: any), oldest first
        (``received_at``, then id), after the cursor ``after`` = (received_at, id), at most
        ``limit``, each with its ``received_at``: what a waiting run reads.

        ``match`` (path, value) pairs may narrow the search (an index); they must never drop an
        event that has those values: the caller checks each event exactly.
        """
        raise self.events_unsupported("find_events")

    def unfanned_events(self, older_than: datetime, limit: int = 1000) -> list[str]:
        """Ids of events received at or before ``older_than`` and not fanned out, oldest first."""
        raise self.events_unsupported("unfanned_events")

    def record_outcome(self, event_id: str, outcome: dict[str, list],
                       fanned_out_at: datetime) -> None:
        """Add ``outcome`` to the event's (each run and skip listed once) and mark it fanned out
        (at ``fanned_out_at``, unless it was already); a missing event is not an error."""
        raise self.events_unsupported("record_outcome")

    def record_delivery(self, event_id: str, workflow_type: str, state: WorkflowState, *,
                        waits: list[EventWait] = (), admission: Admission | None = None) -> bool:
        """Start ``state``, the run of ``workflow_type`` that event ``event_id`` triggers (as
        ``create_with_waits``, ``admission`` included), and its ledger row (unique on the event
        and the type), in one write.

        Returns ``False`` when the ledger has the row (the run was started, or the event was
        skipped or grouped: ``get_delivery`` tells), changing nothing; and ``False`` when the
        admission's rate limit refuses the run: the ledger row then records the skip and its
        reason, and no run is stored.

        Raises:
            WorkflowAlreadyExistsError: ``state``'s id has an open run (nothing was written).
        """
        raise self.events_unsupported("record_delivery")

    def get_delivery(self, event_id: str, workflow_type: str) -> dict[str, str] | None:
        """The ledger row of (event, workflow type): ``{"workflow_id", "run_id", "outcome",
        "reason", "group"}`` (``outcome``: started, skipped, debounced, batched), or ``None``."""
        raise self.events_unsupported("get_delivery")

    def create_with_waits(self, state: WorkflowState, waits: list[EventWait], *,
                          admission: Admission | None = None) -> None:
        """``create(state)`` and keep ``waits`` (the run's ``cancel_on``) in the same write; with
        ``admission``, enforce it there too (``admit``).

        Raises:
            WorkflowAlreadyExistsError: a run of that id is still open.
            RateLimitExceededError: the admission's rate limit refuses the run (nothing written).
        """
        raise self.events_unsupported("create_with_waits")

    def append_with_waits(self, workflow_id: str, run_id: str, owner: str,
                          events: list[HistoryEvent], *, lease_until: datetime,
                          add_waits: list[EventWait] = (), drop_waits: tuple[int, ...] = (),
                          end: RunEnd | None = None) -> WorkflowState:
        """``append(events, end=end)`` that also keeps ``add_waits`` and forgets the run's waits
        at the operations ``drop_waits`` (with ``end``: all of the run's waits), in one write.

        Raises:
            ConflictError: ``owner`` no longer holds the lease (nothing was written).
        """
        raise self.events_unsupported("append_with_waits")

    def matching_waits(self, event: Event) -> list[EventWait]:
        """The waits on ``event.name`` whose match values are ``event``'s (by match key, one look-up
        per distinct set of match paths), waits without a match included. Their anchors and
        ``where`` are not checked (``EventWait.accepts`` does that)."""
        raise self.events_unsupported("matching_waits")

    def wake_runs(self, runs: list[tuple[str, str]], now: datetime) -> dict[str, str]:
        """Bump ``wake_seq`` and make due now each open run of ``runs`` ((workflow id, run id)),
        as ``add_signal`` does; returns the woken ones' workflow id -> queue (``""``: default)."""
        raise self.events_unsupported("wake_runs")

    # -- flow control (optional: ``supports_flow_control``) -----------------------------------
    #
    # How a store admits a run (in the write that stores it), given an ``Admission``:
    #   1. rate limit: take from its GCRA bucket (``flow.gcra``, compare-and-set); a start that
    #      does not conform is refused;
    #   2. throttle: take from its bucket; the run starts at the conforming time (``wake_at`` and
    #      ``wait_until`` then, ``wait_kind`` "throttle", ``wait_name`` ``throttled_text``);
    #   3. slots: when no run waits for any of its buckets and each has a free slot number below
    #      its limit, take one slot per bucket (in bucket order); else store the run waiting:
    #      one waiter row per bucket, ``wait_kind`` "concurrency", ``wake_at`` the deadline (or
    #      none), ``wait_name`` ``waiting_text``. The caller then runs ``promote`` for the run's
    #      buckets once its write committed.
    # The store sets those fields on the ``state`` it was given, so the caller knows the outcome.

    def flow_unsupported(self, operation: str) -> StoreError:
        """The error of a flow-control operation on a store that does not enforce it."""
        return StoreError(
            f"the {self.backend_name} workflow store does not enforce flow control ({operation}): "
            f"concurrency, throttle, rate_limit, debounce and batch need the django or memory "
            f'store (BELUGA_WORKFLOWS["STORE"]["BACKEND"] = "django")')

    def promote(self, buckets: list[Bucket], now: datetime, limit: int = 100
                ) -> list[tuple[str, str]]:
        """Give free slots of ``buckets`` to their waiting runs, in ``order_at`` order (a run
        that waits for two buckets only when both have one), at most ``limit`` runs: each is
        made due now (or at its throttled start), its ``wake_seq`` bumped, its waiter rows
        deleted. Returns the promoted runs' (workflow id, queue).
        """
        raise self.flow_unsupported("promote")

    def release_orphans(self, now: datetime, limit: int = 1000) -> list[Bucket]:
        """Free the slots and waiter rows of runs that are no longer open (deleted, replaced,
        ended without freeing: a declaration removed by a deploy), at most ``limit``; returns
        the buckets whose slots were freed."""
        raise self.flow_unsupported("release_orphans")

    def waiting_buckets(self, limit: int = 1000) -> list[Bucket]:
        """Buckets that runs wait for (what the sweep's promotion pass looks at)."""
        raise self.flow_unsupported("waiting_buckets")

    def flow_usage(self, workflow_type: str | None = None) -> list[dict[str, Any]]:
        """Per bucket with slots in use or waiters: ``{"workflow_type", "scope", "key",
        "in_use", "limit", "waiting"}``, sorted by type, scope and key."""
        raise self.flow_unsupported("flow_usage")

    def group_event(self, event: Event, received_at: datetime, workflow_type: str, kind: str,
                    key: str, *, period: float, timeout: float | None, max_size: int
                    ) -> dict[str, Any]:
        """Put ``event`` in the open ``kind`` ("debounce" / "batch") group of (workflow type,
        key), with its ledger row (unique: a second call changes nothing and returns what the
        first did), in one write.

        A debounce group is due ``period`` after its last event, at most ``timeout`` after its
        first, and keeps the newest event by ``ts`` (an older one is recorded skipped, as is the
        event it replaces); a batch group is due ``period`` after its first event, or now once
        it holds ``max_size``. A group past due when an event comes is closed (it fires as it
        is) and the event opens a new one.

        Returns ``{"outcome", "group", "due_at", "reason"}``.
        """
        raise self.flow_unsupported("group_event")

    def due_groups(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Groups due by ``now`` (or closed), soonest first: ``{"id", "workflow_type", "kind",
        "key", "version", "events": [Event...]}`` (debounce: the newest; batch: all, in the
        order they were received)."""
        raise self.flow_unsupported("due_groups")

    def next_group_due(self) -> datetime | None:
        """When the soonest open group is due (``None``: there is none)."""
        raise self.flow_unsupported("next_group_due")

    def fire_group(self, group: dict[str, Any], state: WorkflowState, *,
                   waits: list[EventWait] = (), admission: Admission | None = None) -> bool:
        """Start ``state`` (the group's run, as ``create_with_waits``) and delete the group, in
        one write, only if the group still has the ``version`` read by ``due_groups``; its
        events' ledger rows then name the run. Returns ``False`` (nothing written) otherwise.

        Raises:
            WorkflowAlreadyExistsError: ``state``'s id has an open run (nothing was written).
        """
        raise self.flow_unsupported("fire_group")
