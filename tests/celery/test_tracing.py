"""One run through real Celery workers is one trace: the caller's ``workflow.execute`` span, then
the worker's ``workflow.run`` and ``activity.run`` spans under it, with their attributes."""

from __future__ import annotations

import json
import os

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from beluga_workflows import WorkflowOptions
from beluga_workflows.contrib.opentelemetry import TracingHooks

from . import workflows as test_workflows  # noqa: F401 - registers the test workflows
from .conftest import wait_for

pytestmark = pytest.mark.celery


def worker_spans(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_run_through_celery_workers_is_one_trace(cluster, tmp_path):
    spans_file = tmp_path / "worker-spans.jsonl"
    cluster.configure(BELUGA_TEST_SPANS_FILE=spans_file)
    cluster.start_workers(1)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cluster.executor.add_hooks(TracingHooks(tracer_provider=provider))

    with provider.get_tracer("tests").start_as_current_span("request") as request:
        handle = cluster.executor.execute("celery_tests.steps", WorkflowOptions(
            id="traced-0001", input={"steps": 2}))
    assert len(handle.result(timeout=60)) == 2

    (execute,) = [s for s in exporter.get_finished_spans() if s.name == "workflow.execute"]
    assert execute.parent.span_id == request.get_span_context().span_id
    trace_id = f"{execute.context.trace_id:032x}"
    expected = {"workflow.id": "traced-0001", "workflow.type": "celery_tests.steps",
                "workflow.run_id": handle.run_id}
    assert dict(execute.attributes) == expected

    # The run's end is recorded inside its last activation: that span ends just after.
    def ended_run() -> list[dict]:
        spans = worker_spans(spans_file)
        done = [s for s in spans if s["name"] == "workflow.run"
                and s["attributes"].get("workflow.status") == "completed"]
        return spans if done else []

    spans = wait_for(ended_run, 30, lambda: f"the worker's spans: {worker_spans(spans_file)}")
    runs = [s for s in spans if s["name"] == "workflow.run"]
    activities = [s for s in spans if s["name"] == "activity.run"]
    assert spans and all(s["pid"] != os.getpid() for s in spans)  # spans of the worker
    assert {s["trace_id"] for s in spans} == {trace_id}
    for run in runs:
        assert run["parent_id"] == f"{execute.context.span_id:016x}"
        assert run["attributes"] == {**expected, "workflow.status": run["attributes"]["workflow.status"]}
        assert run["status"] == "UNSET"
    run_ids = {run["span_id"] for run in runs}
    assert [a["attributes"] for a in activities] == [{**expected, "activity.name": "celery_tests.step"}] * 2
    assert all(a["parent_id"] in run_ids for a in activities)
