"""The registry of workflow and activity definitions, filled by ``@workflow`` and ``@activity``.

Workflows are found by name when a worker picks a run up, so every process that runs workflows must
import the modules that define them: the Django app imports each installed app's ``workflows.py``
at start-up (as the admin does with ``admin.py``).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, overload

from .errors import InvalidInputError
from .events import CancelOn, Trigger
from .flow import FlowControl, flow_control
from .retry import RetryPolicy
from .types import to_seconds

__all__ = [
    "ActivityDefinition",
    "WorkflowDefinition",
    "activity",
    "activity_definition",
    "find_activity",
    "get_workflow",
    "registered_workflows",
    "triggered_by",
    "workflow",
    "workflow_name",
]

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_workflows: dict[str, WorkflowDefinition] = {}
# Event name -> the workflows it triggers (by name), in registration order.
_triggered: dict[str, list[str]] = {}
# Activity name -> its definition: what a worker running a started activity looks up.
_activities: dict[str, ActivityDefinition] = {}


@dataclass(frozen=True)
class WorkflowDefinition:
    """A registered workflow function, with the events that start it (``triggers``), those
    that cancel its runs (``cancel_on``) and its flow control (``flow``)."""

    name: str
    fn: Callable[..., Any]
    takes_input: bool
    triggers: tuple[Trigger, ...] = ()
    cancel_on: tuple[CancelOn, ...] = ()
    # Concurrency, throttle, rate limit, debounce, batch, priority (``engine/flow.py``).
    flow: FlowControl | None = None
    # The schedules declared with ``@workflow(schedule=...)`` (``Cron`` objects).
    schedules: tuple[Any, ...] = ()

    def __call__(self, ctx: Any, input: Any) -> Any:
        return self.fn(ctx, input) if self.takes_input else self.fn(ctx)


@dataclass(frozen=True)
class ActivityDefinition:
    """An activity: its name, function and the defaults given to ``@activity``."""

    name: str
    fn: Callable[..., Any]
    takes_input: bool
    retry: RetryPolicy | None = None
    timeout: float | None = None
    # The Celery queue its started runs (``ctx.start_activity``) go to (``None``: the run's).
    queue: str | None = None

    def __call__(self, input: Any) -> Any:
        return self.fn(input) if self.takes_input else self.fn()


def _default_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if qualname is None:  # a callable object
        qualname = type(fn).__qualname__
    return f"{module}.{qualname}"


def _positional_count(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    count = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return 2
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"{what} name must be a non-empty string")
    if len(name) > 255:
        raise InvalidInputError(f"{what} name is longer than 255 characters")
    return name


@overload
def workflow(fn: F) -> F: ...
@overload
def workflow(*, name: str | None = None, on_event: Any = None, cancel_on: Any = None,
             concurrency: Any = None, throttle: Any = None, rate_limit: Any = None,
             debounce: Any = None, batch: Any = None, priority: Any = None,
             schedule: Any = None) -> Callable[[F], F]: ...


def workflow(fn: F | None = None, *, name: str | None = None, on_event: Any = None,
             cancel_on: Any = None, concurrency: Any = None, throttle: Any = None,
             rate_limit: Any = None, debounce: Any = None, batch: Any = None,
             priority: Any = None, schedule: Any = None) -> Any:
    """Register a workflow function ``fn(ctx, input)`` (or ``fn(ctx)``) under a stable name.

    The default name is ``"<module>.<qualname>"``. The function is returned unchanged. Registering
    a different function under a name already taken raises ``InvalidInputError``.

    Args:
        on_event: an event name, a ``Trigger``, or a list of them: each accepted event of such a
            name starts one run, with the event's ``to_dict()`` as its input.
        cancel_on: a ``CancelOn`` or a list of them: a matching event accepted while a run is
            open cancels it.
        concurrency, throttle, rate_limit, debounce, batch, priority: flow control (API.md §9,
            ``engine/flow.py``): a ``Concurrency`` (or a list of up to 2), a ``Throttle``, a
            ``RateLimit``, a ``Debounce``, a ``Batch``, and an expression giving the seconds
            (-600..600) by which a run moves ahead among the runs waiting for its slots.
        schedule: a ``Cron`` or a list of them (API.md §10): runs started on a timetable.

    Raises:
        InvalidInputError: a bad name, trigger, ``CancelOn`` or flow-control declaration, or an
            invalid combination (``batch`` with ``debounce``...), at decoration time.
    """
    triggers = _triggers(on_event)
    cancels = _cancels(cancel_on)
    flow = flow_control(concurrency=concurrency, throttle=throttle, rate_limit=rate_limit,
                        debounce=debounce, batch=batch, priority=priority,
                        triggered=bool(triggers))
    schedules = _schedules(schedule)

    def register(func: F) -> F:
        wf_name = _check_name(name or _default_name(func), "workflow")
        definition = WorkflowDefinition(wf_name, func, _positional_count(func) >= 2, triggers,
                                        cancels, flow, schedules)
        with _lock:
            existing = _workflows.get(wf_name)
            if existing is not None and not _same_function(existing.fn, func):
                raise InvalidInputError(
                    f"workflow name {wf_name!r} is already registered to "
                    f"{_default_name(existing.fn)}"
                )
            if existing is not None:
                _untrigger(existing)
            _workflows[wf_name] = definition
            for event_name in dict.fromkeys(t.event for t in triggers):
                _triggered.setdefault(event_name, []).append(wf_name)
        func.__beluga_workflow__ = definition  # type: ignore[attr-defined]
        return func

    return register(fn) if fn is not None else register


def _triggers(on_event: Any) -> tuple[Trigger, ...]:
    if on_event is None:
        return ()
    items = [on_event] if isinstance(on_event, (str, Trigger)) else on_event
    if not isinstance(items, Iterable):
        raise InvalidInputError("on_event must be an event name, a Trigger or a list of them")
    triggers = []
    for item in items:
        if isinstance(item, str):
            item = Trigger(item)
        if not isinstance(item, Trigger):
            raise InvalidInputError(
                f"on_event takes event names and Trigger objects, not {type(item).__name__}")
        triggers.append(item)
    return tuple(triggers)


def _schedules(schedule: Any) -> tuple[Any, ...]:
    if schedule is None:
        return ()
    from .schedules import Cron  # the cron library is imported only by workflows with schedules

    items = [schedule] if isinstance(schedule, Cron) else schedule
    if isinstance(items, str) or not isinstance(items, Iterable) or not all(
            isinstance(item, Cron) for item in items):
        raise InvalidInputError("schedule must be a Cron or a list of Cron objects")
    return tuple(items)


def _cancels(cancel_on: Any) -> tuple[CancelOn, ...]:
    if cancel_on is None:
        return ()
    items = [cancel_on] if isinstance(cancel_on, CancelOn) else cancel_on
    if isinstance(items, str) or not isinstance(items, Iterable) or not all(
            isinstance(item, CancelOn) for item in items):
        raise InvalidInputError("cancel_on must be a CancelOn or a list of CancelOn objects")
    return tuple(items)


def _untrigger(definition: WorkflowDefinition) -> None:
    """Forget the triggers of ``definition`` (being registered again), under the lock."""
    for trigger in definition.triggers:
        names = _triggered.get(trigger.event, [])
        if definition.name in names:
            names.remove(definition.name)


def triggered_by(event_name: str) -> list[WorkflowDefinition]:
    """The workflows that an event named ``event_name`` starts, in registration order."""
    with _lock:
        return [_workflows[name] for name in _triggered.get(event_name, ())]


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # Re-importing a module (autoreload, tests) re-registers an equal function object.
    return a is b or (_default_name(a) == _default_name(b)
                      and getattr(a, "__code__", None) is not None
                      and a.__code__.co_filename == b.__code__.co_filename)


def activity(
    fn: F | None = None,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: timedelta | float | None = None,
    queue: str | None = None,
) -> Any:
    """Name an activity ``fn(input)`` and give it default ``retry``, per-attempt ``timeout`` and
    the Celery ``queue`` its started runs (``ctx.start_activity``) go to.

    The function is returned unchanged and can still be called directly.
    """
    timeout_s = to_seconds(timeout, "activity timeout")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidInputError("activity retry must be a RetryPolicy")

    if queue is not None and (not isinstance(queue, str) or not queue):
        raise InvalidInputError("activity queue must be a non-empty string")

    def register(func: F) -> F:
        act_name = _check_name(name or _default_name(func), "activity")
        definition = ActivityDefinition(act_name, func, _positional_count(func) >= 1, retry,
                                        timeout_s, queue)
        func.__beluga_activity__ = definition  # type: ignore[attr-defined]
        with _lock:
            _activities[act_name] = definition
        return func

    return register(fn) if fn is not None else register


def activity_definition(fn: Callable[..., Any]) -> ActivityDefinition:
    """The definition of an activity function, decorated or not."""
    definition = getattr(fn, "__beluga_activity__", None)
    if isinstance(definition, ActivityDefinition) and definition.fn is fn:
        return definition
    if not callable(fn):
        raise InvalidInputError(f"activity must be a callable, not {type(fn).__name__}")
    return ActivityDefinition(_default_name(fn), fn, _positional_count(fn) >= 1)


def find_activity(name: str) -> ActivityDefinition:
    """The activity a worker runs for a started activity named ``name``: one registered with
    ``@activity`` in this process, else a module-level function of that dotted name.

    Raises:
        InvalidInputError: no such activity here.
    """
    with _lock:
        definition = _activities.get(name)
    if definition is not None:
        return definition
    module_name, _, attr = name.rpartition(".")
    try:
        import importlib

        fn: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError, ValueError):
        raise InvalidInputError(
            f"activity {name!r} is not registered in this worker: decorate it with "
            f"@activity and import its module here") from None
    return activity_definition(fn)


def workflow_name(wf: Callable[..., Any] | str) -> str:
    """The registered name of a workflow given as a function or a name."""
    if isinstance(wf, str):
        return wf
    definition = getattr(wf, "__beluga_workflow__", None)
    if isinstance(definition, WorkflowDefinition):
        return definition.name
    if callable(wf):
        raise InvalidInputError(
            f"{_default_name(wf)} is not a registered workflow; decorate it with @workflow"
        )
    raise InvalidInputError(f"workflow must be a function or a name, not {type(wf).__name__}")


def get_workflow(name: str) -> WorkflowDefinition:
    """The workflow registered under ``name``.

    Raises:
        InvalidInputError: no workflow of that name is registered in this process.
    """
    with _lock:
        definition = _workflows.get(name)
    if definition is None:
        raise InvalidInputError(
            f"unknown workflow type {name!r}; registered types: "
            f"{', '.join(sorted(_workflows)) or '(none)'}"
        )
    return definition


def registered_workflows() -> list[str]:
    """The names of all registered workflows, sorted."""
    with _lock:
        return sorted(_workflows)
