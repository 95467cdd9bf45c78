"""The import path of wave 1 for ``beluga_workflows.engine.errors``, kept for existing code."""

from .engine.errors import (  # noqa: F401
    ActivityError,
    ConflictError,
    InvalidInputError,
    NonDeterminismError,
    NonRetriableError,
    NonRetryableError,
    RetryAfterError,
    SignalTimeoutError,
    StoreError,
    WorkflowAlreadyExistsError,
    WorkflowCanceledError,
    WorkflowError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowTimeoutError,
)

__all__ = [
    "ActivityError",
    "ConflictError",
    "InvalidInputError",
    "NonDeterminismError",
    "NonRetriableError",
    "NonRetryableError",
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
