"""Parallel steps (API.md §10) on every store that holds the engine's guarantees: started
activities and their futures, ``gather``, ``wait_any``, ``done``, retries, a lost hand-out, and
child workflows (results, failures, cancel, a crash between creating a child and recording it).

Most tests run in the time-skipping environment (started activities run when ``run_until_idle``
gets to them); the ones about real concurrency use the ``local`` runtime's threads.
"""

from __future__ import annotations

import time

import pytest

from beluga_workflows import (
    ChildWorkflowError,
    EventType,
    RetryPolicy,
    Signal,
    WorkflowFailedError,
    WorkflowFilter,
    WorkflowOptions,
    WorkflowStatus,
    activity,
    workflow,
)

from .support import Calls, unique

CALLS = Calls()


@activity(name="engine.parallel.double")
def double(n: int) -> int:
    CALLS.hit(("double", n))
    return 2 * n


@activity(name="engine.parallel.nap")
def nap(spec: dict) -> str:
    time.sleep(spec["seconds"])
    return spec["name"]


@activity(name="engine.parallel.flaky")
def flaky(spec: dict) -> str:
    if CALLS.hit(("flaky", spec["key"])) <= spec["failures"]:
        raise RuntimeError(f"attempt failed ({spec['key']})")
    return "ok"


@workflow(name="engine.parallel.fan_out")
def fan_out(ctx, n: int) -> list:
    futures = [ctx.start_activity(double, i) for i in range(n)]
    return ctx.gather(*futures)


@workflow(name="engine.parallel.race")
def race(ctx, spec: dict) -> dict:
    slow = ctx.start_activity(nap, {"seconds": spec["slow"], "name": "slow"})
    fast = ctx.start_activity(nap, {"seconds": spec["fast"], "name": "fast"})
    winner = ctx.wait_any(slow, fast)
    first = winner.result()
    ctx.set_query_handler("winner", lambda: first)
    ctx.receive_signal("go")
    return {"winner": first, "all": ctx.gather(slow, fast)}


@workflow(name="engine.parallel.retrying")
def retrying(ctx, spec: dict):
    future = ctx.start_activity(flaky, spec, retry=RetryPolicy(max_attempts=spec["attempts"],
                                                               initial_interval=5))
    if spec.get("return_exceptions"):
        (outcome,) = ctx.gather(future, return_exceptions=True)
        return {"type": type(outcome).__name__, "attempts": outcome.attempts}
    return ctx.gather(future)


@workflow(name="engine.parallel.polling")
def polling(ctx, n: int) -> list:
    future = ctx.start_activity(double, n)
    seen = [future.done()]
    ctx.sleep(1)
    seen.append(future.done())
    return [*seen, future.result()]


@workflow(name="engine.parallel.child")
def child(ctx, spec: dict):
    if spec.get("wait"):
        ctx.receive_signal("go")
    if spec.get("fail"):
        raise ValueError(f"child {spec['n']} failed")
    return spec["n"] * 10


@workflow(name="engine.parallel.parent")
def parent(ctx, spec: dict):
    if spec.get("one"):
        return ctx.execute_child(child, {"n": 1, "fail": spec.get("fail", False)})
    handles = [ctx.start_child(child, {"n": n, "wait": spec.get("wait", False)})
               for n in range(spec["children"])]
    return ctx.gather(*handles)


def history_types(state, op: int) -> list[EventType]:
    return [e.type for e in state.history if e.op == op]


# -- started activities ---------------------------------------------------------------------------

def test_gather_returns_the_results_in_argument_order_and_each_activity_runs_once(env):
    handle = env.execute(fan_out, WorkflowOptions(input=20))
    assert handle.result() == [2 * i for i in range(20)]
    state = env.store.load(handle.id)
    for op in range(1, 21):
        assert history_types(state, op) == [EventType.ACTIVITY_SCHEDULED,
                                            EventType.ACTIVITY_STARTED,
                                            EventType.ACTIVITY_COMPLETED]
    assert all(CALLS[("double", i)] >= 1 for i in range(20))


def test_wait_any_replays_to_the_winner_the_live_run_saw(make_local):
    executor = make_local()
    handle = executor.execute(race, WorkflowOptions(input={"slow": 0.4, "fast": 0.01}))
    deadline = time.monotonic() + 20
    while executor.store.load(handle.id, with_history=False).wait_kind != "signal":
        assert time.monotonic() < deadline, "the race never reached its signal wait"
        time.sleep(0.02)
    executor.signal(handle.id, Signal("go"))
    result = handle.result(timeout=20)
    assert result == {"winner": "fast", "all": ["slow", "fast"]}
    # In the replay's world both are done and "slow" comes first in the arguments: the recorded
    # winner is still "fast".
    assert executor.query(handle.id, "winner") == "fast"


def test_done_is_answered_as_recorded_so_a_replay_agrees(env):
    handle = env.execute(polling, WorkflowOptions(input=4))
    result = handle.result()
    assert result[-1] == 8 and result[1] is True
    markers = [e.result for e in env.store.load(handle.id).history
               if e.type is EventType.SIDE_EFFECT_RECORDED and e.activity_name == "done"]
    assert markers == result[:2]


def test_a_started_activity_retries_with_every_attempt_recorded(env):
    key = unique("flaky")
    handle = env.execute(retrying, WorkflowOptions(input={"key": key, "failures": 2,
                                                          "attempts": 5}))
    assert handle.result() == ["ok"]
    types = history_types(env.store.load(handle.id), 1)
    assert types == [EventType.ACTIVITY_SCHEDULED,
                     EventType.ACTIVITY_STARTED, EventType.ACTIVITY_FAILED,
                     EventType.ACTIVITY_STARTED, EventType.ACTIVITY_FAILED,
                     EventType.ACTIVITY_STARTED, EventType.ACTIVITY_COMPLETED]


def test_a_started_activity_that_fails_for_good_raises_in_gather(env):
    failing = env.execute(retrying, WorkflowOptions(input={"key": unique("broken"),
                                                           "failures": 9, "attempts": 2}))
    with pytest.raises(WorkflowFailedError, match="failed after 2 attempt"):
        failing.result()
    assert env.store.load(failing.id, with_history=False).error["type"] == "ActivityError"
    kept = env.execute(retrying, WorkflowOptions(input={
        "key": unique("kept"), "failures": 9, "attempts": 3, "return_exceptions": True}))
    assert kept.result() == {"type": "ActivityError", "attempts": 3}


def test_a_lost_hand_out_is_handed_out_again_when_due(store):
    from beluga_workflows.testing import WorkflowEnvironment

    with WorkflowEnvironment(store=store, activity_redispatch=60) as env:
        dropped = []
        original = env.executor.dispatch_activity

        def lossy(*args, **kwargs):
            if not dropped:
                dropped.append(args)
                return None
            return original(*args, **kwargs)

        env.executor.dispatch_activity = lossy
        handle = env.execute(fan_out, WorkflowOptions(input=1))
        started = env.clock.now()
        assert handle.result() == [0]
        assert dropped
        state = env.store.load(handle.id)
        assert history_types(state, 1).count(EventType.ACTIVITY_SCHEDULED) == 2
        assert (state.ended_at - started).total_seconds() >= 60


def test_a_started_activity_is_handed_out_only_once_its_schedule_is_stored(store):
    from beluga_workflows.testing import WorkflowEnvironment

    with WorkflowEnvironment(store=store) as env:
        stored_at_hand_out = []
        original = env.executor.dispatch_activity

        def checking(workflow_id, run_id, op, **kwargs):
            state = env.store.load(workflow_id)
            stored_at_hand_out.append(sum(1 for e in state.history
                                          if e.type is EventType.ACTIVITY_SCHEDULED))
            assert EventType.ACTIVITY_SCHEDULED in history_types(state, op)
            return original(workflow_id, run_id, op, **kwargs)

        env.executor.dispatch_activity = checking
        handle = env.execute(fan_out, WorkflowOptions(input=10))
        assert handle.result() == [2 * i for i in range(10)]
        # The ten start_activity calls were written together, before the first hand-out.
        assert stored_at_hand_out == [10] * 10


def test_futures_from_elsewhere_are_refused(env):
    @workflow(name=unique("engine.parallel.bad"))
    def bad(ctx, _=None):
        return ctx.gather("not a future")

    with pytest.raises(Exception, match="expected futures of this run"):
        env.execute(bad).result()


def test_started_activities_run_concurrently_on_the_local_runtime(make_local):
    executor = make_local(max_workers=8)

    @workflow(name=unique("engine.parallel.naps"))
    def naps(ctx, n: int) -> list:
        return ctx.gather(*[ctx.start_activity(nap, {"seconds": 0.3, "name": str(i)})
                            for i in range(n)])

    began = time.monotonic()
    handle = executor.execute(naps, WorkflowOptions(input=6))
    assert handle.result(timeout=30) == [str(i) for i in range(6)]
    # Six 0.3 s naps on 8 threads: together, not one after another (1.8 s).
    assert time.monotonic() - began < 1.5


# -- children ---------------------------------------------------------------------------------------

def test_a_parent_gathers_its_children_each_a_full_run(env):
    handle = env.execute(parent, WorkflowOptions(input={"children": 5}))
    assert handle.result() == [0, 10, 20, 30, 40]
    for op in range(1, 6):
        state = env.store.load(f"{handle.id}/{op}")
        assert state.status is WorkflowStatus.COMPLETED
        link = state.history[0].signal_payload
        assert link == {"workflow_id": handle.id, "run_id": handle.run_id, "op": op}
        assert state.parent_id == handle.id
    children = env.store.list(WorkflowFilter(parent_id=handle.id))
    assert sorted(s.workflow_id for s in children) == [f"{handle.id}/{op}" for op in range(1, 6)]
    assert env.store.count_children([handle.id]) == {handle.id: 5}
    assert env.store.load(handle.id).parent_id == ""


def test_a_failed_child_raises_child_workflow_error_in_the_parent(env):
    @workflow(name=unique("engine.parallel.catching"))
    def catching(ctx, _=None):
        try:
            ctx.execute_child(child, {"n": 7, "fail": True})
        except ChildWorkflowError as exc:
            return {"code": exc.code, "status": exc.status, "child": exc.child_id,
                    "message": exc.cause["message"]}
        return "no error"

    handle = env.execute(catching)
    assert handle.result() == {"code": "child_failed", "status": "failed",
                               "child": f"{handle.id}/1", "message": "child 7 failed"}


def test_canceling_a_parent_cancels_its_open_children(env):
    handle = env.execute(parent, WorkflowOptions(input={"children": 10, "wait": True}))
    env.run_until_idle()
    children = [f"{handle.id}/{op}" for op in range(1, 11)]
    assert all(env.store.load(c, with_history=False).wait_kind == "signal" for c in children)
    env.cancel(handle.id)
    env.run_until_idle()
    assert env.store.load(handle.id, with_history=False).status is WorkflowStatus.CANCELED
    assert [env.store.load(c, with_history=False).status for c in children] == [
        WorkflowStatus.CANCELED] * 10


def test_a_crash_between_creating_a_child_and_recording_it_yields_one_child(env):
    original = env.executor.start_child
    crashes = []

    def crashing(*args, **kwargs):
        run_id = original(*args, **kwargs)
        if not crashes:
            crashes.append(run_id)
            raise ConnectionError("the database went away after the child was created")
        return run_id

    env.executor.start_child = crashing
    handle = env.execute(parent, WorkflowOptions(input={"one": True}))
    env.run_until_idle()
    assert crashes
    env.advance(31)  # the abandoned activation's lease runs out; the sweep resumes the run
    assert handle.result() == 10
    child_state = env.store.load(f"{handle.id}/1")
    assert child_state.run_id == crashes[0]
    started = [e for e in env.store.load(handle.id).history
               if e.type is EventType.CHILD_WORKFLOW_STARTED]
    assert [e.result for e in started] == [crashes[0]]


def test_start_child_validates_before_it_starts_anything(env):
    @workflow(name=unique("engine.parallel.bad_child"))
    def bad_child(ctx, spec):
        return ctx.start_child(spec["type"], {}, id=spec.get("id")).result()

    with pytest.raises(Exception, match="unknown workflow type"):
        env.execute(bad_child, WorkflowOptions(input={"type": "no.such.type"})).result()
    with pytest.raises(Exception, match="workflow id"):
        env.execute(bad_child, WorkflowOptions(input={"type": "engine.parallel.child",
                                                      "id": " spaced "})).result()
