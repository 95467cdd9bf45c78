"""The import path of wave 1 for ``beluga_workflows.engine.types``, kept for existing code."""

from .engine.types import (  # noqa: F401
    EventType,
    HistoryEvent,
    Signal,
    WorkflowFilter,
    WorkflowOptions,
    WorkflowState,
    WorkflowStatus,
    to_seconds,
    utcnow,
)

__all__ = [
    "EventType",
    "HistoryEvent",
    "Signal",
    "WorkflowFilter",
    "WorkflowOptions",
    "WorkflowState",
    "WorkflowStatus",
    "to_seconds",
    "utcnow",
]
