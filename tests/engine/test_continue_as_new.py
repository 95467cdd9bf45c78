"""``ctx.continue_as_new`` (API.md §11): a run ends and the next run of its id starts in one store
write, so a loop that runs for ever keeps a short history; and ``MAX_HISTORY_EVENTS``, the limit
that names it."""

from __future__ import annotations

import contextlib

import pytest

from beluga_workflows import (
    EventType,
    HistoryTooLongError,
    InvalidInputError,
    Signal,
    WorkflowFailedError,
    WorkflowOptions,
    WorkflowStatus,
    activity,
    workflow,
)
from beluga_workflows.testing import WorkflowEnvironment

from .support import Calls, unique, wait_until

CALLS = Calls()


@activity(name="engine.can.bill")
def bill(spec: list) -> int:
    key, month, step = spec
    CALLS.hit((key, month, step))
    return step


@workflow(name="engine.can.billing_cycle")
def billing_cycle(ctx, state: dict) -> dict:
    """Five steps a month, then the next month as a new run, until ``months`` are billed."""
    total = state["total"] + sum(ctx.execute_activity(bill, [state["key"], state["month"], step])
                                 for step in range(5))
    if state["month"] + 1 < state["months"]:
        ctx.continue_as_new({**state, "month": state["month"] + 1, "total": total})
    return {"months": state["months"], "total": total}


class OpenRuns:
    """Counts the open runs of the store each time a run starts (one open run at any time)."""

    def __init__(self, store):
        self.store, self.seen = store, []

    def on_workflow_start(self, workflow_id, input):
        self.seen.append(self.store.count(_open()))


def _open():
    from beluga_workflows import WorkflowFilter

    return WorkflowFilter(status=WorkflowStatus.RUNNING)


@pytest.mark.parametrize("store", ["memory", pytest.param("django-postgres",
                                                        marks=pytest.mark.postgres)],
                         indirect=True)
def test_a_thousand_months_keep_a_short_history_and_one_open_run(store):
    from beluga_workflows import Hooks

    counter = OpenRuns(store)
    hooks = Hooks(on_workflow_start=counter.on_workflow_start)
    key = unique("cycle")
    with WorkflowEnvironment(store=store, hooks=hooks) as env:
        handle = env.execute(billing_cycle, WorkflowOptions(
            id=key, input={"key": key, "month": 0, "months": 1000, "total": 0}))
        assert handle.result(timeout=3600) == {"months": 1000, "total": 10 * 1000}
    last = store.load(key)
    assert last.status is WorkflowStatus.COMPLETED and last.run_id != handle.run_id
    # One month's run only: its start, 5 steps of 2 events (started, completed), its end.
    assert len(last.history) == 12, [e.type.value for e in last.history]
    assert last.history[0].result["generation"] == 1000
    assert len(counter.seen) == 1000 and set(counter.seen) == {1}
    assert store.count() == 1
    assert all(CALLS[(key, month, step)] == 1 for month in (0, 499, 999) for step in range(5))


@workflow(name="engine.can.mailbox")
def mailbox(ctx, state: dict) -> dict:
    """Takes one "mail" signal per run; continues as new until it has ``want`` of them."""
    got = state["got"] + [ctx.receive_signal("mail")]
    if len(got) < state["want"]:
        ctx.continue_as_new({"got": got, "want": state["want"]})
    return {"got": got}


def test_signals_not_consumed_pass_to_the_next_run_in_order(env):
    handle = env.execute(mailbox, WorkflowOptions(input={"got": [], "want": 4}))
    for n in range(4):  # all four arrive before the first run takes one
        env.signal(handle.id, Signal(name="mail", payload=n))
    assert handle.result() == {"got": [0, 1, 2, 3]}
    first = env.store.load(handle.id).history[0]
    assert first.type is EventType.WORKFLOW_STARTED
    assert first.result["generation"] == 4 and first.result["continued_from"]


def test_the_next_run_keeps_queue_deadline_and_goes_on_at_once(env):
    handle = env.execute(mailbox, WorkflowOptions(input={"got": [], "want": 2}, queue="mail",
                                                  timeout=600))
    env.run_until_idle()
    before = env.store.load(handle.id)
    env.signal(handle.id, Signal(name="mail", payload="a"))
    env.run_until_idle()
    after = env.store.load(handle.id)
    assert after.run_id != before.run_id and after.is_open
    assert handle.status() is WorkflowStatus.RUNNING  # the handle follows the chain
    assert (after.queue, after.deadline, after.input) == (
        "mail", before.deadline, {"got": ["a"], "want": 2})
    assert [e.type for e in after.history] == [EventType.WORKFLOW_STARTED]
    env.signal(handle.id, Signal(name="mail", payload="b"))
    assert handle.result() == {"got": ["a", "b"]}


def test_a_bad_input_is_refused_and_the_run_goes_on():
    @workflow(name=unique("engine.can.bad"))
    def bad(ctx, _=None):
        try:
            ctx.continue_as_new({"not": object()})
        except InvalidInputError as exc:
            return f"refused: {exc}"

    with WorkflowEnvironment() as env:
        handle = env.execute(bad)
        assert handle.result().startswith("refused: ")
        assert env.store.load(handle.id).run_id == handle.run_id


def test_a_history_past_max_history_events_fails_the_run_naming_continue_as_new():
    @workflow(name=unique("engine.can.forever"))
    def forever(ctx, _=None):
        n = 0
        while True:
            with contextlib.suppress(HistoryTooLongError):  # swallowed: the run fails anyway
                ctx.side_effect(lambda: 1)
            n += 1
            if n > 100:
                return "escaped"

    with WorkflowEnvironment(max_history_events=20) as env:
        handle = env.execute(forever)
        with pytest.raises(WorkflowFailedError) as info:
            handle.result()
    assert info.value.error["type"] == "HistoryTooLongError"
    assert "continue_as_new" in info.value.error["message"]
    assert "20" in info.value.error["message"]
    state = env.store.load(handle.id)
    assert len(state.history) == 21  # 20 recorded, then the end
    assert state.history[-1].type is EventType.WORKFLOW_FAILED


@pytest.mark.parametrize("bad", [0, 9, -1, 2.5, "50000", True])
def test_a_bad_max_history_events_is_refused(bad):
    with pytest.raises(InvalidInputError, match="max_history_events"):
        WorkflowEnvironment(max_history_events=bad)


@workflow(name="engine.can.child")
def can_child(ctx, rounds: int) -> str:
    if rounds > 0:
        ctx.continue_as_new(rounds - 1)
    return "done"


@workflow(name="engine.can.parent")
def can_parent(ctx, _=None) -> str:
    return ctx.execute_child(can_child, 3)


def test_a_child_that_continues_as_new_is_still_its_parents_child(env):
    handle = env.execute(can_parent)
    assert handle.result() == "done"
    child = env.store.load(f"{handle.id}/1")
    assert child.parent_id == handle.id and child.history[0].result["generation"] == 4
    assert child.history[0].signal_payload["workflow_id"] == handle.id


def test_cancel_of_a_chain_cancels_the_newest_run(env):
    handle = env.execute(mailbox, WorkflowOptions(input={"got": [], "want": 3}))
    env.signal(handle.id, Signal(name="mail", payload=1))
    env.run_until_idle()
    wait_until(lambda: len(env.store.load(handle.id).history[0].result or {}) > 0,
               message="the second run")
    env.cancel(handle.id)
    env.run_until_idle()
    assert env.store.load(handle.id).status is WorkflowStatus.CANCELED
