"""beluga_workflows: durable workflows for Django.

Workflows are plain Python functions, checkpointed step by step and replayed after any interruption
without re-running what already completed. The public names are exactly those in ``__all__``.
"""

from .engine.context import WorkflowContext
from .engine.errors import (
    ActivityError,
    ChildWorkflowError,
    HistoryTooLongError,
    InvalidInputError,
    NonDeterminismError,
    NonRetriableError,
    NonRetryableError,
    RateLimitExceededError,
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
from .engine.events import CancelOn, Event, SendResult, Trigger
from .engine.executor import WorkflowExecutor, WorkflowHandle
from .engine.flow import Batch, Concurrency, Debounce, RateLimit, Throttle
from .engine.hooks import Hooks, compose_hooks
from .engine.middleware import apply_middleware, with_hooks
from .engine.registry import activity, workflow
from .engine.retry import DefaultRetryPolicy, RetryPolicy
from .engine.schedules import Cron
from .engine.types import (
    EventType,
    HistoryEvent,
    Signal,
    WorkflowFilter,
    WorkflowOptions,
    WorkflowState,
    WorkflowStatus,
)
from .events import send_event
from .runtimes import get_executor, list_executors, new, register
from .stores import get_store

__all__ = [
    "ActivityError",
    "ChildWorkflowError",
    "Batch",
    "CancelOn",
    "Concurrency",
    "Cron",
    "Debounce",
    "DefaultRetryPolicy",
    "Event",
    "EventType",
    "HistoryEvent",
    "Hooks",
    "InvalidInputError",
    "HistoryTooLongError",
    "NonDeterminismError",
    "NonRetriableError",
    "NonRetryableError",
    "RateLimit",
    "RateLimitExceededError",
    "RetryAfterError",
    "RetryPolicy",
    "SendResult",
    "Signal",
    "SignalTimeoutError",
    "StoreError",
    "Throttle",
    "Trigger",
    "WorkflowAlreadyExistsError",
    "WorkflowCanceledError",
    "WorkflowContext",
    "WorkflowError",
    "WorkflowExecutor",
    "WorkflowFailedError",
    "WorkflowFilter",
    "WorkflowHandle",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowOptions",
    "WorkflowState",
    "WorkflowStatus",
    "WorkflowTimeoutError",
    "activity",
    "apply_middleware",
    "compose_hooks",
    "get_executor",
    "get_store",
    "list_executors",
    "new",
    "register",
    "send_event",
    "with_hooks",
    "workflow",
]

__version__ = "0.1.0"
