"""Starting and steering runs: ids, re-use of ids, handles, deterministic now/side_effect, the registry."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta

import pytest

import beluga_workflows
from beluga_workflows import (
    InvalidInputError,
    Signal,
    WorkflowAlreadyExistsError,
    WorkflowExecutor,
    WorkflowNotFoundError,
    WorkflowOptions,
    WorkflowStatus,
    list_executors,
    new,
    register,
    workflow,
)
from beluga_workflows.engine.registry import get_workflow, registered_workflows
from beluga_workflows.runtimes.local import LocalExecutor

from .support import Calls, unique, wait_until

CALLS = Calls()


@workflow(name="engine.api.wait_for_go")
def wait_for_go(ctx, value=None):
    return {"input": value, "go": ctx.receive_signal("go")}


@workflow(name="engine.api.instant")
def instant(ctx):  # a workflow may take no input
    return "done"


def test_execute_without_id_generates_a_unique_one(env):
    first = env.execute(instant)
    second = env.execute(instant, WorkflowOptions())
    assert first.id and second.id and first.id != second.id
    assert first.run_id != second.run_id
    assert env.store.load(first.id).workflow_type == "engine.api.instant"
    assert first.result() == second.result() == "done"


def test_execute_by_registered_name(env):
    handle = env.execute("engine.api.instant", WorkflowOptions(id=unique("by-name")))
    assert handle.result() == "done"


def test_execute_returns_before_the_work_runs(env):
    handle = env.execute(wait_for_go, WorkflowOptions(input=1))
    state = env.store.load(handle.id)
    assert state.status is WorkflowStatus.RUNNING
    assert [e.type.value for e in state.history] == ["workflow_started"]
    assert state.input == 1


def test_reusing_the_id_of_an_open_run_is_refused(env):
    key = unique("open")
    handle = env.execute(wait_for_go, WorkflowOptions(id=key, input=1))
    with pytest.raises(WorkflowAlreadyExistsError) as info:
        env.execute(wait_for_go, WorkflowOptions(id=key, input=2))
    assert key in str(info.value)
    state = env.store.load(key)
    assert state.run_id == handle.run_id and state.input == 1


def test_reusing_the_id_of_an_ended_run_starts_a_new_run(env):
    key = unique("ended")
    first = env.execute(wait_for_go, WorkflowOptions(id=key, input=1))
    env.signal(key, Signal(name="go", payload="a"))
    assert first.result() == {"input": 1, "go": "a"}
    second = env.execute(wait_for_go, WorkflowOptions(id=key, input=2))
    assert second.id == key and second.run_id != first.run_id
    assert env.get_handle(key).run_id == second.run_id
    state = env.store.load(key)
    assert state.status is WorkflowStatus.RUNNING and state.input == 2
    assert [e.type.value for e in state.history] == ["workflow_started"]  # a fresh history
    env.signal(key, Signal(name="go", payload="b"))
    assert second.result() == {"input": 2, "go": "b"}
    # The old handle refers to a run that is no longer the latest.
    with pytest.raises(WorkflowNotFoundError):
        first.status()


def test_get_handle_of_unknown_id_raises_not_found(env):
    with pytest.raises(WorkflowNotFoundError):
        env.get_handle(unique("missing"))


def test_result_with_timeout_raises_timeout_error(store, make_local):
    executor = make_local()
    handle = executor.execute(wait_for_go, WorkflowOptions())
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.1)
    assert handle.status() is WorkflowStatus.RUNNING
    executor.signal(handle.id, Signal(name="go", payload=True))
    assert handle.result(timeout=5)["go"] is True


@workflow(name="engine.api.clocks")
def clocks(ctx, key: str) -> dict:
    now = ctx.now()
    value = ctx.side_effect(lambda: (CALLS.hit(key), random.random())[1])
    ctx.sleep(timedelta(hours=1))
    later = ctx.now()
    return {
        "now": now.isoformat(),
        "value": value,
        "later": later.isoformat(),
        "aware": now.tzinfo is not None,
    }


def test_now_and_side_effect_are_recorded_and_replayed(env):
    key = unique("clocks")
    start = env.clock.now()
    handle = env.execute(clocks, WorkflowOptions(id=key, input=key))
    result = handle.result()  # two activations: the second replays now() and side_effect()
    assert CALLS[key] == 1, "side_effect ran again on replay"
    assert result["aware"] is True
    assert datetime.fromisoformat(result["now"]) == start
    assert datetime.fromisoformat(result["later"]) - datetime.fromisoformat(
        result["now"]
    ) >= timedelta(hours=1)
    markers = [e for e in env.store.load(key).history if e.type.value == "side_effect_recorded"]
    assert [m.result for m in markers] == [result["now"], result["value"], result["later"]]


@workflow(name="engine.api.bad_side_effect")
def bad_side_effect(ctx):
    return ctx.side_effect(object)


def test_side_effect_value_must_be_json(env):
    handle = env.execute(bad_side_effect)
    with pytest.raises(beluga_workflows.WorkflowFailedError) as info:
        handle.result()
    assert "side_effect value is not JSON-serialisable" in info.value.error["message"]


# -- workflow registry --------------------------------------------------------------------------------


def test_workflow_names_default_to_module_and_qualname():
    @workflow
    def default_named(ctx):
        return 1

    name = f"{__name__}.test_workflow_names_default_to_module_and_qualname.<locals>.default_named"
    assert default_named.__beluga_workflow__.name == name
    assert get_workflow(name).fn is default_named
    assert name in registered_workflows()


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(InvalidInputError) as info:

        @workflow(name="engine.api.instant")
        def impostor(ctx):
            return 2

    assert "already registered" in str(info.value)
    assert get_workflow("engine.api.instant").fn is instant


# -- executor registry ------------------------------------------------------------------------------


def test_builtin_executors_are_registered_and_listed_sorted():
    names = list_executors()
    assert names == sorted(names)
    assert {"celery", "local"} <= set(names)


def test_register_and_new(store):
    made = []

    def factory(config):
        executor = LocalExecutor(store=store, **config)
        made.append(executor)
        return executor

    name = unique("exec")
    register(name, factory)
    try:
        assert name in list_executors() and list_executors() == sorted(list_executors())
        executor = new(name, {"max_workers": 1})
        assert isinstance(executor, WorkflowExecutor) and made == [executor]
        assert executor.execute(instant).result(timeout=5) == "done"
    finally:
        for executor in made:
            executor.close()
        from beluga_workflows import runtimes as executor_module

        executor_module._factories.pop(name, None)


def test_new_local_executor_by_name(store):
    executor = new("local", {"store": store, "max_workers": 2})
    try:
        assert isinstance(executor, LocalExecutor)
        assert executor.execute(instant).result(timeout=5) == "done"
    finally:
        executor.close()


def test_unknown_executor_and_bad_registration_are_refused():
    with pytest.raises(InvalidInputError) as info:
        new("no-such-executor")
    assert "no-such-executor" in str(info.value) and "local" in str(info.value)
    with pytest.raises(InvalidInputError):
        register("", lambda config: None)
    with pytest.raises(InvalidInputError):
        register("x", "not callable")


def test_result_timeout_is_kept(store, make_local):
    executor = make_local()
    handle = executor.execute(wait_for_go, WorkflowOptions())
    for timeout in (0.05, 0.3):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            handle.result(timeout=timeout)
        waited = time.monotonic() - started
        assert timeout <= waited < timeout + 0.2, f"result(timeout={timeout}) waited {waited:.2f} s"


def test_result_sees_a_run_finished_by_another_worker_promptly(store, make_local):
    watcher, worker = make_local(), make_local()
    handle = worker.execute(wait_for_go, WorkflowOptions())
    watched = watcher.get_handle(handle.id)
    outcome: dict = {}

    def wait_for_result() -> None:
        outcome["result"] = watched.result(timeout=10)
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=wait_for_result)
    thread.start()
    time.sleep(1.5)  # let the watcher's polling back off as far as it goes
    worker.signal(handle.id, Signal(name="go", payload="x"))
    wait_until(
        lambda: worker.store.load(handle.id, with_history=False).status != "running",
        message="the run to finish",
    )
    finished = time.monotonic()
    thread.join(10)
    assert outcome["result"] == {"input": None, "go": "x"}
    assert outcome["at"] - finished < 0.3, "result() noticed the end late"
