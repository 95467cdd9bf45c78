"""Rows of the ``django`` store's tables to and from the engine's types (``beluga_workflows.engine.types``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ... import models
from ...engine.types import EventType, HistoryEvent, Signal, WorkflowState, WorkflowStatus
from ..base import RunEnd

__all__ = ["end_values", "event_row", "event_values", "from_event_row", "from_signal_row",
           "run_row", "state_from_values"]


def state_from_values(values: dict[str, Any], *, history: Iterable[HistoryEvent] = (),
                      signals: Iterable[Signal] = ()) -> WorkflowState:
    """A run from its column values (by attribute name); a missing input/result/error is None."""
    return WorkflowState(
        workflow_id=values["workflow_id"],
        run_id=values["run_id"],
        workflow_type=values["workflow_type"],
        status=WorkflowStatus(values["status"]),
        input=values.get("input"),
        result=values.get("result"),
        error=values.get("error"),
        history=list(history),
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        ended_at=values["ended_at"],
        deadline=values["deadline"],
        queue=values["queue"] or None,
        lease_owner=values["lease_owner"],
        lease_expires_at=values["lease_expires_at"],
        version=values["version"],
        wake_seq=values["wake_seq"],
        wake_at=values["wake_at"],
        wait_kind=values["wait_kind"],
        wait_name=values["wait_name"],
        wait_until=values["wait_until"],
        cancel_requested=values["cancel_requested"],
        signals=list(signals),
        parent_id=values["parent_id"],
    )


def run_row(state: WorkflowState, version: int) -> models.WorkflowState:
    """The row that stores ``state`` (without its history and inbox) at ``version``."""
    return models.WorkflowState(
        run_id=state.run_id,
        workflow_id=state.workflow_id,
        workflow_type=state.workflow_type,
        status=WorkflowStatus(state.status).value,
        input=state.input,
        result=state.result,
        error=state.error,
        created_at=state.created_at,
        updated_at=state.updated_at,
        ended_at=state.ended_at,
        deadline=state.deadline,
        queue=state.queue or "",
        lease_owner=state.lease_owner or "",
        lease_expires_at=state.lease_expires_at,
        version=version,
        wake_seq=state.wake_seq,
        wake_at=state.wake_at,
        wait_kind=state.wait_kind or "",
        wait_name=state.wait_name or "",
        wait_until=state.wait_until,
        cancel_requested=state.cancel_requested,
        parent_id=state.parent_id or "",
        last_event_id=max((e.id for e in state.history), default=0),
    )


def from_event_row(row: models.HistoryEvent) -> HistoryEvent:
    """The engine's event of a ``HistoryEvent`` row (its ``seq`` is the event's ``id``)."""
    return HistoryEvent(
        id=row.seq, type=EventType(row.type), timestamp=row.timestamp,
        activity_name=row.activity_name, input=row.input, result=row.result, error=row.error,
        signal_name=row.signal_name, signal_payload=row.signal_payload, duration=row.duration,
        op=row.op, attempt=row.attempt, fire_at=row.fire_at,
    )


def event_values(event: HistoryEvent) -> dict[str, Any]:
    """The column values (by field name, without ``run``) of one history event."""
    return {
        "seq": event.id, "type": EventType(event.type).value, "timestamp": event.timestamp,
        "activity_name": event.activity_name or "", "input": event.input, "result": event.result,
        "error": event.error, "signal_name": event.signal_name or "",
        "signal_payload": event.signal_payload, "duration": event.duration, "op": event.op,
        "attempt": event.attempt, "fire_at": event.fire_at,
    }


def from_signal_row(row: models.PendingSignal) -> Signal:
    """The engine's signal of an inbox row (its auto-increment ``id`` is the signal's ``id``)."""
    return Signal(name=row.name, payload=row.payload, sent_at=row.sent_at,
                  sender_id=row.sender_id, id=row.id)


def end_values(end: RunEnd, now: Any) -> dict[str, Any]:
    """What ending a run writes (``now`` may be an expression: the old ``updated_at``)."""
    return {
        "status": WorkflowStatus(end["status"]).value, "result": end["result"],
        "error": end["error"], "ended_at": now, "lease_owner": "", "lease_expires_at": None,
        "wake_at": None, "wait_kind": "", "wait_name": "", "wait_until": None,
    }


def event_row(run_id: str, event: HistoryEvent) -> models.HistoryEvent:
    """The ``HistoryEvent`` row that stores ``event`` of run ``run_id``."""
    return models.HistoryEvent(run_id=run_id, **event_values(event))

