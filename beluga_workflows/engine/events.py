"""Events (API.md §8): the values, their validation, and what makes a wait or a cancel match one.

An ``Event`` is a named JSON object with an idempotency ``id`` and a time ``ts``; ``validate_event``
is the one place that checks and normalises one (an id is generated, ``ts`` defaults to now).
``Trigger`` (``@workflow(on_event=...)``) and ``CancelOn`` (``@workflow(cancel_on=...)``) are
checked when they are built, so a bad name, path or expression fails at decoration time.

An ``EventWait`` is what a run waits for: a ``ctx.wait_for_event`` (``op > 0``, the operation) or
one ``CancelOn`` of its workflow (``op <= 0``). Its ``match`` is a list of (dotted path, value)
pairs resolved when the wait was made; the stores index a wait by its event name, its
``match_paths`` and its ``match_key`` (a hash of the values), so the sender of an event finds the
waits it may satisfy with one index look-up per distinct set of paths (``event_match_key``).
``EventWait.accepts`` then decides exactly (anchor, values, ``where``). How the two sides never
miss each other is in ``fanout.py``.

Expressions (``where``) are compiled by ``expressions.compile_expression`` (imported when first
needed), bound to ``event`` (the candidate's ``to_dict()``) and, for waits and cancels, ``input``
(the run's input).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import InvalidInputError
from .serialization import DEFAULT_MAX_PAYLOAD_BYTES, dumps, to_json_value
from .types import utcnow

__all__ = [
    "MAX_EVENT_TEXT",
    "CancelOn",
    "Event",
    "EventRecord",
    "EventWait",
    "SendResult",
    "Trigger",
    "check_path",
    "compile_where",
    "empty_outcome",
    "event_match_key",
    "json_equal",
    "match_pairs",
    "merge_outcome",
    "trigger_workflow_id",
    "validate_event",
    "validate_event_name",
    "where_holds",
]

logger = logging.getLogger("beluga_workflows.events")

# The longest event name, id or dotted path; also the longest workflow id (executor.MAX_ID_LENGTH).
MAX_EVENT_TEXT = 255
_OUTCOME_KEYS = ("started", "woken", "canceled", "skipped")


# -- the values -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """Something that happened: a ``name``, a JSON object ``data``, an idempotency ``id``, a ``ts``.

    Building one checks nothing; ``validate_event`` (which ``send_event`` calls) checks and
    completes it. ``id`` and ``ts`` may be ``None`` until then.
    """

    name: str
    data: dict | None = None
    id: str | None = None
    ts: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "name", "data", "ts"}`` as JSON-ready data (``ts`` an ISO 8601 string)."""
        return {"id": self.id, "name": self.name,
                "data": {} if self.data is None else self.data,
                "ts": self.ts.isoformat() if self.ts is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """The event of ``to_dict``'s data.

        Raises:
            KeyError: the data has no ``name``.
            ValueError: ``ts`` is not an ISO 8601 time.
        """
        ts = data.get("ts")
        return cls(name=data["name"], data=data.get("data") or {}, id=data.get("id"),
                   ts=datetime.fromisoformat(ts) if isinstance(ts, str) else ts)


@dataclass(frozen=True)
class SendResult:
    """What sending an event did, as far as known when ``send_event`` returned.

    ``started`` is decided when the event is accepted (each trigger's run id is derived from the
    event id), so it is complete at once. ``woken`` and ``canceled`` are filled only where the
    fan-out ran in the sender's thread before it returned (the time-skipping test environment);
    elsewhere the runtime's fan-out does that work later, and the event's
    ``EventRecord.outcome`` tells what it did. A ``duplicate`` (the id was accepted before)
    started nothing. ``skipped``: ``{"workflow_type", "reason"}`` of the workflows the event
    starts nothing in (a trigger's ``where`` false, a rate limit reached, a newer event of a
    debounce burst); ``deferred``: ``{"workflow_type", "reason", "due_at"}`` of those that hold
    it in a debounce or batch group, whose run starts later.
    """

    event_id: str
    duplicate: bool
    started: tuple[str, ...] = ()
    woken: tuple[str, ...] = ()
    canceled: tuple[str, ...] = ()
    skipped: tuple[dict[str, str], ...] = ()
    deferred: tuple[dict[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data; ``from_dict`` reads it back."""
        return {"event_id": self.event_id, "duplicate": self.duplicate,
                "started": list(self.started), "woken": list(self.woken),
                "canceled": list(self.canceled), "skipped": [dict(s) for s in self.skipped],
                "deferred": [dict(d) for d in self.deferred]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SendResult:
        """The result of ``to_dict``'s data."""
        return cls(data["event_id"], bool(data["duplicate"]), tuple(data.get("started") or ()),
                   tuple(data.get("woken") or ()), tuple(data.get("canceled") or ()),
                   tuple(data.get("skipped") or ()), tuple(data.get("deferred") or ()))


def empty_outcome(skipped: Iterable[dict[str, str]] = ()) -> dict[str, list]:
    """An outcome with nothing done yet: ``{"started", "woken", "canceled", "skipped"}``."""
    return {"started": [], "woken": [], "canceled": [], "skipped": list(skipped)}


def merge_outcome(old: dict[str, list] | None, new: dict[str, list]) -> dict[str, list]:
    """``old`` with what ``new`` adds (a fan-out done twice reports each run once)."""
    merged = empty_outcome()
    for key in _OUTCOME_KEYS:
        for item in [*(old or {}).get(key, ()), *new.get(key, ())]:
            if item not in merged[key]:
                merged[key].append(item)
    return merged


@dataclass
class EventRecord:
    """An accepted event as a store keeps it.

    Attributes:
        event: the event (validated: id and ts set).
        received_at: when the store accepted it (what waits' anchors compare with).
        fanned_out_at: when its fan-out (triggers, waits, cancels) was done; ``None`` until then.
        outcome: ``{"started": [workflow ids], "woken": [ids], "canceled": [ids], "skipped":
            [{"workflow_type", "reason"}]}``.
        triggers: the runs its triggers start, decided when it was accepted:
            ``[{"workflow_type", "workflow_id"}]``.
    """

    event: Event
    received_at: datetime
    fanned_out_at: datetime | None = None
    outcome: dict[str, list] = field(default_factory=empty_outcome)
    triggers: list[dict[str, str]] = field(default_factory=list)


# -- validation -------------------------------------------------------------------------------

# As for workflow ids (executor.validate_workflow_id): the API's schema pattern says the same.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _check_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{what} must not be empty")
    if len(value) > MAX_EVENT_TEXT:
        raise InvalidInputError(
            f"{what} is {len(value)} characters long; the limit is {MAX_EVENT_TEXT}")
    if _CONTROL_CHARS.search(value):
        raise InvalidInputError(f"{what} must hold only printable characters (no newline, tab, "
                                f"NUL or other control character)")
    if value != value.strip():
        raise InvalidInputError(f"{what} must not start or end with whitespace")
    return value


def validate_event_name(name: Any, what: str = "event name") -> str:
    """``name`` if it is 1-255 printable characters without surrounding whitespace.

    Raises:
        InvalidInputError: naming ``what`` and the problem.
    """
    return _check_text(name, what)


def validate_event(event: Any, *, now: datetime | None = None,
                   max_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES) -> Event:
    """The event as it will be stored: checked, ``data`` ``{}`` for ``None``, ``id`` generated
    (``"evt-<hex>"``) and ``ts`` set to ``now`` (default: the current time) when missing.

    Raises:
        InvalidInputError: naming the field: a bad name or id (1-255 printable characters), data
            that is not a JSON object, not JSON-serialisable or over ``max_bytes`` encoded, a
            ``ts`` that is not a timezone-aware datetime.
    """
    if not isinstance(event, Event):
        raise InvalidInputError(
            f"an event must be an Event(name, data, id, ts), not {type(event).__name__}")
    name = validate_event_name(event.name)
    data = {} if event.data is None else event.data
    if not isinstance(data, dict):
        raise InvalidInputError(f"event data must be a JSON object (a dict), not "
                                f"{type(data).__name__}")
    data = to_json_value(data, "event data", max_bytes=max_bytes)
    event_id = f"evt-{uuid.uuid4().hex}" if event.id is None else _check_text(event.id, "event id")
    ts = event.ts
    if ts is None:
        ts = now or utcnow()
    elif not isinstance(ts, datetime):
        raise InvalidInputError(f"event ts must be a datetime, not {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise InvalidInputError("event ts must be a timezone-aware datetime")
    return Event(name=name, data=data, id=event_id, ts=ts)


def check_path(path: Any, what: str) -> str:
    """``path`` if it is a dotted path (``"data.order_id"``): printable, no empty segment.

    Raises:
        InvalidInputError: naming ``what``.
    """
    path = _check_text(path, what)
    if any(not part or part != part.strip() for part in path.split(".")):
        raise InvalidInputError(f"{what} {path!r} is not a dotted path such as 'data.order_id'")
    return path


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> Any:
    from .expressions import compile_expression  # the expression language, on first use

    return compile_expression(text)


def compile_where(text: Any, what: str) -> Any:
    """The compiled expression ``text`` (``None`` for none).

    Raises:
        InvalidInputError: ``text`` is not a non-empty string, or has a syntax error.
    """
    if text is None:
        return None
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"{what} must be a non-empty expression string")
    try:
        return _compiled(text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{what}: {exc}") from exc


def where_holds(text: str, bindings: dict[str, Any]) -> bool:
    """Whether expression ``text`` is true for ``bindings`` (false when it cannot be evaluated)."""
    try:
        return bool(_compiled(text).matches(bindings))
    except Exception:  # noqa: BLE001 - a broken expression matches nothing, loudly
        logger.exception("expression %r could not be evaluated; taken as false", text)
        return False


def _resolve(obj: Any, path: str) -> tuple[bool, Any]:
    from .expressions import resolve_path

    return resolve_path(obj, path)


# -- matching ---------------------------------------------------------------------------------

def _canonical(value: Any) -> Any:
    """``value`` with integral floats as ints (JSON's 1 and 1.0 are one number), recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def _canonical_json(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, ``true`` is not ``1``, objects whatever their key order."""
    return _canonical_json(a) == _canonical_json(b)


def _key(values: list[Any]) -> str:
    return hashlib.sha256(_canonical_json(values).encode("utf-8")).hexdigest()


def event_match_key(event: Event, match_paths: str) -> str | None:
    """The ``match_key`` a wait on ``match_paths`` needs for ``event`` to match it (``""`` for a
    wait without ``match``), or ``None`` when the event lacks one of the paths."""
    if not match_paths:
        return ""
    data = event.to_dict()
    values = []
    for path in match_paths.split("\n"):
        found, value = _resolve(data, path)
        if not found:
            return None
        values.append(value)
    return _key(values)


def match_pairs(match: Any, input: Any, what: str) -> tuple[tuple[str, Any], ...] | None:
    """``match`` as (path, value) pairs sorted by path, or ``None`` when ``input`` lacks a path.

    ``match`` is a dotted path (its value is ``input``'s at that path: the run's trigger event),
    a dict of path -> value (JSON), or ``None`` (no pairs).

    Raises:
        InvalidInputError: ``match`` is of another type, a path is malformed, a value not JSON.
    """
    if match is None:
        return ()
    if isinstance(match, str):
        path = check_path(match, f"{what} path")
        found, value = _resolve(input, path)
        if not found:
            return None
        return ((path, to_json_value(value, f"{what} value at {path!r}")),)
    if isinstance(match, dict):
        if not match:
            raise InvalidInputError(f"{what} must name at least one path")
        return tuple(sorted((check_path(path, f"{what} path"),
                             to_json_value(value, f"{what} value of {path!r}"))
                            for path, value in match.items()))
    raise InvalidInputError(f"{what} must be a dotted path or a dict of path -> value, not "
                            f"{type(match).__name__}")


def _check_match(match: Any, what: str) -> None:
    """Refuse a malformed ``match`` at construction (its values may come from the input later)."""
    if isinstance(match, str):
        check_path(match, f"{what} path")
    elif match is not None:
        match_pairs(match, None, what)


@dataclass(frozen=True)
class EventWait:
    """What one run waits for: events of ``name`` whose values at ``match``'s paths are equal
    and for which ``where`` holds, received at or after ``anchor``.

    ``op > 0``: the ``ctx.wait_for_event`` at that operation (the run wakes); ``op <= 0``: the
    ``-op``-th ``CancelOn`` of the run's workflow (the run is canceled; no anchor).
    """

    workflow_id: str
    run_id: str
    op: int
    name: str
    match: tuple[tuple[str, Any], ...] = ()
    where: str = ""
    anchor: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "match", tuple(sorted(tuple(pair) for pair in self.match)))

    @property
    def cancels(self) -> bool:
        """Whether a matching event cancels the run (a ``CancelOn``) rather than waking it."""
        return self.op <= 0

    @property
    def match_paths(self) -> str:
        """The match's paths, sorted, one a line (``""``: no match)."""
        return "\n".join(path for path, _ in self.match)

    @property
    def match_key(self) -> str:
        """A hash of the match's values, in path order (``""``: no match)."""
        return _key([value for _, value in self.match]) if self.match else ""

    def accepts(self, event: Event, received_at: datetime, input: Any) -> bool:
        """Whether ``event`` (received at ``received_at``) satisfies this wait of a run whose
        input is ``input``."""
        if event.name != self.name or (self.anchor is not None and received_at < self.anchor):
            return False
        data = event.to_dict()
        for path, value in self.match:
            found, actual = _resolve(data, path)
            if not found or not json_equal(actual, value):
                return False
        return not self.where or where_holds(self.where, {"event": data, "input": input})

    def describe(self) -> str:
        """What the run page shows: ``orders/paid where data.order_id = "o-1"``."""
        terms = [f"{path} = {dumps(value)}" for path, value in self.match]
        if self.where:
            terms.append(f"({self.where})" if terms else self.where)
        return f"{self.name} where {' && '.join(terms)}" if terms else self.name


# -- what @workflow takes ---------------------------------------------------------------------

@dataclass(frozen=True)
class Trigger:
    """``@workflow(on_event=Trigger("orders/placed", where="event.data.total > 100"))``: start
    one run of the workflow for each accepted event of that name for which ``where`` holds.

    Raises:
        InvalidInputError: a bad event name, or an expression with a syntax error.
    """

    event: str
    where: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "event", validate_event_name(self.event, "trigger event name"))
        compile_where(self.where, "trigger where")

    def accepts(self, event: Event) -> bool:
        """Whether ``event`` (of this trigger's name) starts a run."""
        return event.name == self.event and (
            self.where is None or where_holds(self.where, {"event": event.to_dict()}))


@dataclass(frozen=True)
class CancelOn:
    """``@workflow(cancel_on=[CancelOn("orders/cancelled", match="data.order_id")])``: an event
    of that name accepted while a run is open, matching it, cancels the run (as
    ``executor.cancel``).

    ``match`` is a dotted path (the event's value there equals the run's input's: its trigger
    event) or a dict of path -> value; ``where`` an expression over ``event`` and ``input``.

    Raises:
        InvalidInputError: a bad event name or path, a non-JSON value, an expression with a
            syntax error.
    """

    event: str
    match: str | dict[str, Any] | None = None
    where: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "event", validate_event_name(self.event, "cancel_on event name"))
        _check_match(self.match, "cancel_on match")
        compile_where(self.where, "cancel_on where")

    def wait_for(self, workflow_id: str, run_id: str, input: Any, index: int) -> EventWait | None:
        """The ``EventWait`` that cancels run ``run_id`` (this is its workflow's ``index``-th
        ``CancelOn``), or ``None`` when its input lacks the match path (nothing can match)."""
        pairs = match_pairs(self.match, input, "cancel_on match")
        if pairs is None:
            return None
        return EventWait(workflow_id, run_id, -index, self.event, pairs, self.where or "")


def trigger_workflow_id(workflow_type: str, event_id: str) -> str:
    """The id of the run that a trigger of ``workflow_type`` starts for event ``event_id``:
    ``"<type>:<event id>"``, or, past 255 characters, the type's first 190 and a SHA-256 of both.

    Derived, not drawn: the sender tells it at once, and a fan-out done twice finds the same run.
    """
    candidate = f"{workflow_type}:{event_id}"
    if len(candidate) <= MAX_EVENT_TEXT:
        return candidate
    digest = hashlib.sha256(candidate.encode("utf-8")).hexdigest()
    return f"{workflow_type[:190].strip()}:{digest}"
