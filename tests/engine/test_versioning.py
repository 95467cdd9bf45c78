"""Versioning (API.md §11): ``ctx.patched`` / ``ctx.deprecate_patch`` let workflow code change while
runs are open. A run that got past the patch point under the old code keeps to the old path; a run
that reaches it under the new code takes the new one; replays decide from the history."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta

import pytest

from beluga_workflows import (
    EventType,
    InvalidInputError,
    RetryPolicy,
    Signal,
    WorkflowFailedError,
    WorkflowOptions,
    WorkflowStatus,
    activity,
    workflow,
)
from beluga_workflows.testing import WorkflowEnvironment

from .support import Calls, unique, wait_until, waiting_for_signal
from .test_determinism import GOLDEN, GOLDEN_START, charge, reopened, reserve

CALLS = Calls()


def _counted(name: str):
    @activity(name=f"engine.versioning.{name}")
    def counted(key: str) -> str:
        CALLS.hit((key, name))
        return name
    return counted


invoice, email, invoice_v2, receipt, reserve_v2, pre_charge = map(_counted, (
    "invoice", "email", "invoice-v2", "receipt", "reserve-v2", "pre-charge"))


# The deployed "code" of engine.versioning.billing; a test swaps it to simulate a deploy.
CODE = {"version": "A"}


@workflow(name="engine.versioning.billing")
def billing(ctx, key: str) -> list[str]:
    """Version A: invoice, wait for "paid", receipt. Version B replaces the invoice by an e-mail
    and an invoice behind ``patched("email-invoice")``; "B-unpatched" makes the same change
    without the patch; "C" has only the new path (``deprecate_patch``)."""
    done = []
    version = CODE["version"]
    if version == "B":
        if ctx.patched("email-invoice"):
            done += [ctx.execute_activity(email, key),
                     ctx.execute_activity(invoice_v2, key)]
        else:
            done.append(ctx.execute_activity(invoice, key))
    elif version == "B-unpatched":
        done += [ctx.execute_activity(email, key),
                 ctx.execute_activity(invoice_v2, key)]
    elif version == "C":
        ctx.deprecate_patch("email-invoice")
        done += [ctx.execute_activity(email, key),
                 ctx.execute_activity(invoice_v2, key)]
    else:
        done.append(ctx.execute_activity(invoice, key))
    ctx.receive_signal("paid")
    done.append(ctx.execute_activity(receipt, key))
    return done


OLD_PATH = ["invoice", "receipt"]
NEW_PATH = ["email", "invoice-v2", "receipt"]


def suspend_runs(env, count: int) -> list[str]:
    """``count`` runs of version A, each suspended waiting for "paid"."""
    ids = [unique("bill") for _ in range(count)]
    for workflow_id in ids:
        env.execute(billing, WorkflowOptions(id=workflow_id, input=workflow_id))
    env.run_until_idle()
    for workflow_id in ids:
        wait_until(lambda w=workflow_id: waiting_for_signal(env.store, w, "paid"),
                   message=f"{workflow_id} waiting for paid")
    return ids


def pay(env, ids: list[str]) -> None:
    for workflow_id in ids:
        env.signal(workflow_id, Signal(name="paid"))
    env.run_until_idle()


def test_a_deploy_with_a_patch_keeps_open_runs_on_the_old_path(env, monkeypatch):
    ids = suspend_runs(env, 20)
    monkeypatch.setitem(CODE, "version", "B")  # the deploy
    pay(env, ids)
    for workflow_id in ids:
        assert env.get_handle(workflow_id).result() == OLD_PATH
        assert [CALLS[(workflow_id, n)] for n in ("invoice", "email", "receipt")] == [1, 0, 1]
        markers = [e for e in env.store.load(workflow_id).history
                   if e.type is EventType.SIDE_EFFECT_RECORDED]
        assert markers == []  # the old path records no patch marker

    fresh = unique("bill")
    env.execute(billing, WorkflowOptions(id=fresh, input=fresh))
    env.run_until_idle()
    pay(env, [fresh])
    assert env.get_handle(fresh).result() == NEW_PATH
    history = env.store.load(fresh).history
    marker = next(e for e in history if e.type is EventType.SIDE_EFFECT_RECORDED)
    assert (marker.op, marker.activity_name) == (1, "patched:email-invoice")
    assert CALLS[(fresh, "invoice")] == 0


def test_the_same_change_without_the_patch_fails_open_runs(env, monkeypatch):
    ids = suspend_runs(env, 20)
    monkeypatch.setitem(CODE, "version", "B-unpatched")
    pay(env, ids)
    for workflow_id in ids:
        with pytest.raises(WorkflowFailedError) as info:
            env.get_handle(workflow_id).result()
        assert info.value.error["type"] == "NonDeterminismError"
        assert CALLS[(workflow_id, "email")] == 0  # nothing ran on the diverged path


def test_a_run_started_under_the_patch_replays_on_the_new_path(env, monkeypatch):
    monkeypatch.setitem(CODE, "version", "B")
    key = unique("bill")
    env.execute(billing, WorkflowOptions(id=key, input=key))
    env.run_until_idle()
    wait_until(lambda: waiting_for_signal(env.store, key, "paid"), message="waiting for paid")
    pay(env, [key])  # the activation after the signal replays the patch from its marker
    assert env.get_handle(key).result() == NEW_PATH
    assert [CALLS[(key, n)] for n in ("email", "invoice-v2")] == [1, 1]


def test_deprecate_patch_replays_runs_that_recorded_the_patch(env, monkeypatch):
    monkeypatch.setitem(CODE, "version", "B")
    patched_run = unique("bill")
    env.execute(billing, WorkflowOptions(id=patched_run, input=patched_run))
    env.run_until_idle()
    wait_until(lambda: waiting_for_signal(env.store, patched_run, "paid"), message="paid wait")
    monkeypatch.setitem(CODE, "version", "C")  # the old branch removed
    fresh = unique("bill")
    env.execute(billing, WorkflowOptions(id=fresh, input=fresh))
    env.run_until_idle()
    pay(env, [patched_run, fresh])
    for workflow_id in (patched_run, fresh):
        assert env.get_handle(workflow_id).result() == NEW_PATH
        assert CALLS[(workflow_id, "email")] == 1
    # deprecate_patch records the same marker, so code that still has patched() replays it.
    marker = env.store.load(fresh).history[1]
    assert (marker.type, marker.activity_name) == (EventType.SIDE_EFFECT_RECORDED,
                                                   "patched:email-invoice")


def test_the_answer_is_decided_once_per_run():
    answers = []

    @workflow(name=unique("engine.versioning.loop"))
    def loop(ctx, _=None):
        for _ in range(3):
            answers.append(ctx.patched("p"))
            ctx.sleep(1)
        return answers[-3:]

    with WorkflowEnvironment() as env:
        handle = env.execute(loop)
        env.run_until_idle()
        assert handle.result() == [True, True, True]
        markers = [e for e in env.store.load(handle.id).history
                   if e.type is EventType.SIDE_EFFECT_RECORDED]
        assert len(markers) == 1  # one marker, however often the run asks


@pytest.mark.parametrize("bad", ["", None, 7, "x" * 201, "a\x00b"])
def test_a_bad_patch_id_is_refused(bad):
    seen = []

    @workflow(name=unique("engine.versioning.bad"))
    def bad_patch(ctx, _=None):
        try:
            ctx.patched(bad)
        except InvalidInputError as exc:
            seen.append(str(exc))
        return "ok"

    with WorkflowEnvironment() as env:
        assert env.execute(bad_patch).result() == "ok"
    assert seen and "patch id" in seen[0]


# -- a golden history recorded by code without the patch ------------------------------------------

@workflow(name="engine.golden.order_patched")
def golden_order_patched(ctx, order: dict) -> dict:
    """engine.golden.order after a patched change: it reserves through a new activity and runs
    a new step before charging (both behind patches)."""
    if ctx.patched("reserve-v2"):
        reserved = ctx.execute_activity(reserve_v2, order["key"])
    else:
        reserved = ctx.execute_activity(reserve, order["key"])
    placed_at = ctx.now()
    token = ctx.side_effect(lambda: "new-token")
    approval = ctx.receive_signal("approval", timeout=timedelta(days=3))
    ctx.sleep(timedelta(hours=1))
    if ctx.patched("pre-charge"):
        ctx.execute_activity(pre_charge, order["key"])
    charged = ctx.execute_activity(charge, order["key"])
    return {"reserved": reserved, "charged": charged, "approval": approval, "token": token,
            "placed_at": placed_at.isoformat(), "total": order["total"]}


def test_a_golden_history_replays_on_the_old_path_and_new_runs_take_the_new_one(store):
    golden = json.loads(GOLDEN.read_text())
    store.save(reopened(golden, workflow_type="engine.golden.order_patched"))
    with WorkflowEnvironment(store=store, start=GOLDEN_START + timedelta(days=30)) as env:
        assert env.get_handle("golden-order-1").result() == golden["result"]
        assert [CALLS[("golden", n)] for n in ("reserve-v2", "pre-charge")] == [0, 0]
        replayed = store.load("golden-order-1")
        assert [e.type.value for e in replayed.history] == [e["type"] for e in golden["history"]]

        key = unique("new")
        handle = env.execute(golden_order_patched, WorkflowOptions(
            id="new-order", input={"key": key, "total": 1}))
        env.run_until_idle()
        env.advance(timedelta(hours=5))
        env.signal(handle.id, Signal(name="approval", payload={"by": "bob"}))
        result = handle.result()
    assert result["reserved"] == "reserve-v2"
    assert [CALLS[(key, n)] for n in ("reserve-v2", "pre-charge")] == [1, 1]
    names = [e.activity_name for e in store.load("new-order").history
             if e.type is EventType.SIDE_EFFECT_RECORDED]
    assert names == ["patched:reserve-v2", "now", "side_effect", "patched:pre-charge"]
    assert store.load("new-order").status is WorkflowStatus.COMPLETED


# -- resume and fork ---------------------------------------------------------------------------------

BUG = {"on": True}


def _step(name: str):
    @activity(name=f"engine.lifecycle.{name}", retry=RetryPolicy(max_attempts=1))
    def counted(key: str) -> str:
        CALLS.hit((key, name))
        if name == "step3" and BUG["on"]:
            raise RuntimeError("a bug in step 3")
        return name
    return counted


STEPS = [_step(f"step{n}") for n in range(1, 6)]


@workflow(name="engine.lifecycle.five_steps")
def five_steps(ctx, key: str) -> list[str]:
    return [ctx.execute_activity(s, key) for s in STEPS]


def counts(key: str) -> list[int]:
    return [CALLS[(key, f"step{n}")] for n in range(1, 6)]


def test_resume_runs_the_failed_step_again_and_not_the_ones_before(env, monkeypatch):
    key = unique("resume")
    handle = env.execute(five_steps, WorkflowOptions(id=key, input=key))
    with pytest.raises(WorkflowFailedError):
        handle.result()
    assert counts(key) == [1, 1, 1, 0, 0]
    failed = env.store.load(key)
    monkeypatch.setitem(BUG, "on", False)  # the fix is deployed
    resumed = env.resume(key)
    assert resumed.id == key and resumed.run_id != failed.run_id
    assert resumed.result() == [f"step{n}" for n in range(1, 6)]
    assert counts(key) == [1, 1, 2, 1, 1]
    history = env.store.load(key).history
    assert [e.id for e in history] == list(range(1, len(history) + 1))
    assert history[0].result == {"resumed_from": failed.run_id}


def test_fork_from_the_third_step_runs_it_and_the_rest_under_a_new_id(env, monkeypatch):
    monkeypatch.setitem(BUG, "on", False)
    key = unique("fork")
    source = env.execute(five_steps, WorkflowOptions(id=key, input=key))
    source.result()
    history = env.store.load(key).history
    third = next(e for e in history if e.op == 3)
    forked = env.fork(key, from_event=third.id, id=f"{key}-again")
    assert forked.result() == [f"step{n}" for n in range(1, 6)]
    assert counts(key) == [1, 1, 2, 2, 2]
    copy = env.store.load(f"{key}-again")
    assert copy.history[0].result == {"forked_from": {
        "workflow_id": key, "run_id": source.run_id, "from_event": third.id}}
    assert env.store.load(key).run_id == source.run_id  # the source run is left as it was
    generated = env.fork(key)  # from the start
    assert generated.id.startswith(f"{key}-fork-") and generated.result()[0] == "step1"
    assert counts(key) == [2, 2, 3, 3, 3]


@workflow(name="engine.lifecycle.sleepy")
def sleepy(ctx, key: str) -> list[str]:
    done = [ctx.execute_activity(STEPS[0], key)]
    try:
        ctx.sleep(3600)
    except BaseException:
        done.append(ctx.execute_activity(STEPS[4], key))  # clean-up on cancel
        raise
    done.append(ctx.execute_activity(STEPS[1], key))
    return done


def test_resume_of_a_canceled_run_goes_on_from_the_step_it_was_canceled_at(env):
    key = unique("canceled")
    env.execute(sleepy, WorkflowOptions(id=key, input=key, timeout=7200))
    env.run_until_idle()
    env.cancel(key)
    env.run_until_idle()
    assert env.store.load(key).status is WorkflowStatus.CANCELED
    assert counts(key) == [1, 0, 0, 0, 1]
    resumed = env.resume(key)
    state = env.store.load(key)
    assert state.deadline is not None and state.cancel_requested is False
    assert resumed.result() == ["step1", "step2"]  # after the hour's sleep, slept again
    assert counts(key) == [1, 1, 0, 0, 1]  # step 1 not again, the clean-up not replayed


def test_resume_and_fork_refuse_what_they_cannot_do_and_change_nothing(env, monkeypatch):
    from beluga_workflows import WorkflowNotFoundError

    monkeypatch.setitem(BUG, "on", False)
    done = unique("done")
    env.execute(five_steps, WorkflowOptions(id=done, input=done)).result()
    waiting = unique("waiting")
    env.execute(billing, WorkflowOptions(id=waiting, input=waiting))
    env.run_until_idle()
    before = {w: env.store.load(w) for w in (done, waiting)}
    with pytest.raises(InvalidInputError) as info:
        env.resume(done)
    assert info.value.code == "conflict" and "completed" in str(info.value)
    with pytest.raises(InvalidInputError) as info:
        env.resume(waiting)
    assert info.value.code == "conflict" and "running" in str(info.value)
    with pytest.raises(InvalidInputError) as info:
        env.fork(waiting, from_event=2)
    assert info.value.code == "conflict"
    with pytest.raises(WorkflowNotFoundError):
        env.resume("no-such-run")
    with pytest.raises(WorkflowNotFoundError):
        env.fork("no-such-run", from_event=2)
    history = before[done].history
    inside = next(e for e in history if e.op == 2 and e.type is EventType.ACTIVITY_COMPLETED)
    for bad in (0, 1, len(history) + 1, "3", 2.0, True, inside.id):
        with pytest.raises(InvalidInputError) as info:
            env.fork(done, from_event=bad, id=unique("f"))
        assert info.value.code == "invalid_input"
    assert "inside step 2" in str(
        pytest.raises(InvalidInputError, env.fork, done, from_event=inside.id).value)
    with pytest.raises(InvalidInputError):
        env.fork(done, from_event=2, id="")
    from beluga_workflows import WorkflowAlreadyExistsError
    with pytest.raises(WorkflowAlreadyExistsError):
        env.fork(done, from_event=2, id=waiting)
    for workflow_id, state in before.items():
        after = env.store.load(workflow_id)
        assert (after.run_id, after.status, len(after.history)) == (
            state.run_id, state.status, len(state.history))
    assert len(env.store.list()) == 2


@workflow(name="engine.lifecycle.fan_out")
def fan_out(ctx, key: str) -> list[str]:
    return ctx.gather(*[ctx.start_activity(s, key) for s in STEPS[:4]])


def test_resume_after_a_failed_parallel_step_runs_only_that_step_again(env, monkeypatch):
    key = unique("gathered")
    handle = env.execute(fan_out, WorkflowOptions(id=key, input=key))
    with pytest.raises(WorkflowFailedError):
        handle.result()
    assert counts(key)[:4] == [1, 1, 1, 1]
    monkeypatch.setitem(BUG, "on", False)
    assert env.resume(key).result() == ["step1", "step2", "step3", "step4"]
    assert counts(key)[:4] == [1, 1, 2, 1]  # only the failed one ran again


@workflow(name="engine.lifecycle.caught")
def caught(ctx, key: str) -> list[str]:
    with contextlib.suppress(Exception):  # the failure is handled: the run goes on
        ctx.execute_activity(STEPS[2], key)
    done = [ctx.execute_activity(STEPS[3], key)]
    if BUG["on"]:
        raise RuntimeError("a bug after the handled failure")
    return done


def test_resume_does_not_rerun_a_failure_the_code_handled(env, monkeypatch):
    key = unique("caught")
    with pytest.raises(WorkflowFailedError):
        env.execute(caught, WorkflowOptions(id=key, input=key)).result()
    monkeypatch.setitem(BUG, "on", False)
    assert env.resume(key).result() == ["step4"]
    assert counts(key)[2:4] == [1, 1]  # the run failed of its own bug: nothing ran again
