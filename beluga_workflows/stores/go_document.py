"""A run as one JSON document in the layout of the Go Beluga stores, so both can share a bucket.

The Go package (``github.com/lookatitude/beluga-ai/workflow``) marshals its ``WorkflowState`` with
``encoding/json`` and no struct tags: the keys are the Go field names, times are RFC 3339 strings,
``Duration`` is an integer of nanoseconds and ``Error`` is a plain string::

    {"WorkflowID": "order-1", "RunID": "…", "Status": "running", "Input": …, "Result": …,
     "Error": "", "History": [{"ID": 1, "Type": "workflow_started", "Timestamp": "…Z",
     "ActivityName": "", "Input": …, "Result": …, "Error": "", "SignalName": "",
     "SignalPayload": null, "Duration": 0}], "CreatedAt": "…Z", "UpdatedAt": "…Z"}

We write exactly those keys, and keep what Go has no field for under a ``"beluga"`` key (on the
run and, when needed, on an event), which Go's decoder ignores: the workflow type, lease, version,
wake-up and wait, the signal inbox, structured errors, an event's operation, attempt and fire time.
A document written by Go (no ``"beluga"`` key) reads as a run with no lease, no inbox and nothing
due; keys are matched case-insensitively, as Go's decoder does.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from ..engine.types import EventType, HistoryEvent, Signal, WorkflowState, WorkflowStatus

__all__ = ["EXTRA", "decode_state", "encode_state", "format_time", "parse_time"]

EXTRA = "beluga"  # the key Go ignores, where our own fields live
FORMAT = 1  # version of what is under EXTRA
_GO_ZERO_YEAR = 1  # Go's zero time.Time marshals as "0001-01-01T00:00:00Z"


def format_time(value: datetime | None) -> str | None:
    """``value`` as Go's ``time.Time`` marshals it: RFC 3339 in UTC, trailing zero digits dropped."""
    if value is None:
        return None
    utc = value.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_time(value: Any) -> datetime | None:
    """A time written by Go or by us (any RFC 3339 offset, up to nanoseconds) as aware UTC.

    ``None``, ``""`` and Go's zero time are ``None``.
    """
    if value is None or value == "":
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    parsed = parsed.astimezone(timezone.utc)
    return None if parsed.year == _GO_ZERO_YEAR else parsed


def _nanoseconds(seconds: float | None) -> int:
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        return 0
    return round(seconds * 1_000_000_000)


def _error_text(error: dict | None) -> str:
    """A structured error as the one string Go keeps."""
    if not error:
        return ""
    kind, message = error.get("type") or "", error.get("message") or ""
    return f"{kind}: {message}" if kind and message else kind or message


def _error_from(text: Any, structured: Any) -> dict | None:
    if isinstance(structured, dict):
        return structured
    if isinstance(text, str) and text:
        return {"type": "Error", "message": text, "traceback": ""}
    return None


class _Fields:
    """Case-insensitive access to a JSON object's keys, as Go's decoder matches field names."""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.folded = {k.lower(): k for k in data} if isinstance(data, dict) else {}

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.data:
            return self.data[name]
        key = self.folded.get(name.lower())
        return self.data[key] if key is not None else default


# -- events -------------------------------------------------------------------------------------

def _encode_event(event: HistoryEvent) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "ID": event.id,
        "Type": event.type.value,
        "Timestamp": format_time(event.timestamp),
        "ActivityName": event.activity_name,
        "Input": event.input,
        "Result": event.result,
        "Error": _error_text(event.error),
        "SignalName": event.signal_name,
        "SignalPayload": event.signal_payload,
        "Duration": _nanoseconds(event.duration),
    }
    extra: dict[str, Any] = {}
    if event.op:
        extra["op"] = event.op
    if event.attempt:
        extra["attempt"] = event.attempt
    if event.fire_at is not None:
        extra["fire_at"] = format_time(event.fire_at)
    if event.error:
        extra["error"] = event.error
    # Nanoseconds hold most durations exactly; keep ours when they do not (or when it is 0.0).
    ns = doc["Duration"]
    if event.duration is not None and (ns == 0 or ns / 1_000_000_000 != event.duration):
        extra["duration"] = event.duration
    if extra:
        doc[EXTRA] = extra
    return doc


def _decode_event(data: dict) -> HistoryEvent:
    fields = _Fields(data)
    extra = fields.get(EXTRA) or {}
    if "duration" in extra:
        duration = extra["duration"]
    else:
        ns = fields.get("Duration") or 0
        duration = ns / 1_000_000_000 if ns else None
    return HistoryEvent(
        id=int(fields.get("ID") or 0),
        type=EventType(fields.get("Type")),
        timestamp=parse_time(fields.get("Timestamp")) or datetime.now(timezone.utc),
        activity_name=fields.get("ActivityName") or "",
        input=fields.get("Input"),
        result=fields.get("Result"),
        error=_error_from(fields.get("Error"), extra.get("error")),
        signal_name=fields.get("SignalName") or "",
        signal_payload=fields.get("SignalPayload"),
        duration=duration,
        op=int(extra.get("op") or 0),
        attempt=int(extra.get("attempt") or 0),
        fire_at=parse_time(extra.get("fire_at")),
    )


# -- runs ---------------------------------------------------------------------------------------

def encode_state(state: WorkflowState, *, signal_seq: int = 0) -> dict[str, Any]:
    """The document of ``state``. ``signal_seq`` is the last inbox id the run has handed out."""
    return {
        "WorkflowID": state.workflow_id,
        "RunID": state.run_id,
        "Status": state.status.value,
        "Input": state.input,
        "Result": state.result,
        "Error": _error_text(state.error),
        "History": [_encode_event(e) for e in state.history],
        "CreatedAt": format_time(state.created_at),
        "UpdatedAt": format_time(state.updated_at),
        EXTRA: {
            "format": FORMAT,
            "workflow_type": state.workflow_type,
            "version": state.version,
            "error": state.error,
            "ended_at": format_time(state.ended_at),
            "deadline": format_time(state.deadline),
            "queue": state.queue,
            "lease_owner": state.lease_owner,
            "lease_expires_at": format_time(state.lease_expires_at),
            "wake_seq": state.wake_seq,
            "wake_at": format_time(state.wake_at),
            "wait_kind": state.wait_kind,
            "wait_name": state.wait_name,
            "wait_until": format_time(state.wait_until),
            "cancel_requested": state.cancel_requested,
            "parent_id": state.parent_id,
            "signal_seq": signal_seq,
            "signals": [
                {"id": s.id, "name": s.name, "payload": s.payload,
                 "sent_at": format_time(s.sent_at), "sender_id": s.sender_id}
                for s in state.signals
            ],
        },
    }


def decode_state(doc: dict, *, with_history: bool = True) -> tuple[WorkflowState, int]:
    """The run a document holds, and the last inbox id it handed out.

    Raises:
        ValueError / TypeError / KeyError: the document is not a run in this layout.
    """
    fields = _Fields(doc)
    extra = fields.get(EXTRA) or {}
    if not isinstance(extra, dict):
        raise ValueError(f"{EXTRA!r} is not an object")
    created = parse_time(fields.get("CreatedAt"))
    updated = parse_time(fields.get("UpdatedAt")) or created or datetime.now(timezone.utc)
    signals = [
        Signal(name=s["name"], payload=s.get("payload"), sent_at=parse_time(s.get("sent_at")),
               sender_id=s.get("sender_id") or "", id=s.get("id"))
        for s in extra.get("signals") or []
    ]
    history = (fields.get("History") or []) if with_history else []
    state = WorkflowState(
        workflow_id=fields.get("WorkflowID"),
        run_id=fields.get("RunID") or "",
        workflow_type=extra.get("workflow_type") or "",
        status=WorkflowStatus(fields.get("Status") or WorkflowStatus.RUNNING.value),
        input=fields.get("Input"),
        result=fields.get("Result"),
        error=_error_from(fields.get("Error"), extra.get("error")),
        history=[_decode_event(e) for e in history],
        created_at=created or updated,
        updated_at=updated,
        ended_at=parse_time(extra.get("ended_at")),
        deadline=parse_time(extra.get("deadline")),
        queue=extra.get("queue"),
        lease_owner=extra.get("lease_owner") or "",
        lease_expires_at=parse_time(extra.get("lease_expires_at")),
        version=int(extra.get("version") or 0),
        wake_seq=int(extra.get("wake_seq") or 0),
        wake_at=parse_time(extra.get("wake_at")),
        wait_kind=extra.get("wait_kind") or "",
        wait_name=extra.get("wait_name") or "",
        wait_until=parse_time(extra.get("wait_until")),
        cancel_requested=bool(extra.get("cancel_requested")),
        signals=signals,
        parent_id=extra.get("parent_id") or "",
    )
    if not isinstance(state.workflow_id, str) or not state.workflow_id:
        raise ValueError("the document has no WorkflowID")
    seq = max([int(extra.get("signal_seq") or 0)] + [s.id for s in signals if s.id is not None])
    return state, seq
