"""The Temporal activities of the worker: ours, one Temporal activity type per activity name.

``run_activity`` is a dynamic activity: Temporal hands it every activity type the workflows
schedule, and it runs the activity registered under that name (``engine.registry.find_activity``:
``@activity`` functions of the worker's imports, or a module-level function of that dotted name),
on the worker's thread pool. Its failure reaches Temporal as an ``ApplicationError`` whose type
is the exception's class name (what Temporal's non-retryable error types match) and whose
details carry our ``{"type", "message", "traceback"}`` and the attempt number.
``NonRetryableError`` (and ``InvalidInputError``) stop retrying at once; ``RetryAfterError``
sets Temporal's next retry delay.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from ...engine.errors import (
    InvalidInputError,
    NonRetryableError,
    RetryAfterError,
    describe_exception,
)
from ...engine.registry import find_activity
from ...engine.serialization import to_json_value
from .workflow import RECORD_VALUE

__all__ = ["record_value", "run_activity"]


@activity.defn(dynamic=True)
def run_activity(args: Sequence[RawValue]) -> Any:
    """Run our activity named by the Temporal activity type, with the one input it was given."""
    info = activity.info()
    name = info.activity_type
    data = activity.payload_converter().from_payload(args[0].payload) if args else None
    try:
        definition = find_activity(name)
        return to_json_value(definition(data), f"result of activity {name!r}")
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the workflow as data
        details = dict(describe_exception(exc), attempt=info.attempt)
        delay = timedelta(seconds=exc.delay) if isinstance(exc, RetryAfterError) else None
        raise ApplicationError(
            str(exc), details, type=type(exc).__name__,
            non_retryable=isinstance(exc, (NonRetryableError, InvalidInputError)),
            next_retry_delay=delay) from None


@activity.defn(name=RECORD_VALUE)
def record_value(value: Any) -> Any:
    """Return ``value``: as a local activity, its marker makes a side effect's value durable."""
    return value
