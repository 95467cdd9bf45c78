"""Hooks fire once per live event with the documented arguments; composition and middleware order."""

from __future__ import annotations

import pytest

from beluga_workflows import (
    ActivityError,
    Hooks,
    RetryPolicy,
    Signal,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowOptions,
    activity,
    apply_middleware,
    compose_hooks,
    with_hooks,
    workflow,
)
from beluga_workflows.engine.hooks import HOOK_NAMES
from beluga_workflows.engine.middleware import ExecutorMiddleware
from beluga_workflows.testing import WorkflowEnvironment

from .support import Calls, unique

CALLS = Calls()


class Recorder:
    """A Hooks whose every callback records ``(hook name, args)``."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.hooks = Hooks(**{name: self._recorder(name) for name in HOOK_NAMES})

    def _recorder(self, name: str):
        return lambda *args: self.calls.append((name, *args))

    def named(self, name: str) -> list[tuple]:
        return [c[1:] for c in self.calls if c[0] == name]


@activity(name="engine.hooks.fails_once")
def fails_once(key: str) -> str:
    if CALLS.hit(key) == 1:
        raise ValueError("first try fails")
    return key.upper()


@activity(name="engine.hooks.always_fails")
def always_fails(key: str) -> None:
    raise RuntimeError("broken")


@workflow(name="engine.hooks.everything")
def everything(ctx, spec: dict):
    if spec["mode"] == "fail":
        ctx.execute_activity(always_fails, spec["key"], retry=RetryPolicy(max_attempts=1))
    value = ctx.execute_activity(
        fails_once, spec["key"], retry=RetryPolicy(max_attempts=3, initial_interval=2)
    )
    signal = ctx.receive_signal("go")
    return {"value": value, "signal": signal}


def test_all_nine_hooks_fire_with_the_documented_arguments(store):
    recorder = Recorder()
    key = unique("hooks")
    with WorkflowEnvironment(store=store, hooks=recorder.hooks) as env:
        ok = env.execute(everything, WorkflowOptions(id=key, input={"mode": "ok", "key": key}))
        env.run_until_idle()  # suspends for the retry backoff (2 s > in-place waits), then the signal
        env.advance(10)
        accepted = env.signal(key, Signal(name="go", payload={"n": 1}))
        assert ok.result() == {"value": key.upper(), "signal": {"n": 1}}

        failing = env.execute(everything, WorkflowOptions(input={"mode": "fail", "key": unique()}))
        with pytest.raises(WorkflowFailedError):
            failing.result()

        canceled = env.execute(everything, WorkflowOptions(input={"mode": "ok", "key": unique()}))
        env.cancel(canceled.id)
        with pytest.raises(WorkflowCanceledError):
            canceled.result()

    spec = {"mode": "ok", "key": key}
    assert recorder.named("on_workflow_start")[0] == (key, spec)
    assert len(recorder.named("on_workflow_start")) == 3  # once per run, never on replay
    # Two attempts, each announced once although the run was replayed after each suspension.
    assert [c for c in recorder.named("on_activity_start") if c[0] == key] == [
        (key, "engine.hooks.fails_once", key),
        (key, "engine.hooks.fails_once", key),
    ]
    ((fail_id, fail_name, fail_error),) = [
        c for c in recorder.named("on_activity_fail") if c[0] == key
    ]
    assert (fail_id, fail_name) == (key, "engine.hooks.fails_once")
    assert isinstance(fail_error, ValueError) and str(fail_error) == "first try fails"
    ((retry_id, retry_name, retry_error, attempt, delay),) = recorder.named("on_retry")
    assert (retry_id, retry_name, attempt) == (key, "engine.hooks.fails_once", 1)
    assert retry_error is fail_error and 1.0 <= delay < 3.0
    assert recorder.named("on_activity_complete")[0] == (
        key,
        "engine.hooks.fails_once",
        key.upper(),
    )
    ((signal_id, signal),) = recorder.named("on_signal")
    assert signal_id == key and signal.name == "go" and signal.payload == {"n": 1}
    assert signal.id == accepted.id
    assert recorder.named("on_workflow_complete") == [
        (key, {"value": key.upper(), "signal": {"n": 1}})
    ]

    ((failed_id, failed_error),) = recorder.named("on_workflow_fail")
    assert failed_id == failing.id and isinstance(failed_error, ActivityError)
    assert [c for c in recorder.named("on_activity_fail") if c[0] == failing.id][0][
        1
    ] == "engine.hooks.always_fails"
    assert recorder.named("on_cancel") == [(canceled.id,)]
    assert {c[0] for c in recorder.calls} == set(HOOK_NAMES)


def test_a_raising_hook_does_not_break_the_workflow(env):
    def boom(*args):
        raise RuntimeError("hook bug")

    env.executor.add_hooks(
        Hooks(on_workflow_start=boom, on_activity_start=boom, on_workflow_complete=boom)
    )
    key = unique("boom")
    handle = env.execute(everything, WorkflowOptions(input={"mode": "ok", "key": key}))
    env.signal(handle.id, Signal(name="go"))
    assert handle.result()["value"] == key.upper()


def test_compose_hooks_calls_in_order_and_skips_none():
    order: list[str] = []
    first = Hooks(
        on_signal=lambda *a: order.append("first"), on_cancel=lambda *a: order.append("c1")
    )
    second = Hooks(on_signal=lambda *a: order.append("second"))

    def broken(*args):
        order.append("broken")
        raise RuntimeError("ignored")

    third = Hooks(on_signal=broken)
    composed = compose_hooks(first, None, third, second)
    composed.fire("on_signal", "wf", None)
    composed.fire("on_cancel", "wf")
    composed.fire("on_retry", "wf", "a", None, 1, 0.1)  # nobody set it: nothing happens
    assert order == ["first", "broken", "second", "c1"]
    assert composed.on_retry is None
    assert compose_hooks(first) is first


def test_hooks_takes_the_nine_callbacks_positionally():
    callbacks = [lambda *a, i=i: i for i in range(9)]
    hooks = Hooks(*callbacks)
    assert HOOK_NAMES == (
        "on_workflow_start",
        "on_workflow_complete",
        "on_workflow_fail",
        "on_activity_start",
        "on_activity_complete",
        "on_activity_fail",
        "on_signal",
        "on_retry",
        "on_cancel",
    )
    assert [getattr(hooks, name)() for name in HOOK_NAMES] == list(range(9))


class Tag(ExecutorMiddleware):
    """Records the order in which wrapped executors see ``execute``."""

    def __init__(self, inner, name: str, log: list[str]):
        super().__init__(inner)
        self.name, self.log = name, log

    def execute(self, *args, **kwargs):
        self.log.append(f"{self.name}:before")
        try:
            return self.inner.execute(*args, **kwargs)
        finally:
            self.log.append(f"{self.name}:after")


def test_apply_middleware_first_is_outermost(env):
    log: list[str] = []
    wrapped = apply_middleware(
        env.executor, lambda e: Tag(e, "outer", log), lambda e: Tag(e, "inner", log)
    )
    assert isinstance(wrapped, Tag) and wrapped.name == "outer"
    assert wrapped.inner.name == "inner" and wrapped.inner.inner is env.executor
    handle = wrapped.execute(everything, WorkflowOptions(input={"mode": "ok", "key": unique()}))
    assert log == ["outer:before", "inner:before", "inner:after", "outer:after"]
    # Everything not overridden is the executor's own.
    assert wrapped.store is env.store and wrapped.get_handle(handle.id).id == handle.id
    assert apply_middleware(env.executor) is env.executor


def test_with_hooks_fires_hooks_in_runs_of_the_wrapped_executor(env):
    recorder = Recorder()
    wrapped = apply_middleware(env.executor, with_hooks(recorder.hooks))
    key = unique("with-hooks")
    handle = wrapped.execute(everything, WorkflowOptions(input={"mode": "ok", "key": key}))
    wrapped.signal(handle.id, Signal(name="go"))
    assert handle.result()["value"] == key.upper()
    assert [c[0] for c in recorder.calls][0] == "on_workflow_start"
    assert recorder.named("on_workflow_complete")[0][0] == handle.id
    with pytest.raises(TypeError):
        with_hooks("not hooks")
