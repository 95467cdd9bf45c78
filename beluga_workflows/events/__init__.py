"""Events (API.md §8): ``send_event`` from anywhere in a Django site, through the configured executor.

The values (``Event``, ``SendResult``, ``Trigger``, ``CancelOn``, ``EventRecord``) are the engine's
(``beluga_workflows.engine.events``); the fan-out and why no event is missed are in
``beluga_workflows.engine.fanout``; the runtimes say where a fan-out runs (a Celery task, a
thread). The tables are ``beluga_workflows.models.Event``, ``EventDelivery`` and ``EventWait``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..engine.events import CancelOn, Event, EventRecord, SendResult, Trigger
from ..runtimes import get_executor

__all__ = ["CancelOn", "Event", "EventRecord", "SendResult", "Trigger", "send_event"]


def send_event(name: str, data: dict[str, Any] | None = None, *, id: str | None = None,
               ts: datetime | None = None) -> SendResult:
    """Send an event: ``get_executor().send_event(Event(name, data, id, ts))``.

    Every workflow triggered by ``name`` starts one run (listed in ``SendResult.started``), runs
    waiting for it wake and runs it cancels are canceled, by the runtime's fan-out. Inside
    ``transaction.atomic()`` it takes effect once the transaction commits. A second event with
    an ``id`` already accepted is a duplicate and does nothing.

    Raises:
        InvalidInputError: a bad name, id, data or ts (nothing is stored).
        StoreError: the configured store keeps no events, or it failed.
    """
    return get_executor().send_event(Event(name=name, data=data, id=id, ts=ts))
