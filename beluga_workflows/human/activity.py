"""``HumanActivity``: ask a person from inside a workflow; the answer comes back as a signal.

    review = HumanActivity(title="Approve the refund", choices=("approve", "reject"),
                           timeout=timedelta(days=2))
    answer = ctx.execute_activity(review, {"order": 42, "amount": "19.90"})
    # -> {"decision": "approve", "feedback": "ok", "modified": None}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..engine.activities import NamedActivity
from ..engine.context import HUMAN_SIGNAL_PREFIX, HUMAN_WAIT_KIND
from ..engine.errors import InvalidInputError, SignalTimeoutError
from ..engine.types import to_seconds

__all__ = [
    "HUMAN_DECISIONS",
    "HUMAN_SIGNAL_PREFIX",
    "HUMAN_WAIT_KIND",
    "NO_HUMAN_TASK",
    "STALE_HUMAN_TASK",
    "HumanActivity",
]

# -- asking a person --------------------------------------------------------------------------------

HUMAN_DECISIONS = ("approve", "reject", "modify")
# Codes of the ``InvalidInputError`` answer_human_task raises when the request is not pending.
NO_HUMAN_TASK = "no_human_task"
STALE_HUMAN_TASK = "stale_human_task"


class HumanActivity(NamedActivity):
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
