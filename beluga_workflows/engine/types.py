"""The value types of beluga_workflows: statuses, events, states, options, signals, filters.

Plain dataclasses with no Django dependency. Datetimes are timezone-aware (UTC); durations are
accepted as ``timedelta`` or seconds and kept as float seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any

# MAX_DURATION_SECONDS is re-exported: api.fields and the workflows_start command import it here.
from .durations import MAX_DURATION_SECONDS, parse_duration  # noqa: F401
from .errors import InvalidInputError

__all__ = [
    "EventType",
    "HistoryEvent",
    "RunEnd",
    "Signal",
    "WorkflowFilter",
    "WorkflowOptions",
    "WorkflowState",
    "WorkflowStatus",
    "to_seconds",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def to_seconds(value: timedelta | int | float | str | None, what: str = "duration"
               ) -> float | None:
    """Normalise a duration (``timedelta``, seconds or ``"30s"``) to float seconds.

    The rules are ``durations.parse_duration``'s.

    Raises:
        InvalidInputError: for anything else, a bad string, a negative value or NaN/infinity.
    """
    return parse_duration(value, what)


class WorkflowStatus(str, enum.Enum):
    """Where a run stands. Only ``RUNNING`` is open; the others are final."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"

    def __str__(self) -> str:
        return self.value

    @property
    def is_open(self) -> bool:
        """``True`` for ``RUNNING``, the only status a run can leave."""
        return self is WorkflowStatus.RUNNING


class EventType(str, enum.Enum):
    """The kinds of history events."""

    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"
    WORKFLOW_CANCELED = "workflow_canceled"
    WORKFLOW_TIMED_OUT = "workflow_timed_out"
    ACTIVITY_STARTED = "activity_started"
    ACTIVITY_COMPLETED = "activity_completed"
    ACTIVITY_FAILED = "activity_failed"
    SIGNAL_WAIT_STARTED = "signal_wait_started"
    SIGNAL_RECEIVED = "signal_received"
    SIGNAL_TIMED_OUT = "signal_timed_out"
    TIMER_STARTED = "timer_started"
    TIMER_FIRED = "timer_fired"
    SIDE_EFFECT_RECORDED = "side_effect_recorded"
    CANCEL_REQUESTED = "cancel_requested"
    # ctx.wait_for_event: the wait (its match, where and anchor in ``input``), the event it
    # consumed (``result``: the event's dict) or its timeout; ctx.send_event: the event sent.
    EVENT_WAIT_STARTED = "event_wait_started"
    EVENT_RECEIVED = "event_received"
    EVENT_TIMED_OUT = "event_timed_out"
    EVENT_SENT = "event_sent"
    # ctx.start_activity: the activity handed to a worker (its input and options in ``input``,
    # ``fire_at`` when to hand it out again if no outcome came); its attempts and outcome are
    # the usual activity events of the same operation. ctx.start_child: the child run started
    # (``signal_name`` its workflow id, ``result`` its run id) and how it ended.
    ACTIVITY_SCHEDULED = "activity_scheduled"
    CHILD_WORKFLOW_STARTED = "child_workflow_started"
    CHILD_WORKFLOW_COMPLETED = "child_workflow_completed"
    CHILD_WORKFLOW_FAILED = "child_workflow_failed"

    def __str__(self) -> str:
        return self.value


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass
class HistoryEvent:
    """One recorded event of a run.

    ``id`` is the 1-based position in the run's history. ``op`` is the workflow-code operation the
    event belongs to (0 for workflow-level events); replay matches operations by it. ``duration`` is
    in seconds. ``fire_at`` is when a timer, a signal wait's timeout or an activity retry is due.
    """

    id: int
    type: EventType
    timestamp: datetime = field(default_factory=utcnow)
    activity_name: str = ""
    input: Any = None
    result: Any = None
    error: dict | None = None
    signal_name: str = ""
    signal_payload: Any = None
    duration: float | None = None
    op: int = 0
    attempt: int = 0
    fire_at: datetime | None = None

    def __post_init__(self) -> None:
        self.type = EventType(self.type)

    @property
    def name(self) -> str:
        """The activity, signal or marker name this event is about."""
        return self.activity_name or self.signal_name

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (datetimes as ISO strings); ``from_dict`` reads it back."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["type"] = self.type.value
        data["timestamp"] = _iso(self.timestamp)
        data["fire_at"] = _iso(self.fire_at)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEvent:
        """An event from ``to_dict``'s data; unknown keys are ignored (newer writers).

        Raises:
            ValueError: an unknown event type or a malformed timestamp.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["timestamp"] = _dt(values.get("timestamp")) or utcnow()
        values["fire_at"] = _dt(values.get("fire_at"))
        return cls(**values)


@dataclass
class Signal:
    """A message to a run. ``id`` is set by the store once the signal is accepted."""

    name: str
    payload: Any = None
    sent_at: datetime | None = None
    sender_id: str = ""
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The signal as JSON-ready data; ``from_dict`` reads it back."""
        return {
            "id": self.id,
            "name": self.name,
            "payload": self.payload,
            "sent_at": _iso(self.sent_at),
            "sender_id": self.sender_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signal:
        """A signal from ``to_dict``'s data.

        Raises:
            KeyError: the data has no ``name``.
        """
        return cls(
            name=data["name"],
            payload=data.get("payload"),
            sent_at=_dt(data.get("sent_at")),
            sender_id=data.get("sender_id") or "",
            id=data.get("id"),
        )


@dataclass
class WorkflowOptions:
    """How to start a run.

    Attributes:
        id: the workflow id; a UUID-based one is generated when omitted.
        input: the workflow's JSON-serialisable input.
        timeout: the run's deadline from its start (timedelta or seconds); past it, ``timed_out``.
        queue: the Celery queue for this run's tasks (``None``: the configured default).
        priority: seconds (-600..600) by which the run moves ahead among the runs waiting for the
            same concurrency slots; overrides the workflow's ``priority`` expression.
    """

    id: str | None = None
    input: Any = None
    timeout: timedelta | int | float | None = None
    queue: str | None = None
    priority: int | None = None


@dataclass
class WorkflowFilter:
    """What ``store.list`` returns: newest first, optionally by status/type, ``limit <= 0`` = all.

    Attributes:
        workflow_id_prefix: only ids starting with this text (case-sensitive; an exact id is its
            own prefix). Stores should answer it from their id index (a range scan), not a scan.
        wait_kind: only open runs suspended on this kind of wait (``"signal"``, ``"timer"``,
            ``"retry"``, ``"human"``...), as ``WorkflowState.wait_kind`` records it.
        parent_id: only the child runs of the run with this workflow id
            (``WorkflowState.parent_id``).
    """

    status: WorkflowStatus | str | None = None
    limit: int = 0
    workflow_type: str | None = None
    offset: int = 0
    workflow_id_prefix: str | None = None
    wait_kind: str | None = None
    parent_id: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status != "":
            try:
                self.status = WorkflowStatus(self.status)
            except ValueError:
                allowed = ", ".join(s.value for s in WorkflowStatus)
                raise InvalidInputError(
                    f"unknown status {self.status!r}; expected one of: {allowed}"
                ) from None
        else:
            self.status = None


@dataclass
class WorkflowState:
    """One run of a workflow, as the store keeps it.

    Besides the public fields (id, type, status, input, result, error, history, timestamps) it
    carries what the engine needs: the lease (``lease_owner``/``lease_expires_at``), a ``version``
    bumped by every write, ``wake_seq`` bumped by every signal or cancel (a worker may only suspend
    a run whose ``wake_seq`` it has seen), ``wake_at`` (when a worker should next pick the run up;
    ``None`` while it waits for a signal with no timeout), what it waits for (``wait_kind``,
    ``wait_name``, ``wait_until``) and its unconsumed ``signals`` in arrival order.
    ``parent_id`` is the workflow id of the run that started this one as a child (``""`` for a
    run started otherwise); it never changes.
    """

    workflow_id: str
    run_id: str
    workflow_type: str
    status: WorkflowStatus = WorkflowStatus.RUNNING
    input: Any = None
    result: Any = None
    error: dict | None = None
    history: list[HistoryEvent] = field(default_factory=list)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    deadline: datetime | None = None
    queue: str | None = None
    lease_owner: str = ""
    lease_expires_at: datetime | None = None
    version: int = 0
    wake_seq: int = 0
    wake_at: datetime | None = None
    wait_kind: str = ""
    wait_name: str = ""
    wait_until: datetime | None = None
    cancel_requested: bool = False
    signals: list[Signal] = field(default_factory=list)
    parent_id: str = ""

    def __post_init__(self) -> None:
        self.status = WorkflowStatus(self.status)

    @property
    def is_open(self) -> bool:
        """``True`` while the run is ``running``."""
        return self.status.is_open

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (or to the last update while open)."""
        end = self.ended_at or self.updated_at
        if not end or not self.created_at:
            return None
        return (end - self.created_at).total_seconds()

    def to_dict(self, *, history: bool = True) -> dict[str, Any]:
        """The run as JSON-ready data (``history=False``: with an empty history)."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            data[f.name] = value
        data["status"] = self.status.value
        data["history"] = [e.to_dict() for e in self.history] if history else []
        data["signals"] = [s.to_dict() for s in self.signals]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkflowState:
        """A run from ``to_dict``'s data; unknown keys are ignored.

        Raises:
            ValueError: an unknown status or event type, or a malformed timestamp.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("created_at", "updated_at", "ended_at", "deadline", "lease_expires_at",
                     "wake_at", "wait_until"):
            if name in values:
                values[name] = _dt(values[name])
        values["history"] = [HistoryEvent.from_dict(e) for e in values.get("history") or []]
        values["signals"] = [Signal.from_dict(s) for s in values.get("signals") or []]
        return cls(**values)


class RunEnd(dict):
    """How a run ends: ``{"status": WorkflowStatus, "result": ..., "error": dict | None}``.

    Attributes:
        release: the end write also frees the run's concurrency slots and waiter rows (flow
            control, ``engine/flow.py``); a store that does so lists in ``freed`` the buckets
            whose slots it freed, for the runner's promotion pass.
    """

    def __init__(self, status: WorkflowStatus, result: Any = None, error: dict | None = None, *,
                 release: bool = False):
        super().__init__(status=WorkflowStatus(status), result=result, error=error)
        self.release = release
        self.freed: list[tuple[str, str, str]] = []
