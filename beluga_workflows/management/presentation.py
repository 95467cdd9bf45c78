"""Workflows and history events as the commands print them in JSON: the REST API's fields.

``workflow_json``, ``event_json`` and ``schedule_json`` give what the API's ``WorkflowSerializer``,
``HistoryEventSerializer`` and ``ScheduleSerializer`` give (same keys, same order, datetimes in ISO 8601 in the current time
zone with ``Z`` for UTC), without Django REST framework, so the commands work on a site installed
without the ``api`` extra. A test checks both agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.utils import timezone

from ..engine.types import HistoryEvent, WorkflowState

__all__ = ["event_json", "schedule_json", "workflow_json"]


def workflow_json(state: WorkflowState) -> dict[str, Any]:
    """One run, as ``GET /workflows/{id}/`` presents it."""
    return {
        "id": state.workflow_id,
        "run_id": state.run_id,
        "workflow_type": state.workflow_type,
        "status": state.status.value,
        "input": state.input,
        "result": state.result,
        "error": state.error,
        "created_at": _datetime(state.created_at),
        "updated_at": _datetime(state.updated_at),
        "ended_at": _datetime(state.ended_at),
        "deadline": _datetime(state.deadline),
        "duration": state.duration,
        "cancel_requested": bool(state.cancel_requested),
        "parent_id": state.parent_id,
        "waiting_for": _waiting_for(state),
    }


def event_json(event: HistoryEvent) -> dict[str, Any]:
    """One history event, as ``GET /workflows/{id}/history/`` presents it."""
    return {
        "id": event.id,
        "type": event.type.value,
        "timestamp": _datetime(event.timestamp),
        "activity_name": event.activity_name,
        "input": event.input,
        "result": event.result,
        "error": event.error,
        "signal_name": event.signal_name,
        "signal_payload": event.signal_payload,
        "duration": event.duration,
        "attempt": event.attempt,
        "op": event.op,
        "fire_at": _datetime(event.fire_at),
    }


def schedule_json(row: Any) -> dict[str, Any]:
    """One schedule (a ``Schedule`` row), as ``GET /schedules/{id}/`` presents it."""
    from ..schedules import schedule_state

    return {
        "id": row.id,
        "workflow_type": row.workflow_type,
        "cron": row.cron,
        "timezone": row.timezone,
        "input": row.input,
        "overlap": row.overlap,
        "catch_up": bool(row.catch_up),
        "paused": bool(row.paused),
        "declared": bool(row.declared),
        "state": schedule_state(row),
        "next_fire_at": _datetime(row.next_fire_at),
        "last_fire_at": _datetime(row.last_fire_at),
        "last_workflow_id": row.last_workflow_id,
        "last_outcome": row.last_outcome,
        "last_note": row.last_note,
        "created_at": _datetime(row.created_at),
        "updated_at": _datetime(row.updated_at),
    }


def _waiting_for(state: WorkflowState) -> dict[str, Any] | None:
    if not state.is_open or not state.wait_kind:
        return None
    return {"kind": state.wait_kind, "name": state.wait_name, "until": _datetime(state.wait_until)}


def _datetime(value: dt.datetime | None) -> str | None:
    """ISO 8601 in the current time zone (naive UTC without ``USE_TZ``), ``Z`` for UTC."""
    if value is None:
        return None
    if settings.USE_TZ:
        zone = timezone.get_current_timezone()
        value = value.astimezone(zone) if timezone.is_aware(value) else timezone.make_aware(value, zone)
    elif timezone.is_aware(value):
        value = timezone.make_naive(value, dt.timezone.utc)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
