"""Starting and steering workflows (the import path of wave 1, kept for existing code).

The executor and its handles are the engine's (``beluga_workflows.engine.executor``); the registry
and the configured executor are ``beluga_workflows.runtimes``'.
"""

from .engine.executor import (
    BUILTIN_QUERIES,
    MAX_ID_LENGTH,
    WorkflowExecutor,
    WorkflowHandle,
    outcome_of,
    validate_workflow_id,
)
from .runtimes import (
    configured_hooks,
    create_executor,
    get_executor,
    list_executors,
    new,
    register,
    reset_executor,
)

__all__ = [
    "BUILTIN_QUERIES",
    "MAX_ID_LENGTH",
    "WorkflowExecutor",
    "WorkflowHandle",
    "configured_hooks",
    "create_executor",
    "get_executor",
    "list_executors",
    "new",
    "outcome_of",
    "register",
    "reset_executor",
    "validate_workflow_id",
]
