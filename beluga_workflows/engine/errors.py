"""Errors raised by beluga_workflows.

Every error is a ``WorkflowError`` with a machine-readable ``code``; the classes group by what the
caller cares about, not by where they are raised::

    WorkflowError                      code
    ├── WorkflowNotFoundError          not_found
    ├── WorkflowAlreadyExistsError     conflict
    ├── InvalidInputError              invalid_input
    │   └── WorkflowNotRunningError    not_running   (signal/cancel of an ended run)
    ├── WorkflowFailedError            failed        (handle.result() of a failed run)
    ├── WorkflowCanceledError          canceled      (inside the workflow, and from handle.result())
    ├── WorkflowTimeoutError           timeout       (handle.result() of a timed-out run)
    ├── ActivityError                  activity_failed (an activity failed for good)
    ├── NonRetryableError              non_retryable (raise it in an activity to stop retrying;
    │                                                 alias NonRetriableError, Inngest's spelling)
    ├── RetryAfterError                retry_after   (raise it in an activity: retry after a delay)
    ├── NonDeterminismError            non_determinism (replay diverged from the history)
    ├── SignalTimeoutError             timeout       (receive_signal(timeout=...) ran out)
    └── StoreError                     provider_unavailable
        └── ConflictError              conflict      (a compare-and-set or lease lost)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActivityError",
    "ChildWorkflowError",
    "ConflictError",
    "InvalidInputError",
    "NonDeterminismError",
    "NonRetriableError",
    "NonRetryableError",
    "RateLimitExceededError",
    "RetryAfterError",
    "SignalTimeoutError",
    "StoreError",
    "WorkflowAlreadyExistsError",
    "WorkflowCanceledError",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowTimeoutError",
]


class WorkflowError(Exception):
    """Base of every beluga_workflows error.

    Attributes:
        code: a short machine-readable code (``not_found``, ``invalid_input``, ``conflict``, ...).
        workflow_id: the workflow concerned, when there is one.
    """

    code = "error"

    def __init__(self, message: str = "", *, workflow_id: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.workflow_id = workflow_id
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class WorkflowNotFoundError(WorkflowError):
    """No workflow with that id exists in the store."""

    code = "not_found"


class WorkflowAlreadyExistsError(WorkflowError):
    """A run with that workflow id is still open."""

    code = "conflict"


class InvalidInputError(WorkflowError):
    """The caller gave something the API cannot accept; nothing was changed."""

    code = "invalid_input"


class WorkflowNotRunningError(InvalidInputError):
    """The run has ended, so it can no longer be signalled or canceled."""

    code = "not_running"


class WorkflowFailedError(WorkflowError):
    """The run failed; ``error`` holds the recorded ``{"type", "message", "traceback"}``."""

    code = "failed"

    def __init__(self, message: str = "", *, workflow_id: str | None = None, error: dict | None = None):
        super().__init__(message, workflow_id=workflow_id)
        self.error = error or {}


class WorkflowCanceledError(WorkflowError):
    """The run was canceled.

    Raised inside workflow code by the first ``ctx`` call after a cancel was requested (catch it to
    run clean-up activities), and by ``handle.result()`` for a canceled run.
    """

    code = "canceled"


class WorkflowTimeoutError(WorkflowError):
    """The run passed its ``WorkflowOptions.timeout`` and ended ``timed_out``."""

    code = "timeout"


class ActivityError(WorkflowError):
    """An activity failed for good: attempts exhausted, a non-retryable error, or a bad result.

    Attributes:
        activity_name: the activity's registered name.
        attempts: how many attempts were made.
        cause: the last attempt's error as ``{"type", "message", "traceback"}``.
    """

    code = "activity_failed"

    def __init__(
        self,
        message: str = "",
        *,
        workflow_id: str | None = None,
        activity_name: str = "",
        attempts: int = 0,
        cause: dict | None = None,
    ):
        super().__init__(message, workflow_id=workflow_id)
        self.activity_name = activity_name
        self.attempts = attempts
        self.cause = cause or {}


class ChildWorkflowError(WorkflowError):
    """A child workflow (``ctx.start_child`` / ``execute_child``) did not complete.

    Attributes:
        child_id: the child's workflow id.
        status: how it ended (``"failed"``, ``"canceled"``, ``"timed_out"``).
        cause: its error as recorded (``{"type", "message", "traceback"}``).
    """

    code = "child_failed"

    def __init__(self, message: str = "", *, workflow_id: str | None = None, child_id: str = "",
                 status: str = "failed", cause: dict | None = None):
        super().__init__(message, workflow_id=workflow_id)
        self.child_id = child_id
        self.status = status
        self.cause = cause or {}


class NonRetryableError(WorkflowError):
    """Raise this from an activity to fail it at once, without further attempts."""

    code = "non_retryable"


# Inngest's spelling of the same class.
NonRetriableError = NonRetryableError


class RetryAfterError(WorkflowError):
    """Raise this from an activity to have it retried after ``delay``, whatever the backoff says.

    The failed attempt counts as one (a policy's ``max_attempts`` still ends the retries); the
    next attempt is due ``delay`` after it failed, without jitter.

    Args:
        delay: a duration (``timedelta``, seconds, or a string such as ``"30s"``).
        message: what went wrong (recorded as the attempt's error).

    Attributes:
        delay: the delay in seconds.

    Raises:
        InvalidInputError: ``delay`` is not a duration.
    """

    code = "retry_after"

    def __init__(self, delay: Any, message: str = "", *, workflow_id: str | None = None):
        from .types import to_seconds  # types imports this module

        seconds = to_seconds(delay, "RetryAfterError delay")
        if seconds is None:
            raise InvalidInputError("RetryAfterError needs a delay")
        super().__init__(message or f"retry after {seconds:g} s", workflow_id=workflow_id)
        self.delay = seconds


class RateLimitExceededError(WorkflowError):
    """``execute`` of a workflow whose ``RateLimit`` this start would exceed: nothing was started.

    Attributes:
        retry_at: when a start of the same key conforms again (an aware datetime).
    """

    code = "rate_limited"

    def __init__(self, message: str = "", *, workflow_id: str | None = None, retry_at: Any = None):
        super().__init__(message, workflow_id=workflow_id)
        self.retry_at = retry_at


class NonDeterminismError(WorkflowError):
    """Replaying the workflow code diverged from its recorded history; the run is failed."""

    code = "non_determinism"


class HistoryTooLongError(WorkflowError):
    """The run was about to record more than ``MAX_HISTORY_EVENTS`` events; the run is failed
    (a run that loops for ever should ``ctx.continue_as_new``)."""

    code = "history_too_long"


class SignalTimeoutError(WorkflowError):
    """``ctx.receive_signal(name, timeout=...)`` saw no signal of that name in time."""

    code = "timeout"


class StoreError(WorkflowError):
    """The store backend failed or could not be reached."""

    code = "provider_unavailable"

    def __init__(self, message: str = "", *, workflow_id: str | None = None, code: str | None = None):
        super().__init__(message, workflow_id=workflow_id, code=code)


class ConflictError(StoreError):
    """A concurrent writer won: the version or lease this write depended on has changed."""

    code = "conflict"


def describe_exception(exc: BaseException, tb: str | None = None) -> dict[str, Any]:
    """Return the JSON form of an exception that histories and states record."""
    import traceback

    if tb is None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"type": type(exc).__name__, "message": str(exc), "traceback": tb}
