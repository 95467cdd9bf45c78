"""Activities shipped with the engine: call a language model, call a tool.

Instances go straight into ``ctx.execute_activity``::

    summarise = LLMActivity(client.complete, name="llm.summarise")
    text = ctx.execute_activity(summarise, "Summarise: ...")

``HumanActivity`` (ask a person) lives in ``beluga_workflows.human``; ``beluga_workflows.activities``
offers all three.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InvalidInputError
from .registry import ActivityDefinition, _check_name

__all__ = ["LLMActivity", "NamedActivity", "ToolActivity"]


class NamedActivity:
    """Base of activity objects recorded under a fixed name (``LLMActivity``, ``ToolActivity``...)."""

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


class LLMActivity(NamedActivity):
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


class ToolActivity(NamedActivity):
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
