"""Lifecycle hooks: callbacks fired in the worker that runs the workflow.

Hooks fire once per live event, never again when a run is replayed. An exception raised by a hook
is logged and swallowed: observability must not break a workflow.

Two optional fields serve tracing (``beluga_workflows.contrib.opentelemetry.TracingHooks``), so
the engine never imports a tracing library: ``span`` wraps an operation (the client operations
where they are called, an activation and an activity attempt in the worker) and
``trace_context`` gives the caller's trace context, which is stored with a new run so the
worker's spans continue the caller's trace.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Hooks", "compose_hooks", "stored_trace_context", "with_trace_context"]

logger = logging.getLogger("beluga_workflows.hooks")


@dataclass(frozen=True)
class Hooks:
    """Optional callbacks; any may be ``None``.

    Signatures (``workflow_id`` first, as in the Go package):

    - ``on_workflow_start(workflow_id, input)``
    - ``on_workflow_complete(workflow_id, result)``
    - ``on_workflow_fail(workflow_id, error: BaseException)``
    - ``on_activity_start(workflow_id, activity_name, input)``
    - ``on_activity_complete(workflow_id, activity_name, result)``
    - ``on_activity_fail(workflow_id, activity_name, error: BaseException)``
    - ``on_signal(workflow_id, signal: Signal)``
    - ``on_retry(workflow_id, activity_name, error: BaseException, attempt: int, delay: float)``
    - ``on_cancel(workflow_id)``

    Tracing (both optional; ``trace`` and ``carrier`` are how the engine uses them):

    - ``span(name, attributes, parent)``: a context manager around one operation, named
      ``workflow.execute|signal|query|cancel`` (where the client calls), ``workflow.run`` (one
      activation, in the worker) or ``activity.run`` (one attempt); ``parent`` is the trace
      context stored with the run (``None`` for client operations). What it yields has
      ``set_attribute(key, value)``; an exception raised inside propagates through it.
    - ``trace_context()``: the current trace context as a dict of strings (W3C
      ``traceparent``...), or ``None``; stored with each new run.
    """

    on_workflow_start: Callable[..., Any] | None = None
    on_workflow_complete: Callable[..., Any] | None = None
    on_workflow_fail: Callable[..., Any] | None = None
    on_activity_start: Callable[..., Any] | None = None
    on_activity_complete: Callable[..., Any] | None = None
    on_activity_fail: Callable[..., Any] | None = None
    on_signal: Callable[..., Any] | None = None
    on_retry: Callable[..., Any] | None = None
    on_cancel: Callable[..., Any] | None = None
    span: Callable[..., contextlib.AbstractContextManager[Any]] | None = None
    trace_context: Callable[[], dict[str, str] | None] | None = None

    def trace(self, name: str, attributes: dict[str, Any],
              parent: dict[str, str] | None = None) -> contextlib.AbstractContextManager[Any]:
        """The ``span`` hook's context manager around an operation (a no-op without one); what
        the hook itself raises is logged and swallowed, never the operation's own errors."""
        if self.span is None:
            return contextlib.nullcontext(NO_SPAN)
        return _guarded(self.span, name, attributes, parent)

    def carrier(self) -> dict[str, str] | None:
        """The ``trace_context`` hook's answer (``None`` without one, or when it raised)."""
        if self.trace_context is None:
            return None
        try:
            return self.trace_context() or None
        except Exception:
            logger.exception("beluga_workflows hook trace_context raised")
            return None

    def fire(self, name: str, *args: Any) -> None:
        """Call hook ``name`` if it is set; log and swallow what it raises."""
        callback = getattr(self, name)
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("beluga_workflows hook %s raised", name)


HOOK_NAMES = tuple(f.name for f in fields(Hooks) if f.name.startswith("on_"))


# Where a run keeps its caller's trace context: this key of its ``workflow_started`` event's
# ``result`` (a dict that also says where a run came from: resumed_from, continued_from...).
TRACE_CONTEXT = "trace_context"


def with_trace_context(origin: Any, carrier: dict[str, str] | None) -> Any:
    """``workflow_started``'s ``result`` ``origin`` with ``carrier`` stored in it (as it was
    without one)."""
    if not carrier:
        return origin
    return {**(origin if isinstance(origin, dict) else {}), TRACE_CONTEXT: carrier}


def stored_trace_context(history: list[Any]) -> dict[str, str] | None:
    """The trace context stored with the run whose history starts with ``history[0]``."""
    origin = history[0].result if history else None
    carrier = origin.get(TRACE_CONTEXT) if isinstance(origin, dict) else None
    return carrier if isinstance(carrier, dict) else None


class _NoSpan:
    """What ``Hooks.trace`` yields without a span hook: attributes go nowhere."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass


NO_SPAN = _NoSpan()


@contextlib.contextmanager
def _guarded(span: Callable[..., Any], name: str, attributes: dict[str, Any],
             parent: dict[str, str] | None) -> Iterator[Any]:
    """Enter and exit ``span(...)`` around the body; a failure of the span itself is logged."""
    try:
        manager = span(name, attributes, parent)
        opened = manager.__enter__()
    except Exception:
        logger.exception("beluga_workflows span hook raised opening %s", name)
        manager = None
    if manager is None:
        yield NO_SPAN
        return
    try:
        yield opened
    except BaseException as exc:
        try:
            manager.__exit__(type(exc), exc, exc.__traceback__)
        except Exception:
            logger.exception("beluga_workflows span hook raised closing %s", name)
        raise
    try:
        manager.__exit__(None, None, None)
    except Exception:
        logger.exception("beluga_workflows span hook raised closing %s", name)


class _Spans:
    """The spans of composed span hooks, set together."""

    def __init__(self, spans: list[Any]) -> None:
        self.spans = spans

    def set_attribute(self, key: str, value: Any) -> None:
        for span in self.spans:
            span.set_attribute(key, value)


def _composed_span(present: list[Hooks]) -> Callable[..., Any] | None:
    hooks = [h for h in present if h.span is not None]
    if len(hooks) <= 1:
        return hooks[0].span if hooks else None

    @contextlib.contextmanager
    def span(name: str, attributes: dict[str, Any], parent: dict[str, str] | None) -> Iterator[Any]:
        with contextlib.ExitStack() as stack:
            yield _Spans([stack.enter_context(h.trace(name, attributes, parent)) for h in hooks])

    return span


def _composed_trace_context(present: list[Hooks]) -> Callable[[], dict[str, str] | None] | None:
    hooks = [h for h in present if h.trace_context is not None]
    if len(hooks) <= 1:
        return hooks[0].trace_context if hooks else None

    def trace_context() -> dict[str, str] | None:
        merged: dict[str, str] = {}
        for h in hooks:
            merged.update(h.carrier() or {})
        return merged or None

    return trace_context


def compose_hooks(*hooks: Hooks | None) -> Hooks:
    """One ``Hooks`` that calls each given hook in order (``None`` entries are skipped)."""
    present = [h for h in hooks if h is not None]
    if len(present) == 1:
        return present[0]

    def chain(name: str) -> Callable[..., Any] | None:
        callbacks = [getattr(h, name) for h in present if getattr(h, name) is not None]
        if not callbacks:
            return None

        def call_all(*args: Any) -> None:
            for callback in callbacks:
                try:
                    callback(*args)
                except Exception:
                    logger.exception("beluga_workflows hook %s raised", name)

        return call_all

    return Hooks(**{name: chain(name) for name in HOOK_NAMES}, span=_composed_span(present),
                 trace_context=_composed_trace_context(present))
