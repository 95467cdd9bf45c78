"""Activities shipped with the app (API section 7): call a language model, call a tool, ask a person.

``LLMActivity`` and ``ToolActivity`` are the engine's (``beluga_workflows.engine.activities``);
``HumanActivity`` and the pending-task helpers are ``beluga_workflows.human``'s. This module keeps
the one import path for all of them.
"""

from .engine.activities import LLMActivity, ToolActivity
from .human import (
    HUMAN_DECISIONS,
    NO_HUMAN_TASK,
    STALE_HUMAN_TASK,
    HumanActivity,
    HumanTask,
    answer_human_task,
    pending_human_task,
)

__all__ = [
    "HUMAN_DECISIONS",
    "NO_HUMAN_TASK",
    "STALE_HUMAN_TASK",
    "HumanActivity",
    "HumanTask",
    "LLMActivity",
    "ToolActivity",
    "answer_human_task",
    "pending_human_task",
]
