"""Activities shipped with the app: call a language model, call a tool, ask a person.

Instances go straight into ``ctx.execute_activity``::

    summarise = LLMActivity(client.complete, name="llm.summarise")
    text = ctx.execute_activity(summarise, "Summarise: ...")

    review = HumanActivity(title="Approve the refund", choices=("approve", "reject"),
                           timeout=timedelta(days=2))
    answer = ctx.execute_activity(review, {"order": 42, "amount": "19.90"})
    # -> {"decision": "approve", "feedback": "ok", "modified": None}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .context import HUMAN_SIGNAL_PREFIX, HUMAN_WAIT_KIND
from .errors import (
    InvalidInputError,
    SignalTimeoutError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from .registry import ActivityDefinition, _check_name
from .serialization import to_json_value
from .types import EventType, HistoryEvent, Signal, WorkflowState, to_seconds

if TYPE_CHECKING:
    from .executor import WorkflowExecutor

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


class _NamedActivity:
    default_name = "activity"

    def __init__(self, name: str | None = None) -> None:
        self.__name__ = self.__qualname__ = name or self.default_name
        self.__module__ = "beluga_workflows.activities"
        # Recorded in histories under exactly this name (not "<module>.<qualname>").
        self.__beluga_activity__ = ActivityDefinition(
            _check_name(self.__name__, "activity"), self, takes_input=True
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__name__}>"


class LLMActivity(_NamedActivity):
    """Calls ``invoke(prompt) -> str``.

    Raises:
        InvalidInputError: the input is not a string, or ``invoke`` returned a non-string.
    """

    default_name = "llm"

    def __init__(self, invoke: Callable[[str], str], *, name: str | None = None) -> None:
        if not callable(invoke):
            raise InvalidInputError("LLMActivity needs a callable invoke(prompt) -> str")
        super().__init__(name)
        self.invoke = invoke

    def __call__(self, prompt: Any) -> str:
        if not isinstance(prompt, str):
            raise InvalidInputError(f"LLMActivity input must be a string prompt, not {type(prompt).__name__}")
        answer = self.invoke(prompt)
        if not isinstance(answer, str):
            raise InvalidInputError(f"LLMActivity invoke() returned {type(answer).__name__}, not str")
        return answer


class ToolActivity(_NamedActivity):
    """Calls ``execute(name, args)`` with input ``{"name": str, "args": dict}``.

    Raises:
        InvalidInputError: the input is not such a dict, or its name is missing.
    """

    default_name = "tool"

    def __init__(self, execute: Callable[[str, dict], Any], *, name: str | None = None) -> None:
        if not callable(execute):
            raise InvalidInputError("ToolActivity needs a callable execute(name, args)")
        super().__init__(name)
        self.execute = execute

    def __call__(self, call: Any) -> Any:
        if not isinstance(call, dict):
            raise InvalidInputError('ToolActivity input must be {"name": str, "args": dict}')
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInputError("ToolActivity input is missing the tool name")
        args = call.get("args") or {}
        if not isinstance(args, dict):
            raise InvalidInputError("ToolActivity args must be a dict")
        return self.execute(name, args)


# -- asking a person --------------------------------------------------------------------------------

HUMAN_DECISIONS = ("approve", "reject", "modify")
# Codes of the ``InvalidInputError`` answer_human_task raises when the request is not pending.
NO_HUMAN_TASK = "no_human_task"
STALE_HUMAN_TASK = "stale_human_task"


class HumanActivity(_NamedActivity):
    """Asks a person to decide on some data; returns ``{"decision", "feedback", "modified"}``.

    Pass it to ``ctx.execute_activity(task, data)``. The request (title, description, the data to
    review, the choices) is recorded in the run's history and the run suspends, holding no worker,
    until someone answers it from the admin's "Human tasks" page, the API or
    ``answer_human_task()``. The answer travels as a signal, so it is as durable as one: once
    accepted it is never lost, and on replay the recorded answer is returned again.

    Timeouts: with ``timeout`` and no ``timeout_decision``, an unanswered request raises
    ``SignalTimeoutError`` in the workflow (catch it to escalate); with ``timeout_decision``
    (one of ``choices``) the workflow instead gets ``{"decision": timeout_decision, "feedback":
    "no answer within the timeout", "modified": None}``.

    Args:
        title: what the person is asked, one line.
        description: more context (plain text).
        choices: the decisions offered, a non-empty subset of approve, reject, modify.
        timeout: how long to wait for an answer (``timedelta`` or seconds); ``None``: forever.
        timeout_decision: the decision taken when the timeout passes (default: raise).
        name: the activity's name in listings (default ``"human"``).

    Raises:
        InvalidInputError: on a bad title, choice, timeout or timeout decision.
    """

    default_name = "human"
    # Recognised by WorkflowContext.execute_activity, which waits on a signal instead of calling.
    __beluga_human__ = True

    def __init__(
        self,
        title: str,
        description: str = "",
        *,
        choices: tuple[str, ...] | list[str] = HUMAN_DECISIONS,
        timeout: timedelta | float | None = None,
        timeout_decision: str | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(title, str) or not title.strip():
            raise InvalidInputError("HumanActivity needs a non-empty title")
        if not isinstance(description, str):
            raise InvalidInputError("HumanActivity description must be a string")
        choices = tuple(choices or ())
        unknown = [c for c in choices if c not in HUMAN_DECISIONS]
        if not choices or unknown:
            raise InvalidInputError(
                f"HumanActivity choices must be a non-empty subset of {', '.join(HUMAN_DECISIONS)}"
                + (f"; unknown: {', '.join(map(repr, unknown))}" if unknown else "")
            )
        seconds = to_seconds(timeout, "HumanActivity timeout")
        if seconds is not None and seconds <= 0:
            raise InvalidInputError("HumanActivity timeout must be positive")
        if timeout_decision is not None and timeout_decision not in choices:
            raise InvalidInputError(
                f"HumanActivity timeout_decision {timeout_decision!r} is not one of its choices"
            )
        super().__init__(name)
        self.title, self.description, self.choices = title, description, choices
        self.timeout, self.timeout_decision = seconds, timeout_decision

    def __call__(self, data: Any) -> Any:
        raise InvalidInputError(
            "a HumanActivity is answered by a person: pass it to ctx.execute_activity in a workflow"
        )

    # -- the protocol WorkflowContext uses ----------------------------------------------------

    def human_request(self, data: Any) -> dict[str, Any]:
        """The request recorded in the history (the context adds its ``request_id``)."""
        return {"kind": HUMAN_WAIT_KIND, "activity": self.__name__, "title": self.title,
                "description": self.description, "choices": list(self.choices), "data": data}

    def human_answer(self, payload: Any) -> dict[str, Any]:
        """The workflow's view of an answer signal's payload."""
        if isinstance(payload, str):
            payload = {"decision": payload}
        if not isinstance(payload, dict):
            payload = {}
        feedback = payload.get("feedback")
        return {"decision": payload.get("decision"),
                "feedback": feedback if isinstance(feedback, str) else "",
                "modified": payload.get("modified")}

    def human_timed_out(self, workflow_id: str) -> dict[str, Any]:
        """What an unanswered request gives once its timeout passed (see the class docstring)."""
        if self.timeout_decision is None:
            raise SignalTimeoutError(f"human task {self.title!r} was not answered within "
                                     f"{self.timeout:g} s", workflow_id=workflow_id)
        return {"decision": self.timeout_decision, "feedback": "no answer within the timeout",
                "modified": None}


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
        from .executor import get_executor

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
