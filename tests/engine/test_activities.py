"""The activities shipped with the app: LLMActivity and ToolActivity validate what they are given."""

from __future__ import annotations

import pytest

from beluga_workflows import (
    ActivityError,
    EventType,
    InvalidInputError,
    RetryPolicy,
    WorkflowOptions,
    workflow,
)
from beluga_workflows.activities import LLMActivity, ToolActivity

from .support import Calls

CALLS = Calls()


def fake_llm(prompt: str) -> str:
    CALLS.hit("llm")
    return f"summary of {prompt!r}"


def fake_tools(name: str, args: dict):
    CALLS.hit(("tool", name))
    if name == "add":
        return args["a"] + args["b"]
    raise KeyError(name)


summarise = LLMActivity(fake_llm, name="engine.activities.summarise")
tools = ToolActivity(fake_tools, name="engine.activities.tools")


def test_llm_activity_calls_invoke_with_a_prompt():
    assert summarise("text") == "summary of 'text'"
    assert repr(summarise) == "<LLMActivity engine.activities.summarise>"
    assert LLMActivity(fake_llm).__name__ == "llm"


@pytest.mark.parametrize("prompt", [None, 42, {"prompt": "x"}, ["x"]])
def test_llm_activity_refuses_a_non_string_prompt(prompt):
    with pytest.raises(InvalidInputError) as info:
        summarise(prompt)
    assert "must be a string prompt" in str(info.value)


def test_llm_activity_refuses_a_non_string_answer_and_a_non_callable():
    with pytest.raises(InvalidInputError) as info:
        LLMActivity(lambda prompt: {"text": prompt})("hi")
    assert "returned dict, not str" in str(info.value)
    with pytest.raises(InvalidInputError):
        LLMActivity("not callable")


def test_tool_activity_calls_execute_with_name_and_args():
    assert tools({"name": "add", "args": {"a": 2, "b": 3}}) == 5
    assert ToolActivity(lambda name, args: (name, args))({"name": "ping"}) == ("ping", {})


@pytest.mark.parametrize(
    "call, named",
    [
        ({"args": {}}, "missing the tool name"),
        ({"name": "", "args": {}}, "missing the tool name"),
        ({"name": 3}, "missing the tool name"),
        ("add", 'input must be {"name": str, "args": dict}'),
        ({"name": "add", "args": [1, 2]}, "args must be a dict"),
    ],
)
def test_tool_activity_refuses_bad_calls(call, named):
    with pytest.raises(InvalidInputError) as info:
        tools(call)
    assert named in str(info.value)
    with pytest.raises(InvalidInputError):
        ToolActivity(None)


@workflow(name="engine.activities.agent")
def agent(ctx, spec: dict) -> dict:
    text = ctx.execute_activity(summarise, spec["prompt"])
    total = ctx.execute_activity(tools, {"name": "add", "args": {"a": 1, "b": 2}})
    try:
        ctx.execute_activity(tools, {"args": {}}, retry=RetryPolicy(max_attempts=5))
    except ActivityError as exc:
        bad = {"attempts": exc.attempts, "cause": exc.cause["type"]}
    return {"text": text, "total": total, "bad": bad}


def test_shipped_activities_run_durably_in_a_workflow(env):
    before = CALLS["llm"]
    handle = env.execute(agent, WorkflowOptions(input={"prompt": "the report"}))
    assert handle.result() == {
        "text": "summary of 'the report'",
        "total": 3,
        # A refused input is the caller's bug: it is not retried.
        "bad": {"attempts": 1, "cause": "InvalidInputError"},
    }
    assert CALLS["llm"] == before + 1
    names = [
        e.activity_name
        for e in env.store.load(handle.id).history
        if e.type is EventType.ACTIVITY_COMPLETED
    ]
    assert names == ["engine.activities.summarise", "engine.activities.tools"]


def test_shipped_activities_are_recorded_under_their_own_names():
    from beluga_workflows.engine.registry import activity_definition

    assert activity_definition(summarise).name == "engine.activities.summarise"
    assert activity_definition(LLMActivity(fake_llm)).name == "llm"
    assert activity_definition(ToolActivity(fake_tools)).name == "tool"
    with pytest.raises(InvalidInputError):
        LLMActivity(fake_llm, name="x" * 300)
