"""A run whose process dies mid-way is resumed by another worker, without re-running finished steps.

The "process death" is a ``Crash`` (a ``BaseException``, like ``SystemExit``) raised right after the
k-th checkpoint commits: the activation dies holding its lease, exactly as a killed worker leaves
it. A fresh executor (a new lease owner) must pick the run up through its recovery sweep once the
lease has expired, and finish it with every recorded step run exactly once in total.
"""

from __future__ import annotations

import threading

import pytest

from beluga_workflows import EventType, WorkflowOptions, WorkflowStatus, activity, workflow

from .support import Calls, events, unique, wait_until

LEASE = 0.25  # short, so recovery after the "death" takes a fraction of a second
STEPS = 10

CALLS = Calls()
CRASH_IN_FLIGHT: set[str] = set()


class Crash(BaseException):
    """Stands in for the process dying: no engine code may catch it."""


@activity(name="engine.crash.step")
def step(data: dict) -> int:
    CALLS.hit((data["key"], data["i"]))
    if data["i"] == data.get("crash_at") and data["key"] in CRASH_IN_FLIGHT:
        CRASH_IN_FLIGHT.discard(data["key"])
        raise Crash(f"process died while step {data['i']} was running")
    return data["i"] * 10


@workflow(name="engine.crash.ten_steps")
def ten_steps(ctx, data: dict) -> list[int]:
    return [ctx.execute_activity(step, {**data, "i": i}) for i in range(STEPS)]


class CrashingStore:
    """Wraps a real store; the "process" dies right after the k-th activity checkpoint commits.

    ``after_step=0`` dies right after the claim commits, before any step ran.
    """

    def __init__(self, inner, after_step: int):
        self._inner = inner
        self.after_step = after_step
        self.completed = 0
        self.crashed = threading.Event()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def _die(self) -> None:
        self.crashed.set()
        raise Crash(f"process died after checkpoint {self.after_step}")

    def claim(self, *args, **kwargs):
        state = self._inner.claim(*args, **kwargs)
        if state is not None and self.after_step == 0 and not self.crashed.is_set():
            self._die()
        return state

    def append(self, workflow_id, run_id, owner, events, **kwargs):
        control = self._inner.append(workflow_id, run_id, owner, events, **kwargs)
        self._committed(events)
        return control

    def checkpoint(self, workflow_id, run_id, owner, events, **kwargs):  # a step's write
        cancel_requested = self._inner.checkpoint(workflow_id, run_id, owner, events, **kwargs)
        self._committed(events)
        return cancel_requested

    def _committed(self, events) -> None:
        done = sum(1 for e in events if e.type is EventType.ACTIVITY_COMPLETED)
        self.completed += done
        if done and self.completed == self.after_step and not self.crashed.is_set():
            self._die()


@pytest.mark.parametrize("k", range(STEPS + 1))
def test_resumes_after_dying_after_step_k_and_runs_each_step_once(store, make_local, k):
    key = unique("crash")
    crashing = CrashingStore(store, after_step=k)
    doomed = make_local(store=crashing, lease_seconds=LEASE)
    handle = doomed.execute(ten_steps, WorkflowOptions(id=key, input={"key": key}))
    assert crashing.crashed.wait(5), "the first process never reached the crash point"
    doomed.close()

    # The dead activation still holds the lease and k steps are recorded.
    state = store.load(handle.id)
    assert state.status is WorkflowStatus.RUNNING
    assert state.lease_owner, "a dead worker's lease stays until it expires"
    assert len(events(state, EventType.ACTIVITY_COMPLETED)) == k
    assert [CALLS[(key, i)] for i in range(STEPS)] == [1] * k + [0] * (STEPS - k)
    dead_lease_until, recorded = state.lease_expires_at, len(state.history)

    survivor = make_local(lease_seconds=LEASE, sweep_interval=0.05)
    result = survivor.get_handle(handle.id).result(timeout=10)

    assert result == [i * 10 for i in range(STEPS)]
    assert [CALLS[(key, i)] for i in range(STEPS)] == [1] * STEPS
    final = store.load(handle.id)
    assert final.status is WorkflowStatus.COMPLETED
    assert final.run_id == handle.run_id
    assert len(events(final, EventType.ACTIVITY_STARTED)) == STEPS
    assert len(events(final, EventType.ACTIVITY_COMPLETED)) == STEPS
    # The survivor waited for the dead worker's lease to expire before touching the run.
    assert final.history[recorded].timestamp >= dead_lease_until


def test_step_in_flight_at_the_crash_runs_again(store, make_local):
    key = unique("inflight")
    crash_at = 4
    CRASH_IN_FLIGHT.add(key)
    doomed = make_local(lease_seconds=LEASE)
    handle = doomed.execute(
        ten_steps, WorkflowOptions(id=key, input={"key": key, "crash_at": crash_at})
    )

    wait_until(lambda: key not in CRASH_IN_FLIGHT, message="the step to start and die")
    doomed.close()
    state = store.load(handle.id)
    assert state.status is WorkflowStatus.RUNNING
    # Started but not recorded: the history knows nothing of step 4 yet.
    assert len(events(state, EventType.ACTIVITY_COMPLETED)) == crash_at
    assert len(events(state, EventType.ACTIVITY_STARTED)) == crash_at

    survivor = make_local(lease_seconds=LEASE)
    assert survivor.get_handle(handle.id).result(timeout=10) == [i * 10 for i in range(STEPS)]
    counts = [CALLS[(key, i)] for i in range(STEPS)]
    assert counts[crash_at] == 2, "the step in flight at the crash must run again"
    assert counts[:crash_at] + counts[crash_at + 1 :] == [1] * (STEPS - 1)


SLOW_RELEASE: dict[str, threading.Event] = {}


@activity(name="engine.crash.slow")
def slow(key: str) -> str:
    CALLS.hit((key, "slow"))
    SLOW_RELEASE[key].wait(5)
    return "done"


@workflow(name="engine.crash.one_slow_step")
def one_slow_step(ctx, key: str) -> str:
    return ctx.execute_activity(slow, key)


def test_live_worker_keeps_its_lease_through_a_long_step(store, make_local):
    """A step that outlasts several lease periods is not taken over by the recovery sweep."""
    key = unique("slow")
    SLOW_RELEASE[key] = threading.Event()
    executor = make_local(lease_seconds=0.3, sweep_interval=0.02)
    handle = executor.execute(one_slow_step, WorkflowOptions(id=key, input=key))
    wait_until(lambda: CALLS[(key, "slow")] >= 1, message="the slow step to start")
    owner = store.load(key, with_history=False).lease_owner
    # Hold the step for five lease periods while the sweep runs every 20 ms.
    threading.Event().wait(1.5)
    SLOW_RELEASE[key].set()
    assert handle.result(timeout=5) == "done"
    assert CALLS[(key, "slow")] == 1, "another worker took the run while its worker was alive"
    assert owner


class StalledRenewals:
    """Wraps a store for a worker whose lease renewals never arrive (a paused or partitioned process)."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def renew(self, *args, **kwargs) -> bool:
        return False


ZOMBIE_GATE: dict[str, threading.Event] = {}


@activity(name="engine.crash.first_call_stalls")
def first_call_stalls(key: str) -> str:
    n = CALLS.hit((key, "stall"))
    if n == 1:
        ZOMBIE_GATE[key].wait(5)
    return f"call {n}"


@workflow(name="engine.crash.zombie")
def zombie(ctx, key: str) -> list[str]:
    first = ctx.execute_activity(first_call_stalls, key)
    return [first, ctx.execute_activity(step, {"key": key, "i": 0})]


def test_a_worker_that_lost_its_lease_writes_nothing(store, make_local):
    """The run moves to a live worker; the stalled one's late result is refused, not recorded."""
    key = unique("zombie")
    ZOMBIE_GATE[key] = threading.Event()
    stalled = make_local(store=StalledRenewals(store), lease_seconds=LEASE, sweep_interval=60)
    stalled.execute(zombie, WorkflowOptions(id=key, input=key))
    wait_until(lambda: CALLS[(key, "stall")] == 1, message="the stalled worker to start")

    survivor = make_local(lease_seconds=5)
    assert survivor.get_handle(key).result(timeout=10) == ["call 2", 0]
    ZOMBIE_GATE[key].set()  # the stalled worker wakes up and tries to record "call 1"
    stalled.close()

    state = store.load(key)
    assert state.status is WorkflowStatus.COMPLETED and state.result == ["call 2", 0]
    completed = events(state, EventType.ACTIVITY_COMPLETED)
    assert [e.result for e in completed] == ["call 2", 0]
    assert [e.id for e in state.history] == list(range(1, len(state.history) + 1))
    assert CALLS[(key, "stall")] == 2  # at least once: the stalled attempt did run
    assert CALLS[(key, 0)] == 1
