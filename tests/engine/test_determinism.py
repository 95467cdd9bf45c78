"""Replay against recorded histories: changed code is caught (NonDeterminismError, run failed), and a
golden history recorded earlier still replays to the same result with the current code.

Regenerate the golden file (only when its workflow is changed on purpose) with
``python -m tests.engine.test_determinism``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from beluga_workflows import (
    EventType,
    Hooks,
    NonDeterminismError,
    Signal,
    WorkflowFailedError,
    WorkflowOptions,
    WorkflowState,
    WorkflowStatus,
    activity,
    workflow,
)
from beluga_workflows.testing import WorkflowEnvironment

from .support import Calls, unique

CALLS = Calls()
GOLDEN = Path(__file__).parent / "golden" / "order_history.json"


@activity(name="engine.determinism.reserve")
def reserve(key: str) -> str:
    CALLS.hit((key, "reserve"))
    return f"reserved:{key}"


@activity(name="engine.determinism.charge")
def charge(key: str) -> str:
    CALLS.hit((key, "charge"))
    return f"charged:{key}"


@activity(name="engine.determinism.ship")
def ship(key: str) -> str:
    CALLS.hit((key, "ship"))
    return f"shipped:{key}"


ACTIVITIES = {"reserve": reserve, "charge": charge, "ship": ship}
# The "code" of engine.determinism.ordered; tests change it (monkeypatch) to simulate a deploy.
PLAN = {"steps": ("reserve", "charge"), "guard": False}


@workflow(name="engine.determinism.ordered")
def ordered(ctx, key: str) -> list[str]:
    done = []
    for name in PLAN["steps"]:
        if PLAN["guard"]:
            try:
                done.append(ctx.execute_activity(ACTIVITIES[name], key))
            except Exception:  # user code that swallows everything must not hide a divergence
                done.append("fallback")
        else:
            done.append(ctx.execute_activity(ACTIVITIES[name], key))
    ctx.receive_signal("continue")
    done.append(ctx.execute_activity(ship, key))
    return done


def start_and_suspend(env, key: str):
    handle = env.execute(ordered, WorkflowOptions(id=key, input=key))
    env.run_until_idle()
    assert env.store.load(key, with_history=False).wait_kind == "signal"
    return handle


def test_unchanged_code_replays_without_re_running_steps(env):
    key = unique("same")
    handle = start_and_suspend(env, key)
    env.signal(key, Signal(name="continue"))
    assert handle.result() == [f"reserved:{key}", f"charged:{key}", f"shipped:{key}"]
    assert [CALLS[(key, n)] for n in ("reserve", "charge", "ship")] == [1, 1, 1]


def _assert_failed_by_divergence(env, handle, key: str) -> None:
    with pytest.raises(WorkflowFailedError) as info:
        handle.result()
    error = info.value.error
    assert error["type"] == "NonDeterminismError"
    assert "diverged from its history" in error["message"]
    assert handle.status() is WorkflowStatus.FAILED
    state = env.store.load(key)
    assert state.history[-1].type is EventType.WORKFLOW_FAILED
    assert state.error["type"] == "NonDeterminismError"
    assert CALLS[(key, "ship")] == 0


def test_reordered_activities_raise_non_determinism_and_fail_the_run(store, monkeypatch):
    failures: list[BaseException] = []
    with WorkflowEnvironment(
        store=store, hooks=Hooks(on_workflow_fail=lambda wf, exc: failures.append(exc))
    ) as env:
        key = unique("reordered")
        handle = start_and_suspend(env, key)
        monkeypatch.setitem(PLAN, "steps", ("charge", "reserve"))
        env.signal(key, Signal(name="continue"))
        _assert_failed_by_divergence(env, handle, key)
    message = store.load(key).error["message"]
    assert "step 1" in message
    assert "engine.determinism.charge" in message and "engine.determinism.reserve" in message
    assert [CALLS[(key, n)] for n in ("reserve", "charge")] == [1, 1]  # nothing ran again
    assert len(failures) == 1 and isinstance(failures[0], NonDeterminismError)


def test_dropped_steps_raise_non_determinism(env, monkeypatch):
    key = unique("dropped")
    handle = start_and_suspend(env, key)
    monkeypatch.setitem(PLAN, "steps", ("reserve",))
    env.signal(key, Signal(name="continue"))
    _assert_failed_by_divergence(env, handle, key)


def test_divergence_cannot_be_swallowed_by_workflow_code(env, monkeypatch):
    key = unique("swallowed")
    handle = start_and_suspend(env, key)
    # The first step changed; the code catches every Exception around it and goes on.
    monkeypatch.setitem(PLAN, "steps", ("ship", "charge"))
    monkeypatch.setitem(PLAN, "guard", True)
    env.signal(key, Signal(name="continue"))
    _assert_failed_by_divergence(env, handle, key)


# -- the golden history ------------------------------------------------------------------------------

GOLDEN_START = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


@workflow(name="engine.golden.order")
def golden_order(ctx, order: dict) -> dict:
    reserved = ctx.execute_activity(reserve, order["key"])
    placed_at = ctx.now()
    token = ctx.side_effect(lambda: uuid.uuid4().hex)
    approval = ctx.receive_signal("approval", timeout=timedelta(days=3))
    ctx.sleep(timedelta(hours=1))
    charged = ctx.execute_activity(charge, order["key"])
    return {
        "reserved": reserved,
        "charged": charged,
        "approval": approval,
        "token": token,
        "placed_at": placed_at.isoformat(),
        "total": order["total"],
    }


@workflow(name="engine.golden.order_charge_first")
def golden_order_charge_first(ctx, order: dict) -> dict:
    """The same workflow after an incompatible change: it charges before reserving."""
    charged = ctx.execute_activity(charge, order["key"])
    reserved = ctx.execute_activity(reserve, order["key"])
    return {"reserved": reserved, "charged": charged}


def record_golden_history() -> dict:
    """Run engine.golden.order once and return its final state as the golden JSON holds it."""
    with WorkflowEnvironment(start=GOLDEN_START) as env:
        handle = env.execute(
            golden_order, WorkflowOptions(id="golden-order-1", input={"key": "golden", "total": 42})
        )
        env.run_until_idle()
        env.advance(timedelta(hours=5))
        env.signal(handle.id, Signal(name="approval", payload={"by": "ann"}))
        handle.result()
        return env.store.load(handle.id).to_dict()


def reopened(golden: dict, **changes) -> WorkflowState:
    """The golden run as it stood just before it finished, ready to be replayed by current code."""
    state = WorkflowState.from_dict(golden)
    assert state.history[-1].type is EventType.WORKFLOW_COMPLETED
    state.history = state.history[:-1]
    state.status = WorkflowStatus.RUNNING
    state.result = state.error = state.ended_at = None
    state.lease_owner, state.lease_expires_at = "", None
    state.wake_at = state.updated_at
    for name, value in changes.items():
        setattr(state, name, value)
    return state


@pytest.fixture
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_golden_history_is_a_completed_run(golden):
    state = WorkflowState.from_dict(golden)
    assert state.workflow_type == "engine.golden.order"
    assert state.status is WorkflowStatus.COMPLETED
    kinds = {e.type for e in state.history}
    assert {
        EventType.ACTIVITY_COMPLETED,
        EventType.SIDE_EFFECT_RECORDED,
        EventType.SIGNAL_RECEIVED,
        EventType.TIMER_FIRED,
    } <= kinds


def test_golden_history_replays_to_the_same_result(store, golden):
    store.save(reopened(golden))
    with WorkflowEnvironment(store=store, start=GOLDEN_START + timedelta(days=30)) as env:
        result = env.get_handle("golden-order-1").result()
    assert result == golden["result"]
    assert [CALLS[("golden", n)] for n in ("reserve", "charge")] == [0, 0], "a recorded step re-ran"
    replayed = store.load("golden-order-1")
    assert replayed.status is WorkflowStatus.COMPLETED
    assert [(e.id, e.op, e.type.value, e.name) for e in replayed.history] == [
        (e["id"], e["op"], e["type"], e["activity_name"] or e["signal_name"])
        for e in golden["history"]
    ]


def test_golden_history_rejects_incompatible_code(store, golden):
    store.save(reopened(golden, workflow_type="engine.golden.order_charge_first"))
    with WorkflowEnvironment(store=store) as env:
        handle = env.get_handle("golden-order-1")
        with pytest.raises(WorkflowFailedError) as info:
            handle.result()
    assert info.value.error["type"] == "NonDeterminismError"
    assert "engine.determinism.charge" in info.value.error["message"]
    assert store.load("golden-order-1").status is WorkflowStatus.FAILED
    assert CALLS[("golden", "charge")] == 0


@pytest.mark.timeout(10)
def test_history_of_an_unregistered_type_is_reported_not_waited_on_forever(store, golden):
    store.save(reopened(golden, workflow_type="engine.golden.renamed_since"))
    with WorkflowEnvironment(store=store) as env, pytest.raises(TimeoutError) as info:
        env.get_handle("golden-order-1").result()
    assert "unknown workflow type engine.golden.renamed_since" in str(info.value)
    assert store.load("golden-order-1").status is WorkflowStatus.RUNNING


if __name__ == "__main__":  # regenerate the golden file
    GOLDEN.write_text(json.dumps(record_golden_history(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
