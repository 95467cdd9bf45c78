"""The import path of wave 1 for ``beluga_workflows.engine.context``, kept for existing code."""

from .engine.context import (  # noqa: F401
    HUMAN_SIGNAL_PREFIX,
    HUMAN_WAIT_KIND,
    WorkflowContext,
)

__all__ = [
    "HUMAN_SIGNAL_PREFIX",
    "HUMAN_WAIT_KIND",
    "WorkflowContext",
]
