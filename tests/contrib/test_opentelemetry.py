"""TracingHooks in one process: the spans of a run, their parents, attributes and errors; silence
without a configured SDK; and the app without OpenTelemetry installed at all."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from beluga_workflows import (
    NonRetryableError,
    RetryPolicy,
    Signal,
    WorkflowContext,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowOptions,
    activity,
    workflow,
)
from beluga_workflows.contrib.opentelemetry import TracingHooks
from beluga_workflows.runtimes.local import LocalExecutor
from beluga_workflows.stores.memory import MemoryStore

from ..engine.support import unique, wait_until, waiting_for_signal

REPO = Path(__file__).resolve().parents[2]


@activity(name="otel_tests.double")
def double(n: int) -> int:
    return n * 2


@activity(name="otel_tests.refuse")
def refuse(n: int) -> int:
    raise NonRetryableError(f"refused {n}")


@workflow(name="otel_tests.approved_double")
def approved_double(ctx: WorkflowContext, n: int) -> dict:
    doubled = ctx.execute_activity(double, n)
    ctx.set_query_handler("doubled", lambda: doubled)
    approval = ctx.receive_signal("approval")
    return {"doubled": doubled, "approval": approval}


@workflow(name="otel_tests.refused")
def refused(ctx: WorkflowContext, n: int) -> int:
    return ctx.execute_activity(refuse, n, retry=RetryPolicy(max_attempts=1))


@pytest.fixture
def traced():
    """A local executor on a memory store with TracingHooks on an SDK provider of its own."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    executor = LocalExecutor(store=MemoryStore(), sweep_interval=0.2)
    executor.add_hooks(TracingHooks(tracer_provider=provider))
    yield executor, exporter, provider.get_tracer("tests")
    executor.close()


def by_name(spans, name):
    return [s for s in spans if s.name == name]


def test_one_trace_from_the_caller_through_every_activation(traced):
    executor, exporter, tracer = traced
    workflow_id = unique("otel")
    with tracer.start_as_current_span("request") as request:
        handle = executor.execute(approved_double, WorkflowOptions(id=workflow_id, input=21))
    wait_until(lambda: waiting_for_signal(executor.store, workflow_id), message="the signal wait")
    assert executor.query(workflow_id, "doubled") == 42
    executor.signal(workflow_id, Signal(name="approval", payload="ann"))
    assert handle.result(timeout=10) == {"doubled": 42, "approval": "ann"}

    spans = ended_run_spans(exporter, "completed")
    (execute,) = by_name(spans, "workflow.execute")
    assert execute.parent.span_id == request.get_span_context().span_id
    assert execute.kind is trace.SpanKind.CLIENT
    assert dict(execute.attributes) == {"workflow.id": workflow_id,
                                        "workflow.type": "otel_tests.approved_double",
                                        "workflow.run_id": handle.run_id}
    trace_id = request.get_span_context().trace_id
    runs = by_name(spans, "workflow.run")
    assert len(runs) >= 2  # the first activation suspends for the signal; another ends the run
    for run in runs:
        assert run.context.trace_id == trace_id
        assert run.parent.span_id == execute.context.span_id
        assert run.attributes["workflow.id"] == workflow_id
        assert run.attributes["workflow.type"] == "otel_tests.approved_double"
        assert run.attributes["workflow.run_id"] == handle.run_id
    assert runs[-1].attributes["workflow.status"] == "completed"
    (activity_span,) = by_name(spans, "activity.run")  # replays run no activity again
    assert activity_span.attributes["activity.name"] == "otel_tests.double"
    assert activity_span.attributes["workflow.run_id"] == handle.run_id
    assert activity_span.parent.span_id in {r.context.span_id for r in runs}
    (signal,) = by_name(spans, "workflow.signal")
    assert signal.attributes["workflow.id"] == workflow_id
    assert signal.context.trace_id != trace_id  # sent outside the request's span
    assert by_name(spans, "workflow.query")


def ended_run_spans(exporter: InMemorySpanExporter, status: str) -> list:
    """The finished spans once the run's last ``workflow.run`` span has ended too: the run's
    end is written inside that activation, so ``result()`` can return just before it ends."""
    def ended() -> list:
        spans = exporter.get_finished_spans()
        return spans if any(s.name == "workflow.run"
                            and s.attributes.get("workflow.status") == status
                            for s in spans) else []
    return list(wait_until(ended, message=f"the {status} run's last workflow.run span"))


def test_errors_are_recorded_on_their_spans(traced):
    executor, exporter, tracer = traced
    handle = executor.execute(refused, WorkflowOptions(id=unique("otel"), input=1))
    with pytest.raises(WorkflowFailedError):
        handle.result(timeout=10)
    with pytest.raises(WorkflowNotFoundError):
        executor.signal(unique("missing"), Signal(name="approval"))

    spans = ended_run_spans(exporter, "failed")
    (attempt,) = by_name(spans, "activity.run")
    assert attempt.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"].rsplit(".", 1)[-1] for e in attempt.events] == [
        "NonRetryableError"]
    (run,) = by_name(spans, "workflow.run")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["workflow.status"] == "failed"
    (signal,) = by_name(spans, "workflow.signal")
    assert signal.status.status_code is StatusCode.ERROR
    assert signal.events[0].attributes["exception.type"].endswith("WorkflowNotFoundError")


def test_nothing_is_emitted_or_stored_without_a_configured_sdk():
    executor = LocalExecutor(store=MemoryStore(), sweep_interval=0.2)
    executor.add_hooks(TracingHooks(tracer_provider=trace.NoOpTracerProvider()))
    try:
        handle = executor.execute(approved_double, WorkflowOptions(id=unique("otel"), input=2))
        executor.signal(handle.id, Signal(name="approval", payload="bo"))
        assert handle.result(timeout=10)["doubled"] == 4
        started = executor.store.history(handle.id, limit=1)[0]
        assert started.result is None  # no trace context was stored with the run
    finally:
        executor.close()


WITHOUT_OTEL = textwrap.dedent('''
    import sys
    sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
    import django
    django.setup()
    from beluga_workflows import WorkflowContext, WorkflowOptions, workflow
    from beluga_workflows.runtimes.local import LocalExecutor
    from beluga_workflows.stores.memory import MemoryStore

    @workflow(name="plain.greet")
    def greet(ctx: WorkflowContext, name: str) -> str:
        return ctx.side_effect(lambda: "hello " + name)

    executor = LocalExecutor(store=MemoryStore())
    print(executor.execute(greet, WorkflowOptions(input="ann")).result(timeout=10))
    executor.close()
    try:
        from beluga_workflows.contrib.opentelemetry import TracingHooks
        TracingHooks()
    except ImportError as exc:
        print("ImportError:", exc)
''')


def test_without_the_extra_the_app_runs_and_tracing_hooks_name_the_extra():
    done = subprocess.run([sys.executable, "-c", WITHOUT_OTEL], cwd=REPO, capture_output=True,
                          text=True, timeout=120,
                          env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin",
                               "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "hello ann"
    assert lines[1].startswith("ImportError: ")
    assert "pip install 'beluga-workflows[otel]'" in lines[1]
