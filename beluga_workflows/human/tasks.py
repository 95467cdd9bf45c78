"""Pending human tasks: list the runs waiting for a person, find each one's request, answer it.

The admin's "Human tasks" pages and the REST API's ``/human-tasks/`` both list and answer through
these functions, so each rule (which runs wait for a person, what counts as pending, what an
answer must be) is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..engine.errors import InvalidInputError, WorkflowNotFoundError, WorkflowNotRunningError
from ..engine.serialization import to_json_value
from ..engine.types import (
    EventType,
    HistoryEvent,
    Signal,
    WorkflowFilter,
    WorkflowState,
    WorkflowStatus,
)
from .activity import (
    HUMAN_DECISIONS,
    HUMAN_SIGNAL_PREFIX,
    HUMAN_WAIT_KIND,
    NO_HUMAN_TASK,
    STALE_HUMAN_TASK,
)

if TYPE_CHECKING:
    from ..engine.executor import WorkflowExecutor
    from ..stores.base import WorkflowStore

__all__ = [
    "HumanTask",
    "WaitingRun",
    "answer_human_task",
    "count_pending_human_tasks",
    "human_task_of",
    "list_pending_human_tasks",
    "pending_human_task",
]


@dataclass
class HumanTask:
    """A request of a ``HumanActivity`` still waiting for its answer."""

    workflow_id: str
    run_id: str
    workflow_type: str
    request_id: str
    title: str
    description: str
    choices: list[str]
    data: Any
    asked_at: datetime
    due_at: datetime | None


def pending_human_task(state: WorkflowState, history: list[HistoryEvent]) -> HumanTask | None:
    """The human task ``state`` waits for, from its ``history``; ``None`` when there is none.

    A request counts as pending while the run is open, no answer was recorded for it, and no
    answer waits in its inbox (``state.signals``, when the store loaded them).
    """
    if not state.is_open or not state.wait_name.startswith(HUMAN_SIGNAL_PREFIX):
        return None
    request_id = state.wait_name
    asked: HistoryEvent | None = None
    for event in history:
        if event.signal_name != request_id:
            continue
        if event.type is EventType.SIGNAL_WAIT_STARTED and isinstance(event.input, dict):
            asked = event
        elif event.type in (EventType.SIGNAL_RECEIVED, EventType.SIGNAL_TIMED_OUT):
            return None
    if asked is None or any(s.name == request_id for s in state.signals):
        return None
    request = asked.input
    return HumanTask(
        workflow_id=state.workflow_id, run_id=state.run_id, workflow_type=state.workflow_type,
        request_id=request_id, title=str(request.get("title", "")),
        description=str(request.get("description", "")),
        choices=list(request.get("choices") or HUMAN_DECISIONS), data=request.get("data"),
        asked_at=asked.timestamp, due_at=asked.fire_at,
    )


@dataclass
class WaitingRun:
    """An open run the store lists as waiting for a person, with the request it waits for.

    ``task`` is ``None`` when the request was answered (or timed out) after the store listed the
    run and before its history was read: the run resumes shortly. The admin shows such a run as
    "answered"; the API leaves it out of its page.
    """

    state: WorkflowState
    task: HumanTask | None


def _waiting_for_a_person(workflow_type: str | None = None, *, offset: int = 0,
                          limit: int = 0) -> WorkflowFilter:
    return WorkflowFilter(status=WorkflowStatus.RUNNING, wait_kind=HUMAN_WAIT_KIND,
                          workflow_type=workflow_type or None, offset=offset, limit=limit)


def count_pending_human_tasks(store: WorkflowStore, *, workflow_type: str | None = None) -> int:
    """How many open runs wait for a person (of ``workflow_type``, when given): one ``count``.

    A run whose answer arrived but which has not resumed yet still counts.
    """
    return store.count(_waiting_for_a_person(workflow_type))


def list_pending_human_tasks(
    store: WorkflowStore,
    *,
    workflow_type: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> list[WaitingRun]:
    """The runs waiting for a person, newest first, each with the request it waits for.

    One ``store.list`` for the page, then one ``store.history`` per listed run (so the cost is
    bounded by ``limit``). Paginate with ``offset``/``limit`` and count with
    ``count_pending_human_tasks``.
    """
    states = store.list(_waiting_for_a_person(workflow_type, offset=offset, limit=limit))
    return [WaitingRun(state, human_task_of(store, state)) for state in states]


def human_task_of(store: WorkflowStore, state: WorkflowState) -> HumanTask | None:
    """The task ``state`` waits for, reading its history from ``store``; ``None`` when there is
    none (it waits for something else, has ended, or the request was answered)."""
    if state.wait_kind != HUMAN_WAIT_KIND or not state.is_open:
        return None
    return pending_human_task(state, store.history(state.workflow_id))


def answer_human_task(
    workflow_id: str,
    decision: str,
    feedback: str = "",
    modified: Any = None,
    *,
    request_id: str | None = None,
    sender_id: str = "",
    executor: WorkflowExecutor | None = None,
) -> Signal:
    """Answer the human task ``workflow_id`` waits for; the workflow resumes with the answer.

    Args:
        request_id: the request being answered (as listed); refused if the run now waits for
            another one. ``None``: whatever request the run waits for.
        sender_id: who answers (kept with the signal).

    Raises:
        WorkflowNotFoundError: no such workflow.
        WorkflowNotRunningError: its run has ended.
        InvalidInputError: it waits for no human task (code ``no_human_task``: the task was
            answered or timed out), it waits for another one than ``request_id`` (code
            ``stale_human_task``), the decision is not one of the task's choices, or the
            feedback/modified value is invalid.
    """
    if executor is None:
        from ..runtimes import get_executor

        executor = get_executor()
    state = executor.store.load(workflow_id)
    if state is None:
        raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}", workflow_id=workflow_id)
    if not state.is_open:
        raise WorkflowNotRunningError(f"workflow {workflow_id!r} has ended ({state.status.value})",
                                      workflow_id=workflow_id)
    task = pending_human_task(state, state.history)
    if task is None:
        raise InvalidInputError(
            f"workflow {workflow_id!r} has no pending human task"
            + (f" {request_id!r}" if request_id else "") + " (it was answered or timed out)",
            workflow_id=workflow_id, code=NO_HUMAN_TASK,
        )
    if request_id is not None and task.request_id != request_id:
        raise InvalidInputError(
            f"workflow {workflow_id!r} has no pending human task {request_id!r} (it was answered "
            f"or timed out); it now waits for {task.request_id!r}",
            workflow_id=workflow_id, code=STALE_HUMAN_TASK,
        )
    if decision not in task.choices:
        raise InvalidInputError(f"decision {decision!r} is not one of {', '.join(task.choices)}",
                                workflow_id=workflow_id)
    if not isinstance(feedback, str):
        raise InvalidInputError("feedback must be a string", workflow_id=workflow_id)
    modified = to_json_value(modified, "modified value", max_bytes=executor.max_payload_bytes)
    payload = {"decision": decision, "feedback": feedback, "modified": modified}
    return executor.signal(workflow_id, Signal(name=task.request_id, payload=payload,
                                               sender_id=sender_id))
