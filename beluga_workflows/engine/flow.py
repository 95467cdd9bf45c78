"""Flow control (API.md §9): the declarations of ``@workflow`` and what a store must enforce.

``Concurrency``, ``Throttle``, ``RateLimit``, ``Debounce`` and ``Batch`` are checked when they are
built; ``FlowControl`` is a workflow's whole declaration, checked as a combination at decoration
time (``flow_control``). Their keys (and ``priority``) are expressions of the events language,
bound to ``input`` (the run's input) and ``event`` (the triggering event, for runs started by
events; ``None`` otherwise). A key is the expression's value as text; a missing field gives the
key ``null``, shared by every run that lacks it.

What a store enforces when it starts a run is an ``Admission`` (``FlowControl.admission``):

- **concurrency**: a slot per (workflow type, entry, key, slot number < limit), unique in the
  store, taken in the write that starts the run and freed in the write that ends it (the runner
  asks for that with ``RunEnd.release``); a run that finds no free slot is stored waiting
  (status ``running``, ``wait_kind`` ``"concurrency"``, holding no worker) and is *promoted*
  (given its slots, made due) by a promotion pass, in order of ``order_at`` (start time minus
  priority). No wake-up falls between an ending run and a waiting one: each side commits its
  write (the slot freed, the waiter stored) before its promotion pass reads the other's, so
  whichever reads second sees both (the events' ordering argument, ``fanout.py``). The sweep
  frees the slots of runs that are no longer open (a run deleted, a declaration removed by a
  deploy) and runs the promotion pass of every key with waiters.
- **throttle**: GCRA state per key (the theoretical arrival time, updated by compare-and-set):
  the run's start is delayed to its conforming time (``wait_kind`` ``"throttle"``).
- **rate limit**: the same GCRA, but a run that does not conform is not started: ``execute``
  raises ``RateLimitExceededError``, an event is skipped (the trigger ledger records why).

Debounce and batch collect events into a *group* per key (a store row with its due time); the
sweep or a runtime countdown fires due groups (``executor.fire_groups``): one run with the newest
event (debounce) or the list of the group's events (batch).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .errors import InvalidInputError
from .events import compile_where
from .types import to_seconds

__all__ = [
    "MAX_CONCURRENCY_ENTRIES",
    "MAX_PRIORITY",
    "Admission",
    "Batch",
    "Bucket",
    "Concurrency",
    "Debounce",
    "FlowControl",
    "Gcra",
    "RateLimit",
    "Throttle",
    "flow_control",
    "check_priority",
    "debounce_due",
    "gcra",
    "key_text",
    "promoted_wait",
]

MAX_CONCURRENCY_ENTRIES = 2
# Seconds a run may move ahead of (or behind) its queue.
MAX_PRIORITY = 600
MAX_LIMIT = 10_000
MAX_BATCH = 1_000
# The longest key a store keeps; longer keys are shortened to a prefix and a digest.
MAX_KEY_LENGTH = 200
_LONGEST_PERIOD = 366 * 24 * 3600.0

# A slot or GCRA bucket: (workflow type, scope, key). Scopes: "concurrency:0", "concurrency:1",
# "throttle", "rate_limit".
Bucket = tuple[str, str, str]


def _limit(value: Any, what: str, maximum: int = MAX_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be an integer, not {type(value).__name__}")
    if not 1 <= value <= maximum:
        raise InvalidInputError(f"{what} must be between 1 and {maximum}, not {value}")
    return value


def _period(value: Any, what: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if value is None:
        raise InvalidInputError(f"{what} is required")
    seconds = to_seconds(value, what)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInputError(f"{what} must be positive")
    if seconds > _LONGEST_PERIOD:
        raise InvalidInputError(f"{what} must be at most 366 days")
    return seconds


def _key(value: Any, what: str) -> str | None:
    if value is None:
        return None
    compile_where(value, what)
    return value


def _set(obj: Any, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` open runs of the workflow per value of ``key`` (an expression; ``None``:
    one key for all runs); later runs wait, holding no worker, and start as slots free."""

    limit: int
    key: str | None = None

    def __post_init__(self) -> None:
        _set(self, limit=_limit(self.limit, "Concurrency limit"),
             key=_key(self.key, "Concurrency key"))


@dataclass(frozen=True)
class Throttle:
    """At most ``limit`` runs start per ``period`` per ``key``; later ones are delayed, never
    dropped (a burst of ``limit`` starts at once, then one every ``period / limit``)."""

    limit: int
    period: Any
    key: str | None = None

    def __post_init__(self) -> None:
        _set(self, limit=_limit(self.limit, "Throttle limit"),
             period=_period(self.period, "Throttle period"), key=_key(self.key, "Throttle key"))


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` runs start per ``period`` per ``key``; the events (or ``execute``
    calls) beyond it start nothing and are reported skipped."""

    limit: int
    period: Any
    key: str | None = None

    def __post_init__(self) -> None:
        _set(self, limit=_limit(self.limit, "RateLimit limit"),
             period=_period(self.period, "RateLimit period"), key=_key(self.key, "RateLimit key"))


@dataclass(frozen=True)
class Debounce:
    """One run ``period`` after the last event of a burst (per ``key``), with the newest event
    (by ``ts``); ``timeout`` caps the wait from the burst's first event."""

    period: Any
    key: str | None = None
    timeout: Any = None

    def __post_init__(self) -> None:
        period = _period(self.period, "Debounce period")
        timeout = _period(self.timeout, "Debounce timeout", optional=True)
        if timeout is not None and timeout < period:
            raise InvalidInputError(
                f"Debounce timeout ({timeout:g} s) must not be shorter than its period "
                f"({period:g} s)")
        _set(self, period=period, timeout=timeout, key=_key(self.key, "Debounce key"))


@dataclass(frozen=True)
class Batch:
    """One run receives a list of up to ``max_size`` events (per ``key``), started when the
    batch is full or ``timeout`` after its first event."""

    max_size: int
    timeout: Any
    key: str | None = None

    def __post_init__(self) -> None:
        _set(self, max_size=_limit(self.max_size, "Batch max_size", MAX_BATCH),
             timeout=_period(self.timeout, "Batch timeout"), key=_key(self.key, "Batch key"))


# -- keys and the GCRA -------------------------------------------------------------------------

def key_text(value: Any) -> str:
    """A key's value as the text a store keeps: a string as it is, anything else as compact JSON
    (``null`` for a missing field); longer than ``MAX_KEY_LENGTH``: a prefix and a digest."""
    text = value if isinstance(value, str) else json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=str)
    if len(text) > MAX_KEY_LENGTH:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        text = f"{text[:MAX_KEY_LENGTH - 40]}...{digest}"
    return text


def _evaluate(text: str | None, bindings: dict[str, Any]) -> Any:
    if text is None:
        return None
    from .expressions import ExpressionError

    try:
        return compile_where(text, "flow control expression").evaluate(bindings)
    except ExpressionError:  # a missing field (or a type error): the null key
        return None


@dataclass(frozen=True)
class Gcra:
    """A GCRA bucket to take from: ``limit`` per ``period`` seconds."""

    bucket: Bucket
    limit: int
    period: float


def period_text(seconds: float) -> str:
    """A period in its largest whole unit: ``1h``, ``30s``, ``500ms``, ``1.5s``."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def moment_text(at: datetime) -> str:
    """A moment for people: ``2026-12-01 12:00:03.200 UTC`` (milliseconds)."""
    return f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d} {at.tzname() or ''}".rstrip()


def promoted_wait(wait_until: datetime | None, now: datetime) -> dict[str, Any]:
    """The wait fields of a run promoted to its slots at ``now``: due now, or at its throttled
    start (``wait_until``) when that is later."""
    if wait_until is not None and wait_until > now:
        return {"wake_at": wait_until, "wait_kind": "throttle",
                "wait_name": f"throttle: starts at {moment_text(wait_until)}"}
    return {"wake_at": now, "wait_kind": "", "wait_name": ""}


def debounce_due(opened_at: datetime, received_at: datetime, period: float,
                 timeout: float | None) -> datetime:
    """When a debounce group opened at ``opened_at`` fires after an event at ``received_at``:
    ``period`` after that event, but no later than ``timeout`` after the group opened."""
    due = received_at + timedelta(seconds=period)
    if timeout is not None:
        due = min(due, opened_at + timedelta(seconds=timeout))
    return due


def gcra(tat: datetime | None, now: datetime, limit: int, period: float
         ) -> tuple[datetime, datetime]:
    """The generic cell rate algorithm: when a start arriving ``now`` conforms, and the bucket's
    theoretical arrival time after it.

    ``limit`` starts may happen at once; then one per ``period / limit``. ``tat`` is the bucket's
    state (``None``: a new bucket). The start conforms at once when the first value is ``now``.
    """
    interval = timedelta(seconds=period / limit)
    tolerance = timedelta(seconds=period) - interval
    tat = now if tat is None or tat < now else tat
    start = max(now, tat - tolerance)
    return start, tat + interval


@dataclass
class Admission:
    """What a store enforces when it starts one run (built by ``FlowControl.admission``).

    Attributes:
        workflow_type: the run's workflow type.
        slots: one ``(bucket, limit)`` per concurrency entry, buckets sorted (the order in which
            every writer takes them, so two never wait on each other).
        throttle / rate_limit: the GCRA buckets to take from, if declared.
        order_at: the run's place among the waiters of its slots (start time minus priority).
        describe: the text of a waiting run's ``wait_name``, given the bucket it waits on and
            how many of its slots are in use.
    """

    workflow_type: str
    slots: tuple[tuple[Bucket, int], ...] = ()
    throttle: Gcra | None = None
    rate_limit: Gcra | None = None
    order_at: datetime | None = None

    def waiting_text(self, bucket: Bucket, in_use: int, limit: int) -> str:
        """``concurrency "orders.fulfil" key "c-17" (2 of 2 in use)``."""
        return f'concurrency "{bucket[0]}" key "{bucket[2]}" ({in_use} of {limit} in use)'

    def throttled_text(self, start: datetime) -> str:
        """``throttle "orders.sync" key "m-1" (5 per 1s): starts at 12:00:03.200 UTC``."""
        assert self.throttle is not None
        return (f'throttle "{self.workflow_type}" key "{self.throttle.bucket[2]}" '
                f"({self.throttle.limit} per {period_text(self.throttle.period)}): starts at "
                f"{moment_text(start)}")

    def take_rates(self, state: Any, take: Any) -> None:
        """Steps 1 and 2 of an admission (the store contract): the rate limit, then the
        throttle, each through the store's ``take(gate, now, delay=...) -> (taken, start)``
        (its compare-and-set on the GCRA state); ``state``'s wait fields get the throttled start.

        Raises:
            RateLimitExceededError: the rate limit refuses the run (nothing taken).
        """
        from .errors import RateLimitExceededError

        now = state.created_at
        if self.rate_limit is not None:
            ok, retry_at = take(self.rate_limit, now, delay=False)
            if not ok:
                raise RateLimitExceededError(self.rate_limited_text(retry_at),
                                             workflow_id=state.workflow_id, retry_at=retry_at)
        if self.throttle is not None:
            _, start = take(self.throttle, now, delay=True)
            self.mark_throttled(state, start)

    def mark_waiting(self, state: Any, bucket: Bucket, in_use: int, limit: int) -> None:
        """Set ``state`` (a new ``WorkflowState``) waiting for a slot of ``bucket``: no wake-up
        but its deadline; a throttled start is kept in ``wait_until``."""
        state.wait_kind = "concurrency"
        state.wait_name = self.waiting_text(bucket, in_use, limit)
        state.wake_at = state.deadline

    def mark_throttled(self, state: Any, start: datetime) -> None:
        """Set ``state`` (a new ``WorkflowState``) to start at ``start`` (a throttle's delay)."""
        state.wait_until = start
        if start > state.created_at:
            state.wait_kind = "throttle"
            state.wait_name = self.throttled_text(start)
            state.wake_at = start

    def rate_limited_text(self, retry_at: datetime) -> str:
        """Why a run was not started: the rate limit, its key and when it would have conformed."""
        assert self.rate_limit is not None
        return (f'rate limit "{self.workflow_type}" key "{self.rate_limit.bucket[2]}" '
                f"({self.rate_limit.limit} per {period_text(self.rate_limit.period)}) reached; "
                f"the next start conforms at {moment_text(retry_at)}")


@dataclass(frozen=True)
class FlowControl:
    """A workflow's flow-control declaration (``WorkflowDefinition.flow``), checked as a whole."""

    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    priority: str | None = None
    # Whether any start needs the store's flow tables (all but a bare priority).
    gated: bool = field(default=False, compare=False)

    @property
    def groups_events(self) -> bool:
        """Whether events are collected into groups (``Debounce`` or ``Batch``) before a run."""
        return self.debounce is not None or self.batch is not None

    def bindings(self, input: Any, event: dict[str, Any] | None) -> dict[str, Any]:
        """What the keys and ``priority`` are evaluated with."""
        return {"input": input, "event": event}

    def priority_of(self, bindings: dict[str, Any]) -> int:
        """``priority`` evaluated: whole seconds within ±``MAX_PRIORITY`` (0 when it is not a number)."""
        value = _evaluate(self.priority, bindings)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return 0
        return int(max(-MAX_PRIORITY, min(MAX_PRIORITY, value)))

    def group_key(self, bindings: dict[str, Any]) -> str:
        """The key of the debounce or batch group an event joins."""
        declared = self.debounce or self.batch
        return key_text(_evaluate(declared.key, bindings)) if declared is not None else "null"

    def admission(self, workflow_type: str, bindings: dict[str, Any], start: datetime,
                  priority: int | None = None) -> Admission | None:
        """What the store must enforce to start a run at ``start`` (``None``: nothing).

        ``priority``: the run's own (``WorkflowOptions.priority``), overriding the declared one.
        """
        if not self.gated:
            return None
        slots = tuple(sorted(
            ((workflow_type, f"concurrency:{index}",
              key_text(_evaluate(entry.key, bindings))), entry.limit)
            for index, entry in enumerate(self.concurrency)))
        throttle = rate = None
        if self.throttle is not None:
            throttle = Gcra((workflow_type, "throttle",
                             key_text(_evaluate(self.throttle.key, bindings))),
                            self.throttle.limit, self.throttle.period)
        if self.rate_limit is not None:
            rate = Gcra((workflow_type, "rate_limit",
                         key_text(_evaluate(self.rate_limit.key, bindings))),
                        self.rate_limit.limit, self.rate_limit.period)
        ahead = self.priority_of(bindings) if priority is None else priority
        return Admission(workflow_type, slots, throttle, rate, start - timedelta(seconds=ahead))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _typed(value: Any, kind: type, what: str) -> Any:
    if value is not None and not isinstance(value, kind):
        raise InvalidInputError(f"{what} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def flow_control(*, concurrency: Any = None, throttle: Any = None, rate_limit: Any = None,
                 debounce: Any = None, batch: Any = None, priority: Any = None,
                 triggered: bool = False) -> FlowControl | None:
    """The checked declaration of ``@workflow``'s flow-control arguments (``None``: none given).

    ``triggered``: the workflow has ``on_event`` triggers (``Debounce`` and ``Batch`` need them).

    Raises:
        InvalidInputError: a wrong type, more than two ``Concurrency`` entries, two on the same
            key, ``batch`` with ``debounce``, ``rate_limit`` with either, ``debounce`` or
            ``batch`` without ``on_event``, a ``priority`` that is not an expression or a
            constant out of ±600 (at decoration time).
    """
    entries = _as_list(concurrency)
    for entry in entries:
        _typed(entry, Concurrency, "concurrency")
    if len(entries) > MAX_CONCURRENCY_ENTRIES:
        raise InvalidInputError(
            f"concurrency takes at most {MAX_CONCURRENCY_ENTRIES} Concurrency entries, not "
            f"{len(entries)}")
    if len(entries) == 2 and entries[0].key == entries[1].key:
        raise InvalidInputError("the two Concurrency entries have the same key; give one entry "
                                "(the lower limit) or keys that differ")
    _typed(throttle, Throttle, "throttle")
    _typed(rate_limit, RateLimit, "rate_limit")
    _typed(debounce, Debounce, "debounce")
    _typed(batch, Batch, "batch")
    if batch is not None and debounce is not None:
        raise InvalidInputError("a workflow cannot both batch and debounce its events: a Batch "
                                "collects every event of a window, a Debounce keeps only the last")
    if rate_limit is not None and (batch is not None or debounce is not None):
        raise InvalidInputError("rate_limit cannot be combined with batch or debounce (they "
                                "already collapse a burst of events into one run); use throttle")
    if (batch is not None or debounce is not None) and not triggered:
        raise InvalidInputError("debounce and batch apply to events: give the workflow "
                                "on_event=... as well")
    priority = _priority(priority)
    if not entries and all(v is None for v in (throttle, rate_limit, debounce, batch, priority)):
        return None
    return FlowControl(tuple(entries), throttle, rate_limit, debounce, batch, priority,
                       gated=bool(entries) or throttle is not None or rate_limit is not None)


def _priority(priority: Any) -> str | None:
    if priority is None:
        return None
    if isinstance(priority, (int, float)) and not isinstance(priority, bool):
        priority = repr(priority)
    expression = compile_where(priority, "priority")
    from .expressions import ExpressionError

    try:  # a constant is checked now
        value = expression.evaluate({"input": None, "event": None})
    except (ExpressionError, InvalidInputError):
        return priority
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_PRIORITY:
        raise InvalidInputError(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY} "
                                f"seconds, not {value}")
    return priority


def check_priority(value: Any) -> int | None:
    """``WorkflowOptions.priority``: whole seconds within ±600, or ``None``.

    Raises:
        InvalidInputError: not an integer, or out of range.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"priority must be an integer number of seconds, not "
                                f"{type(value).__name__}")
    if abs(value) > MAX_PRIORITY:
        raise InvalidInputError(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY} "
                                f"seconds, not {value}")
    return value
