"""OpenTelemetry tracing of workflows: ``TracingHooks`` (install ``beluga-workflows[otel]``).

Add it to the hooks (``BELUGA_WORKFLOWS["HOOKS"] =
["beluga_workflows.contrib.opentelemetry.TracingHooks"]``, or ``executor.add_hooks(
TracingHooks())``) in the processes that start runs and in the workers. Spans:

- ``workflow.execute``, ``workflow.signal``, ``workflow.query``, ``workflow.cancel``: where the
  client operation is called, children of the caller's current span.
- ``workflow.run``: one per activation (each time a worker advances the run: its first start,
  and again after every sleep, signal or wake-up), so a run that waits a week holds no open
  span. Every activation of a run is a child of the span around the ``execute`` that started
  it: the trace context of that moment is stored with the run (in its ``workflow_started``
  event) and continued by the worker. A child workflow's runs continue its parent's trace.
- ``activity.run``: one per attempt; a child of ``workflow.run`` for ``ctx.execute_activity``,
  of the stored context for a started activity (``ctx.start_activity``, its own task).

Attributes: ``workflow.id``, ``workflow.type``, ``workflow.run_id`` (and ``activity.name``);
``workflow.run`` also gets ``workflow.status`` as the activation left the run. An error raised
through a span (a failed activity attempt, a refused signal) is recorded on it with status
``ERROR``; a failed run records its error on its last ``workflow.run``.

Spans go to the tracer provider given, else the global one: without a configured SDK the API's
no-op tracer emits nothing and no trace context is stored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..engine.hooks import Hooks

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the extra is not installed: TracingHooks() says so
    trace = None

__all__ = ["TracingHooks"]

TRACER_NAME = "beluga_workflows"

# The spans opened where the client operation is called, and those in the worker.
_CLIENT_SPANS = ("workflow.execute", "workflow.signal", "workflow.query", "workflow.cancel")


class TracingHooks(Hooks):
    """Hooks that trace runs with OpenTelemetry (see the module docstring).

    Args:
        tracer_provider: where spans go (default: the global tracer provider).

    Raises:
        ImportError: OpenTelemetry is not installed (the message names the
            ``beluga-workflows[otel]`` extra).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        if trace is None:
            raise ImportError(
                "beluga_workflows.contrib.opentelemetry.TracingHooks needs OpenTelemetry: "
                "install the extra, pip install 'beluga-workflows[otel]'")
        tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        object.__setattr__(self, "_tracer", tracer)
        super().__init__(span=self._span, trace_context=self._trace_context,
                         on_workflow_fail=self._workflow_failed)

    @contextlib.contextmanager
    def _span(self, name: str, attributes: dict[str, Any],
              parent: dict[str, str] | None) -> Iterator[Any]:
        context = propagate.extract(parent) if parent else None
        kind = SpanKind.CLIENT if name in _CLIENT_SPANS else SpanKind.INTERNAL
        with self._tracer.start_as_current_span(name, context=context, kind=kind,
                                                attributes=attributes) as span:
            yield span

    @staticmethod
    def _trace_context() -> dict[str, str] | None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier or None

    @staticmethod
    def _workflow_failed(workflow_id: str, error: BaseException) -> None:
        # Fired inside the activation that recorded the failure: its workflow.run span.
        span = trace.get_current_span()
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
