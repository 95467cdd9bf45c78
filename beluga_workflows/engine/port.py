"""``ActivationPort``: what a ``WorkflowContext`` needs from the activation running it, and nothing
more (the runner's ``Activation`` implements it), with the run's identity and limits it hands over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from .retry import RetryPolicy

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ._control import ContinueAsNew, Suspend
    from .errors import WorkflowError
    from .events import Event, EventWait, SendResult
    from .types import HistoryEvent, Signal

__all__ = ["ActivationPort", "Limits", "RunInfo"]


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Who the run is; fixed for an activation. ``started_at`` (the run's creation) and ``input``
    are what ``wait_for_event`` anchors and matches against."""

    workflow_id: str
    run_id: str
    workflow_type: str
    started_at: datetime | None = None
    input: Any = None

    def span_attributes(self, **more: str) -> dict[str, str]:
        """The run's attributes for a tracing span (``Hooks.trace``), and ``more``."""
        return {"workflow.id": self.workflow_id, "workflow.type": self.workflow_type,
                "workflow.run_id": self.run_id, **more}


@dataclass(frozen=True, slots=True)
class Limits:
    """What the run's values may be: the largest encoded payload, and the activities' default retry."""

    max_payload: int | None
    default_retry: RetryPolicy
    # Seconds after which a started activity without an outcome is handed out again, and after
    # which a parent waiting for a child looks at the child's state itself.
    redispatch: float = 300.0
    child_poll: float = 300.0


class ActivationPort(Protocol):
    """What a ``WorkflowContext`` needs from the activation running it, and nothing more.

    Operations are numbered by the context (1, 2, 3... in call order); the port keeps the history
    by that number and writes through the store. The runner's ``Activation`` implements it.
    """

    # -- who and how much ------------------------------------------------------------------------

    @property
    def info(self) -> RunInfo:
        """The run's identity."""
        ...

    @property
    def limits(self) -> Limits:
        """The run's limits."""
        ...

    # -- the history -----------------------------------------------------------------------------

    def recorded(self, op: int) -> list[HistoryEvent] | None:
        """The events the history holds for operation ``op``, in order (empty or ``None``: none)."""
        ...

    def record(self, op: int, events: list[HistoryEvent], *, consume: Signal | None = None,
               add_wait: EventWait | None = None, drop_wait: bool = False) -> None:
        """Durably append ``events`` (numbered by the port) as operation ``op`` before returning.

        ``consume``: a signal from ``next_signal``, taken off the inbox in the same store write,
        so it is consumed exactly once. ``add_wait``: an event wait the store keeps from the same
        write on (senders find the run by it); ``drop_wait``: the store forgets operation ``op``'s
        event wait in the same write.

        Raises:
            StoreError: an event wait on a store that keeps no events.
            BaseException: the activation's control flow (lease lost, store down): let it pass.
        """
        ...

    def record_soon(self, op: int, events: list[HistoryEvent], *,
                    consume: Signal | None = None) -> None:
        """Record ``events`` as operation ``op`` (and consume ``consume``) in the port's next
        write instead of one of their own: ``recorded(op)`` has them at once, and the port
        writes them, in order, before anything else it writes and before the pass suspends or
        ends. A burst of started activities, or of outcomes settled from the inbox, then costs
        one write.

        Only for records that may be lost with the pass (its replay makes them again): nothing
        may act on them before they are durable (``dispatch_activity`` waits for it).
        """
        ...

    def find_event(self, wait: EventWait) -> Event | None:
        """The earliest event the store received that ``wait`` accepts and this run has not
        consumed yet (the run's history says which it has), or ``None``.

        Raises:
            BaseException: the activation's control flow (store down): let it pass.
        """
        ...

    def send_event(self, event: Event) -> SendResult:
        """Send ``event`` as the executor's ``send_event`` does (validated, stored, fanned out).

        Raises:
            InvalidInputError: a bad event. StoreError: the store keeps no events.
            BaseException: the activation's control flow (store down): let it pass.
        """
        ...

    def next_signal(self, name: str) -> Signal | None:
        """The oldest signal ``name`` in the run's inbox not consumed yet, or ``None``."""
        ...

    # -- going live ------------------------------------------------------------------------------

    def go_live(self, op: int) -> None:
        """Operation ``op`` is past the history and about to do new work: allow it, or stop it.

        Raises:
            WorkflowCanceledError: a cancel was requested; it is now recorded at ``op``.
            BaseException: a read-only replay reached the present, or the run passed its deadline.
        """
        ...

    def cancel_requested_at(self, op: int) -> bool:
        """Whether a cancel was requested as the run stood at operation ``op`` (replay-safe)."""
        ...

    def now(self) -> datetime:
        """The current time (aware), from the activation's clock."""
        ...

    def fire(self, hook: str, *args: Any) -> None:
        """Fire lifecycle hook ``hook`` (a ``Hooks`` field name); what the hook raises is logged."""
        ...

    def trace(self, name: str, attributes: dict[str, Any],
              parent: dict[str, str] | None = None) -> AbstractContextManager[Any]:
        """The hooks' tracing span ``name`` around a piece of work (``Hooks.trace``)."""
        ...

    # -- stopping --------------------------------------------------------------------------------

    def wait(self, op: int, until: datetime, kind: str, name: str) -> None:
        """Return once ``until`` has passed (operation ``op`` waits, of ``kind``, for ``name``).

        The port goes live first (``go_live``); it may wait in place (a short retry backoff) or
        suspend the run.

        Raises:
            Suspend: the run suspends until ``until``.
        """
        ...

    def interrupt(self, stop: Suspend | ContinueAsNew | WorkflowError) -> BaseException:
        """Remember that the run must stop with ``stop`` and return it, for the caller to raise.

        The runner acts on it even if workflow code swallows it; a divergence outlives any later
        suspension (the run fails).
        """
        ...

    @property
    def interrupted(self) -> BaseException | None:
        """The stop ``interrupt`` remembered in this pass, if any: every later operation raises it
        again, so workflow code that swallows a stop goes no further."""
        ...

    # -- parallel steps ----------------------------------------------------------------------------

    def dispatch_activity(self, op: int, queue: str | None) -> None:
        """Hand the started activity of operation ``op`` to a worker, on ``queue`` (``None``: the
        run's), once its ``activity_scheduled`` event is durable (held by ``record_soon``: after
        the port's next write).

        Raises:
            StoreError: this runtime cannot run started activities.
        """
        ...

    def start_child(self, op: int, workflow_type: str, child_id: str, input: Any,
                    timeout: float | None) -> str:
        """Start (or, after a crash, find) the child run of operation ``op``; its run id.

        Raises:
            WorkflowAlreadyExistsError: ``child_id`` is an open run of another parent.
            InvalidInputError: a bad id, input or timeout.
        """
        ...

    def child_state(self, child_id: str) -> Any:
        """The child run's state as the store has it now (no history), or ``None``."""
        ...

    # -- queries ---------------------------------------------------------------------------------

    def add_query_handler(self, name: str, fn: Callable[[], Any]) -> None:
        """Answer query ``name`` with ``fn()`` (a later handler of that name replaces it)."""
        ...
