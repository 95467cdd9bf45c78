"""Queries: custom handlers answered while the run is suspended, and the built-in queries."""

from __future__ import annotations

import pytest

from beluga_workflows import (
    EventType,
    InvalidInputError,
    Signal,
    WorkflowNotFoundError,
    WorkflowOptions,
    activity,
    workflow,
)

from .support import Calls, unique, wait_until, waiting_for_signal

CALLS = Calls()


@activity(name="engine.queries.step")
def step(data: dict) -> int:
    CALLS.hit(data["key"])
    return data["n"]


@workflow(name="engine.queries.tracked")
def tracked(ctx, key: str) -> dict:
    progress = {"done": [], "stage": "starting"}
    ctx.set_query_handler("progress", lambda: dict(progress))
    for n in (1, 2):
        progress["done"].append(ctx.execute_activity(step, {"key": key, "n": n}))
    progress["stage"] = "awaiting approval"
    approval = ctx.receive_signal("approve")
    progress["stage"] = "approved"
    progress["done"].append(ctx.execute_activity(step, {"key": key, "n": 3}))
    return {"approval": approval, "done": progress["done"]}


def test_custom_query_is_answered_while_the_run_is_suspended(store, make_local):
    executor = make_local()
    key = unique("query")
    handle = executor.execute(tracked, WorkflowOptions(id=key, input=key))
    wait_until(lambda: waiting_for_signal(store, key, "approve"), message="the run to suspend")
    history_before = len(store.load(key).history)

    assert executor.query(key, "progress") == {"done": [1, 2], "stage": "awaiting approval"}
    assert handle.query("progress") == {"done": [1, 2], "stage": "awaiting approval"}
    # Answering replayed the run read-only: nothing ran again, nothing was recorded.
    assert CALLS[key] == 2
    assert len(store.load(key).history) == history_before

    executor.signal(key, Signal(name="approve", payload="ok"))
    assert handle.result(timeout=5) == {"approval": "ok", "done": [1, 2, 3]}
    assert executor.query(key, "progress") == {"done": [1, 2, 3], "stage": "approved"}
    assert CALLS[key] == 3


def test_builtin_queries(env):
    key = unique("builtin")
    handle = env.execute(tracked, WorkflowOptions(id=key, input=key))
    env.run_until_idle()
    assert env.query(key, "status") == "running"
    assert env.query(key, "result") is None
    history = env.query(key, "history")
    assert [e["id"] for e in history] == list(range(1, len(history) + 1))
    assert history[0]["type"] == EventType.WORKFLOW_STARTED.value
    assert [e["type"] for e in history].count("activity_completed") == 2

    env.signal(key, Signal(name="approve", payload="yes"))
    handle.result()
    assert env.query(key, "status") == "completed"
    assert env.query(key, "result") == {"approval": "yes", "done": [1, 2, 3]}
    assert env.query(key, "history")[-1]["type"] == "workflow_completed"


def test_unknown_query_type_is_invalid_input(env):
    key = unique("unknown-query")
    env.execute(tracked, WorkflowOptions(id=key, input=key))
    env.run_until_idle()
    with pytest.raises(InvalidInputError) as info:
        env.query(key, "no_such_query")
    assert "no_such_query" in str(info.value)
    assert "progress" in str(info.value)  # says which queries it does answer
    with pytest.raises(InvalidInputError):
        env.query(key, "")


def test_query_of_unknown_workflow_is_not_found(env):
    with pytest.raises(WorkflowNotFoundError):
        env.query(unique("missing"), "status")
    with pytest.raises(WorkflowNotFoundError):
        env.query(unique("missing"), "progress")


@workflow(name="engine.queries.broken_handler")
def broken_handler(ctx, _=None):
    ctx.set_query_handler("ratio", lambda: 1 / 0)
    return ctx.receive_signal("never")


def test_query_handler_that_raises_is_a_clear_invalid_input_error(env):
    key = unique("broken-query")
    env.execute(broken_handler, WorkflowOptions(id=key))
    env.run_until_idle()
    with pytest.raises(InvalidInputError) as info:
        env.query(key, "ratio")
    assert info.value.code == "query_failed"
    assert "ZeroDivisionError" in str(info.value)
    assert env.query(key, "status") == "running"  # the run is untouched
