"""Several workers on one store: a run is advanced by one worker at a time, and ids stay unique."""

from __future__ import annotations

import threading

from beluga_workflows import (
    EventType,
    WorkflowAlreadyExistsError,
    WorkflowOptions,
    WorkflowStatus,
    activity,
    workflow,
)

from .support import Calls, events, unique

CALLS = Calls()


@activity(name="engine.concurrency.step")
def step(data: dict) -> int:
    CALLS.hit((data["key"], data["i"]))
    return data["i"]


@workflow(name="engine.concurrency.five_steps")
def five_steps(ctx, key: str) -> int:
    total = 0
    for i in range(5):
        total += ctx.execute_activity(step, {"key": key, "i": i})
        ctx.sleep(0.01)  # suspends, so the other worker's sweep may pick the run up next
    return total


def test_two_workers_never_run_a_step_twice(store, make_local):
    first = make_local(max_workers=4, lease_seconds=2, sweep_interval=0.01)
    second = make_local(max_workers=4, lease_seconds=2, sweep_interval=0.01)
    keys = [unique("pair") for _ in range(20)]
    handles = [
        (first if n % 2 else second).execute(five_steps, WorkflowOptions(id=key, input=key))
        for n, key in enumerate(keys)
    ]
    assert [h.result(timeout=20) for h in handles] == [10] * len(keys)
    for key in keys:
        assert [CALLS[(key, i)] for i in range(5)] == [1] * 5
        state = store.load(key)
        assert len(events(state, EventType.ACTIVITY_COMPLETED)) == 5
        assert [e.id for e in state.history] == list(range(1, len(state.history) + 1))


@workflow(name="engine.concurrency.noop")
def noop(ctx) -> str:
    return "ok"


def test_concurrent_starts_of_one_id_let_exactly_one_win(env):
    key = unique("race")
    barrier = threading.Barrier(8)
    outcomes: list[object] = []
    lock = threading.Lock()

    def start() -> None:
        barrier.wait(5)
        try:
            outcome: object = (
                env.executor.store and env.execute(noop, WorkflowOptions(id=key)).run_id
            )
        except WorkflowAlreadyExistsError as exc:
            outcome = exc
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    winners = [o for o in outcomes if isinstance(o, str)]
    assert len(outcomes) == 8 and len(winners) == 1
    state = env.store.load(key)
    assert state.run_id == winners[0] and state.status is WorkflowStatus.RUNNING
