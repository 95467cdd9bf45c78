"""Asking people from workflows: ``HumanActivity``, and listing and answering pending requests."""

from .activity import (
    HUMAN_DECISIONS,
    HUMAN_SIGNAL_PREFIX,
    HUMAN_WAIT_KIND,
    NO_HUMAN_TASK,
    STALE_HUMAN_TASK,
    HumanActivity,
)
from .tasks import (
    HumanTask,
    WaitingRun,
    answer_human_task,
    count_pending_human_tasks,
    human_task_of,
    list_pending_human_tasks,
    pending_human_task,
)

__all__ = [
    "HUMAN_DECISIONS",
    "HUMAN_SIGNAL_PREFIX",
    "HUMAN_WAIT_KIND",
    "NO_HUMAN_TASK",
    "STALE_HUMAN_TASK",
    "HumanActivity",
    "HumanTask",
    "WaitingRun",
    "answer_human_task",
    "count_pending_human_tasks",
    "human_task_of",
    "list_pending_human_tasks",
    "pending_human_task",
]
