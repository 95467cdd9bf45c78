"""Tracing in the worker processes of tests/celery/test_tracing.py: their spans, as JSON lines.

A worker is another process, so its spans cannot reach the test's in-memory exporter: with
``BELUGA_TEST_SPANS_FILE`` set, the worker settings add ``worker_tracing_hooks`` to the hooks,
which exports every span the worker ends to that file (one JSON object a line, appended and
flushed at once), for the test to read back.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from beluga_workflows.contrib.opentelemetry import TracingHooks


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """What the test needs of a span, as JSON values (ids as hex, like traceparent)."""
    return {
        "name": span.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "kind": span.kind.name,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "pid": os.getpid(),
    }


class JsonLinesExporter(SpanExporter):
    """Appends each ended span to ``path`` as one JSON line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span)) + "\n" for span in spans)
        with self.lock, open(self.path, "a") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


def worker_tracing_hooks() -> TracingHooks:
    """``BELUGA_WORKFLOWS["HOOKS"]`` entry of the workers: TracingHooks on a provider of their own."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ["BELUGA_TEST_SPANS_FILE"])))
    return TracingHooks(tracer_provider=provider)
