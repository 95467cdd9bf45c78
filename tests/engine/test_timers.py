"""Durable sleep: a week passes in milliseconds under time skipping, and a real sleep holds no thread."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta

import pytest

from beluga_workflows import (
    EventType,
    InvalidInputError,
    WorkflowFailedError,
    WorkflowOptions,
    workflow,
)

from .support import events, unique, wait_until


@workflow(name="engine.timers.sleep_for")
def sleep_for(ctx, seconds: float) -> dict:
    before = ctx.now()
    ctx.sleep(timedelta(seconds=seconds))
    after = ctx.now()
    return {"before": before.isoformat(), "after": after.isoformat()}


def test_seven_day_sleep_completes_under_time_skipping(env):
    week = timedelta(days=7)
    started = time.monotonic()
    handle = env.execute(sleep_for, WorkflowOptions(input=week.total_seconds()))
    result = handle.result()
    assert time.monotonic() - started < 1.0
    slept = datetime.fromisoformat(result["after"]) - datetime.fromisoformat(result["before"])
    assert week <= slept < week + timedelta(seconds=1)
    state = env.store.load(handle.id)
    (started_event,) = events(state, EventType.TIMER_STARTED)
    assert started_event.duration == week.total_seconds()
    assert len(events(state, EventType.TIMER_FIRED)) == 1


def test_sleep_is_suspended_not_finished_before_its_time(env):
    handle = env.execute(sleep_for, WorkflowOptions(input=3600))
    env.run_until_idle()
    env.advance(timedelta(minutes=59))
    assert handle.status() == "running"
    state = env.store.load(handle.id)
    assert state.wait_kind == "timer" and not state.lease_owner
    assert events(state, EventType.TIMER_FIRED) == []
    env.advance(timedelta(minutes=1))
    assert handle.status() == "completed"


def test_real_sleeps_hold_no_thread(store, make_local):
    """50 workflows each sleeping 1 s finish in about 1 s on 2 threads (not 50 / 2 = 25 s)."""
    executor = make_local(max_workers=2)
    count = 50
    started = time.monotonic()
    handles = [
        executor.execute(sleep_for, WorkflowOptions(id=unique("nap"), input=1.0))
        for _ in range(count)
    ]
    results = [h.result(timeout=20) for h in handles]
    elapsed = time.monotonic() - started
    assert len(results) == count
    assert all(h.status() == "completed" for h in handles)
    assert elapsed >= 1.0, "the sleeps did not really wait"
    assert elapsed < 5.0, f"{count} one-second sleeps on 2 threads took {elapsed:.1f} s"
    for result in results:
        slept = datetime.fromisoformat(result["after"]) - datetime.fromisoformat(result["before"])
        assert slept >= timedelta(seconds=1)


@pytest.mark.parametrize("bad", [-1, "soon", float("nan")])
def test_bad_sleep_duration_fails_the_run_with_a_clear_error(env, bad):
    handle = env.execute(sleep_for, WorkflowOptions(input=0))
    assert handle.result()  # zero is fine
    bad_handle = env.execute(bad_sleep, WorkflowOptions(input=bad if bad == bad else "nan"))
    with pytest.raises(WorkflowFailedError) as info:
        bad_handle.result()
    assert info.value.error["type"] == InvalidInputError.__name__
    assert "sleep duration" in info.value.error["message"]


@workflow(name="engine.timers.bad_sleep")
def bad_sleep(ctx, value) -> None:
    ctx.sleep(float("nan") if value == "nan" else value)


def test_a_sleep_survives_a_restart(store, make_local):
    """The due time lives in the store: a new process's sweep finishes a sleep begun by a dead one."""
    first = make_local()
    handle = first.execute(sleep_for, WorkflowOptions(id=unique("restart"), input=0.5))
    wait_until(
        lambda: store.load(handle.id, with_history=False).wait_kind == "timer",
        message="the run to suspend on its timer",
    )
    first.close()  # the process goes away; nothing in memory remembers the timer
    second = make_local(sweep_interval=0.05)
    result = second.get_handle(handle.id).result(timeout=5)
    slept = datetime.fromisoformat(result["after"]) - datetime.fromisoformat(result["before"])
    assert slept >= timedelta(seconds=0.5)


@workflow(name="engine.timers.swallows_everything")
def swallows_everything(ctx) -> str:
    # Bad workflow code, on purpose: it swallows the engine's own control flow.
    with contextlib.suppress(BaseException):
        ctx.sleep(timedelta(days=1))
    return "done"


def test_a_workflow_that_swallows_the_suspension_still_waits(env):
    start = env.clock.now()
    handle = env.execute(swallows_everything)
    assert handle.result() == "done"
    assert env.clock.now() - start >= timedelta(days=1)
    assert len(events(env.store.load(handle.id), EventType.TIMER_FIRED)) == 1
