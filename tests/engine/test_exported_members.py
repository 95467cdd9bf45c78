"""``beluga_workflows.__all__`` is exactly the public API of API.md, and every name in it imports."""

from __future__ import annotations

import beluga_workflows
import beluga_workflows.errors

# The names API.md §1-§3 makes importable from ``beluga_workflows``.
API_NAMES = {
    # writing workflows
    "workflow",
    "activity",
    "RetryPolicy",
    "DefaultRetryPolicy",
    "WorkflowContext",
    # starting and steering
    "get_executor",
    "get_store",
    "WorkflowOptions",
    "Signal",
    "WorkflowFilter",
    # types
    "WorkflowStatus",
    "EventType",
    "WorkflowState",
    "HistoryEvent",
    # errors
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowAlreadyExistsError",
    "InvalidInputError",
    "WorkflowNotRunningError",
    "WorkflowFailedError",
    "WorkflowCanceledError",
    "WorkflowTimeoutError",
    "ActivityError",
    "NonRetryableError",
    "HistoryTooLongError",
    "NonDeterminismError",
    "SignalTimeoutError",
    "StoreError",
    # hooks, middleware, executor registry
    "Hooks",
    "compose_hooks",
    "apply_middleware",
    "with_hooks",
    "register",
    "new",
    "list_executors",
    # events (API.md §8)
    "Event",
    "SendResult",
    "Trigger",
    "CancelOn",
    "send_event",
    "RetryAfterError",
    "NonRetriableError",
    # flow control (API.md §9)
    "Concurrency",
    "Throttle",
    "RateLimit",
    "RateLimitExceededError",
    "Debounce",
    "Batch",
    # child workflows and schedules (API.md §10)
    "ChildWorkflowError",
    "Cron",
}
# Not spelled out by API.md but the types of what get_executor() and execute() return, which
# users annotate with and subclass (a runtime is a WorkflowExecutor subclass).
RETURN_TYPES = {"WorkflowExecutor", "WorkflowHandle"}

ERROR_NAMES = {
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowAlreadyExistsError",
    "InvalidInputError",
    "WorkflowNotRunningError",
    "WorkflowFailedError",
    "WorkflowCanceledError",
    "WorkflowTimeoutError",
    "ActivityError",
    "NonRetryableError",
    "HistoryTooLongError",
    "NonDeterminismError",
    "SignalTimeoutError",
    "StoreError",
    "RetryAfterError",
    "NonRetriableError",
    "RateLimitExceededError",
}


def test_all_is_exactly_the_public_api():
    assert set(beluga_workflows.__all__) == API_NAMES | RETURN_TYPES
    assert len(beluga_workflows.__all__) == len(set(beluga_workflows.__all__))


def test_every_exported_name_is_importable():
    for name in beluga_workflows.__all__:
        assert getattr(beluga_workflows, name, None) is not None, name
        # Classes and functions say they belong to the package (no leaked third-party names).
        member = getattr(beluga_workflows, name)
        assert member.__module__.startswith("beluga_workflows"), name


def test_errors_module_and_package_export_the_same_classes():
    for name in ERROR_NAMES:
        assert getattr(beluga_workflows.errors, name) is getattr(beluga_workflows, name)
        assert issubclass(getattr(beluga_workflows, name), beluga_workflows.WorkflowError)
    assert issubclass(beluga_workflows.WorkflowNotRunningError, beluga_workflows.InvalidInputError)
    assert beluga_workflows.NonRetriableError is beluga_workflows.NonRetryableError


def test_error_codes():
    codes = {name: getattr(beluga_workflows, name).code for name in ERROR_NAMES}
    assert codes["WorkflowNotFoundError"] == "not_found"
    assert codes["InvalidInputError"] == "invalid_input"
    assert codes["WorkflowAlreadyExistsError"] == "conflict"
    assert codes["StoreError"] == "provider_unavailable"
    assert codes["WorkflowTimeoutError"] == "timeout"


def test_enum_spellings():
    statuses = {s.value for s in beluga_workflows.WorkflowStatus}
    assert statuses == {"running", "completed", "failed", "canceled", "timed_out"}
    required = {
        "workflow_started",
        "workflow_completed",
        "workflow_failed",
        "workflow_canceled",
        "activity_started",
        "activity_completed",
        "activity_failed",
        "signal_received",
        "timer_fired",
    }
    assert required <= {e.value for e in beluga_workflows.EventType}
