"""Cancellation (during an activity, a sleep, a signal wait) with clean-up, and workflow timeouts."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from beluga_workflows import (
    EventType,
    Signal,
    WorkflowCanceledError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowOptions,
    WorkflowStatus,
    WorkflowTimeoutError,
    activity,
    workflow,
)

from .support import Calls, events, unique, wait_until

CALLS = Calls()
GATES: dict[str, threading.Event] = {}


@activity(name="engine.cancel.work")
def work(key: str) -> str:
    CALLS.hit((key, "work"))
    gate = GATES.get(key)
    if gate is not None:
        gate.wait(5)
    return "worked"


@activity(name="engine.cancel.clean_up")
def clean_up(key: str) -> str:
    CALLS.hit((key, "clean_up"))
    return "cleaned"


@activity(name="engine.cancel.after")
def after(key: str) -> str:
    CALLS.hit((key, "after"))
    return "after"


@workflow(name="engine.cancel.guarded")
def guarded(ctx, spec: dict) -> str:
    """Waits in the way ``spec["wait"]`` says; on cancel runs a clean-up activity and re-raises."""
    key = spec["key"]
    try:
        if spec["wait"] == "activity":
            ctx.execute_activity(work, key)
        elif spec["wait"] == "sleep":
            ctx.sleep(timedelta(days=30))
        elif spec["wait"] == "signal":
            ctx.receive_signal("never")
        ctx.execute_activity(after, key)
    except WorkflowCanceledError:
        assert ctx.is_cancel_requested
        ctx.execute_activity(clean_up, key)
        raise
    return "finished"


def assert_canceled_with_clean_up(store, handle, key: str) -> None:
    with pytest.raises(WorkflowCanceledError):
        handle.result(timeout=10)
    assert handle.status() is WorkflowStatus.CANCELED
    assert CALLS[(key, "clean_up")] == 1
    assert CALLS[(key, "after")] == 0
    state = store.load(key)
    assert state.status is WorkflowStatus.CANCELED
    types = [e.type for e in state.history]
    assert EventType.CANCEL_REQUESTED in types
    assert types[-1] is EventType.WORKFLOW_CANCELED
    clean = [
        e
        for e in events(state, EventType.ACTIVITY_COMPLETED)
        if e.activity_name == "engine.cancel.clean_up"
    ]
    assert len(clean) == 1


def test_cancel_during_an_activity(store, make_local):
    executor = make_local()
    key = unique("cancel-act")
    GATES[key] = threading.Event()
    handle = executor.execute(
        guarded, WorkflowOptions(id=key, input={"key": key, "wait": "activity"})
    )
    wait_until(lambda: CALLS[(key, "work")] == 1, message="the activity to start")
    executor.cancel(key)
    GATES[key].set()  # the running activity finishes; the next ctx call sees the cancel
    assert_canceled_with_clean_up(store, handle, key)
    assert CALLS[(key, "work")] == 1


def test_cancel_during_a_sleep(env):
    key = unique("cancel-sleep")
    handle = env.execute(guarded, WorkflowOptions(id=key, input={"key": key, "wait": "sleep"}))
    env.run_until_idle()
    assert env.store.load(key).wait_kind == "timer"
    start = env.clock.now()
    env.cancel(key)
    assert_canceled_with_clean_up(env.store, handle, key)
    assert env.clock.now() - start < timedelta(days=1), "the cancel waited for the sleep"
    assert events(env.store.load(key), EventType.TIMER_FIRED) == []


def test_cancel_during_a_signal_wait(store, make_local):
    executor = make_local()
    key = unique("cancel-signal")
    handle = executor.execute(
        guarded, WorkflowOptions(id=key, input={"key": key, "wait": "signal"})
    )
    wait_until(
        lambda: store.load(key, with_history=False).wait_kind == "signal",
        message="the run to wait for its signal",
    )
    executor.cancel(key)
    assert_canceled_with_clean_up(store, handle, key)


@workflow(name="engine.cancel.unguarded")
def unguarded(ctx, key: str) -> str:
    ctx.receive_signal("never")
    ctx.execute_activity(after, key)
    return "finished"


def test_cancel_without_clean_up_code_still_ends_canceled(env):
    key = unique("cancel-plain")
    handle = env.execute(unguarded, WorkflowOptions(id=key, input=key))
    env.run_until_idle()
    env.cancel(key)
    with pytest.raises(WorkflowCanceledError):
        handle.result()
    assert handle.status() is WorkflowStatus.CANCELED
    assert CALLS[(key, "after")] == 0


def test_cancel_before_the_run_started(env):
    key = unique("cancel-early")
    handle = env.execute(guarded, WorkflowOptions(id=key, input={"key": key, "wait": "activity"}))
    env.cancel(key)
    assert_canceled_with_clean_up(env.store, handle, key)
    assert CALLS[(key, "work")] == 0


def test_a_signal_after_the_cancel_is_refused(env):
    key = unique("cancel-then-signal")
    env.execute(unguarded, WorkflowOptions(id=key, input=key))
    env.run_until_idle()
    env.cancel(key)
    env.run_until_idle()
    with pytest.raises(WorkflowNotRunningError):
        env.signal(key, Signal(name="never"))


def test_cancel_unknown_or_ended_raises(env):
    with pytest.raises(WorkflowNotFoundError):
        env.cancel(unique("missing"))
    key = unique("done")
    handle = env.execute(guarded, WorkflowOptions(id=key, input={"key": key, "wait": "none"}))
    assert handle.result() == "finished"
    with pytest.raises(WorkflowNotRunningError):
        env.cancel(key)
    assert handle.status() is WorkflowStatus.COMPLETED


# -- workflow timeouts ----------------------------------------------------------------------------


def test_workflow_timeout_ends_the_run_timed_out(env):
    key = unique("timeout")
    handle = env.execute(
        guarded,
        WorkflowOptions(id=key, input={"key": key, "wait": "sleep"}, timeout=timedelta(hours=1)),
    )
    with pytest.raises(WorkflowTimeoutError):
        handle.result()
    assert handle.status() is WorkflowStatus.TIMED_OUT
    state = env.store.load(key)
    assert state.history[-1].type is EventType.WORKFLOW_TIMED_OUT
    assert "deadline" in state.error["message"]
    # A timeout is not a cancel: no clean-up ran, and the sleep never fired.
    assert CALLS[(key, "clean_up")] == 0
    assert events(state, EventType.TIMER_FIRED) == []


def test_workflow_timeout_in_real_time(store, make_local):
    executor = make_local()
    key = unique("timeout-real")
    handle = executor.execute(unguarded, WorkflowOptions(id=key, input=key, timeout=0.2))
    with pytest.raises(WorkflowTimeoutError):
        handle.result(timeout=5)
    assert handle.status() is WorkflowStatus.TIMED_OUT
    assert CALLS[(key, "after")] == 0
