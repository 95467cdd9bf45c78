"""Control flow between the context and the runner: exceptions that unwind workflow code.

None of them is an error. Each derives from ``BaseException``, so a workflow's ``except
Exception:`` cannot swallow it by accident (DBOS does the same with its cancellation). Each is
caught where the table says (a read-only query replay also stops quietly at a ``Suspend`` or a
``TimedOut``)::

    raised by                                   caught by
    Suspend      WorkflowContext, Activation    Activation._pass: release the run until its wake-up
                 (a wait that cannot end now)
    TimedOut     Activation (deadline passed)   Activation._pass: end the run ``timed_out``
    StopReplay   Activation, read-only replay   query_workflow: the replay reached the present
    ContinueAs-  WorkflowContext                Activation._pass: end the run and start the
    New          (``ctx.continue_as_new``)      next one in one store write
    LeaseLost    Activation (a write lost CAS)  run_workflow: leave the run to its new owner
    StoreDown    Activation (a write failed)    run_workflow: abandon until the lease expires

Workflow code that catches ``BaseException`` anyway cannot go further: the activation remembers a
suspension (``ActivationPort.interrupt``) and every later context call raises it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import HistoryEvent

__all__ = ["ContinueAsNew", "LeaseLost", "StopReplay", "StoreDown", "Suspend", "TimedOut"]


class Suspend(BaseException):  # noqa: N818 - control flow, not an error
    """The run must wait: for a signal, a timer, a retry backoff or a person.

    Raised by ``WorkflowContext`` and by ``ActivationPort.wait`` (both through
    ``ActivationPort.interrupt``) when a wait cannot finish now; caught by ``Activation._pass``,
    which records what the run waits for and releases it.

    Attributes:
        kind: the wait kind recorded on the run (``"signal"``, ``"timer"``, ``"retry"``, ``"human"``).
        name: what it waits for (a signal name, ``"sleep"``, an activity name, a request id).
        until: when the wait ends by itself (a timer, a timeout), or ``None``.
        record: ``(op, events)`` that the suspension writes in the same store write, or ``None``.
    """

    def __init__(self, kind: str, name: str, until: datetime | None,
                 record: tuple[int, list[HistoryEvent]] | None = None):
        super().__init__(kind, name, until)
        self.kind, self.name, self.until = kind, name, until
        self.record = record


class ContinueAsNew(BaseException):  # noqa: N818
    """The run ends here and the next run of its workflow and id starts with ``input``.

    Raised by ``ctx.continue_as_new`` (through ``ActivationPort.interrupt``); caught by
    ``Activation._pass``, which writes both in one store write (``store.continue_as_new``).
    """

    def __init__(self, input: object):
        super().__init__("continue as new")
        self.input = input


class TimedOut(BaseException):  # noqa: N818
    """The run passed its deadline.

    Raised by the activation before a pass over the workflow code and before any new work
    (``ActivationPort.go_live``); caught by ``Activation._pass``, which ends the run ``timed_out``.
    """


class StopReplay(BaseException):  # noqa: N818
    """A read-only (query) replay reached work that is not recorded yet.

    Raised by ``ActivationPort.go_live`` when the activation is read-only; caught by
    ``query_workflow``, which then asks the query handlers registered so far.
    """


class LeaseLost(BaseException):  # noqa: N818
    """Another worker owns the run now: a checkpoint or a suspension lost its compare-and-set.

    Raised by the activation's store writes (``ConflictError``); caught by ``run_workflow``, which
    reports ``lease_lost`` and leaves the run alone.
    """


class StoreDown(BaseException):  # noqa: N818
    """A checkpoint failed for a reason other than a lost lease (database down, network).

    Raised by the activation's store writes, with the store's exception as ``__cause__``; caught
    by ``run_workflow``, which abandons the activation rather than failing the run: the run keeps
    its recorded steps and is picked up again once its lease expires, when the store may be back.
    """
