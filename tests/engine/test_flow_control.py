"""Flow control (API.md §9) on every store that enforces it: concurrency slots, priority, throttle,
rate limit, debounce, batch, and the declarations refused at decoration time.

The tests run in the time-skipping environment on the memory store and the django store (SQLite
and PostgreSQL): virtual time makes throttles and windows exact. The same guarantees under real
Celery workers on PostgreSQL, with workers killed, are in ``tests/celery/test_flow_control.py``.
Each test uses keys (or event names) of its own.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from beluga_workflows import (
    Batch,
    Concurrency,
    Debounce,
    Event,
    EventType,
    InvalidInputError,
    RateLimit,
    RateLimitExceededError,
    Throttle,
    WorkflowFilter,
    WorkflowOptions,
    WorkflowStatus,
    workflow,
)
from beluga_workflows.engine.events import trigger_workflow_id

from .support import unique


@workflow(name="engine.flow.limited", concurrency=Concurrency(1, key="input.key"),
          priority="input.priority")
def limited(ctx, spec: dict) -> str:
    ctx.sleep(spec.get("sleep", 10))
    return spec["name"]


@workflow(name="engine.flow.looping", concurrency=Concurrency(1, key="input.key"))
def looping(ctx, spec: dict) -> str:
    ctx.sleep(10)
    if spec["left"] > 0:
        ctx.continue_as_new({**spec, "left": spec["left"] - 1})
    return spec["name"]


@workflow(name="engine.flow.two_keys",
          concurrency=[Concurrency(1, key="input.customer"), Concurrency(2, key="input.shop")])
def two_keys(ctx, spec: dict) -> str:
    ctx.sleep(10)
    return spec["name"]


@workflow(name="engine.flow.throttled", throttle=Throttle(2, "10s", key="input.key"))
def throttled(ctx, spec: dict) -> str:
    return ctx.now().isoformat()


@workflow(name="engine.flow.rated", rate_limit=RateLimit(1, "1h", key="input.key"))
def rated(ctx, spec: dict) -> str:
    return spec["key"]


@workflow(name="engine.flow.rated_events", on_event="engine-flow/ping",
          rate_limit=RateLimit(1, "1h", key="event.data.user"))
def rated_events(ctx, event: dict) -> str:
    return event["id"]


@workflow(name="engine.flow.debounced", on_event="engine-flow/edit",
          debounce=Debounce("1s", key="event.data.doc", timeout="3s"))
def debounced(ctx, event: dict) -> dict:
    return {"id": event["id"], "rev": event["data"]["rev"]}


@workflow(name="engine.flow.batched", on_event="engine-flow/row",
          batch=Batch(10, "1s", key="event.data.table"))
def batched(ctx, events: list) -> list:
    return [e["data"]["n"] for e in events]


def started_at(state) -> object:
    """When the run's workflow code first did something (its first operation's event)."""
    return next(e.timestamp for e in state.history if e.type is not EventType.WORKFLOW_STARTED)


# -- concurrency ------------------------------------------------------------------------------

def test_runs_over_the_limit_wait_as_running_without_a_worker_and_start_as_slots_free(env):
    key = unique("k")
    handles = [env.execute(limited, WorkflowOptions(input={"key": key, "name": f"r{n}"}))
               for n in range(3)]
    env.run_until_idle()
    states = [env.store.load(h.id, with_history=False) for h in handles]
    assert [s.status for s in states] == [WorkflowStatus.RUNNING] * 3
    assert states[0].wait_kind == "timer"
    for waiting in states[1:]:
        assert waiting.wait_kind == "concurrency" and not waiting.lease_owner
        assert waiting.wait_name == (f'concurrency "engine.flow.limited" key "{key}" '
                                     f"(1 of 1 in use)")
    assert [u for u in env.store.flow_usage("engine.flow.limited") if u["key"] == key] == [{
        "workflow_type": "engine.flow.limited", "scope": "concurrency:0", "key": key,
        "in_use": 1, "limit": 1, "waiting": 2}]
    assert [h.result() for h in handles] == ["r0", "r1", "r2"]
    runs = [env.store.load(h.id) for h in handles]
    # One at a time: each started when the one before it ended.
    for before, after in zip(runs, runs[1:], strict=False):
        assert started_at(after) >= before.ended_at
    assert [u for u in env.store.flow_usage() if u["key"] == key] == []


def test_a_run_that_continues_as_new_keeps_its_slot_until_the_last_run_ends(env):
    key = unique("k")
    chain = env.execute(looping, WorkflowOptions(input={"key": key, "name": "loop", "left": 3}))
    other = env.execute(looping, WorkflowOptions(input={"key": key, "name": "next", "left": 0}))
    env.run_until_idle()
    runs = set()
    for _ in range(4):
        state = env.store.load(chain.id, with_history=False)
        runs.add(state.run_id)
        assert env.store.load(other.id, with_history=False).wait_kind == "concurrency"
        assert [(u["in_use"], u["waiting"]) for u in env.store.flow_usage("engine.flow.looping")
                if u["key"] == key] == [(1, 1)]
        env.advance(10)
    assert len(runs) == 4  # four runs of the chain, one slot all along
    assert chain.result() == "loop" and other.result() == "next"
    assert started_at(env.store.load(other.id)) >= env.store.load(chain.id).ended_at
    assert [u for u in env.store.flow_usage() if u["key"] == key] == []


def test_different_keys_do_not_wait_for_each_other(env):
    a, b = unique("a"), unique("b")
    first = env.execute(limited, WorkflowOptions(input={"key": a, "name": "a"}))
    second = env.execute(limited, WorkflowOptions(input={"key": b, "name": "b"}))
    env.run_until_idle()
    assert env.store.load(first.id, with_history=False).wait_kind == "timer"
    assert env.store.load(second.id, with_history=False).wait_kind == "timer"


def test_a_run_with_priority_600_starts_before_the_backlog_that_came_earlier(env):
    key = unique("prio")
    running = env.execute(limited, WorkflowOptions(input={"key": key, "name": "running"}))
    backlog = [env.execute(limited, WorkflowOptions(input={"key": key, "name": f"b{n}"}))
               for n in range(3)]
    env.advance(1)
    urgent = env.execute(limited, WorkflowOptions(input={"key": key, "name": "urgent",
                                                         "priority": 600}))
    handles = [running, *backlog, urgent]
    for handle in handles:
        handle.result()
    order = sorted(handles, key=lambda h: started_at(env.store.load(h.id)))
    assert [h.id for h in order] == [running.id, urgent.id, *[h.id for h in backlog]]


def test_options_priority_overrides_the_expression_and_is_validated(env):
    key = unique("opt")
    env.execute(limited, WorkflowOptions(input={"key": key, "name": "first"}))
    late = env.execute(limited, WorkflowOptions(input={"key": key, "name": "late"}))
    early = env.execute(limited, WorkflowOptions(input={"key": key, "name": "early"},
                                                 priority=300))
    late.result()
    assert started_at(env.store.load(early.id)) < started_at(env.store.load(late.id))
    for bad in (601, -601, 1.5, "10", True):
        with pytest.raises(InvalidInputError, match="priority"):
            env.execute(limited, WorkflowOptions(input={"key": key, "name": "x"}, priority=bad))


def test_a_waiting_run_canceled_ends_canceled_without_running_and_frees_nothing_it_held(env):
    key = unique("cancel")
    first = env.execute(limited, WorkflowOptions(input={"key": key, "name": "first"}))
    waiting = env.execute(limited, WorkflowOptions(input={"key": key, "name": "waiting"}))
    third = env.execute(limited, WorkflowOptions(input={"key": key, "name": "third"}))
    env.run_until_idle()
    env.cancel(waiting.id)
    env.run_until_idle()
    state = env.store.load(waiting.id)
    assert state.status is WorkflowStatus.CANCELED
    assert "canceled before it started" in state.error["message"]
    assert [e.type for e in state.history] == [EventType.WORKFLOW_STARTED,
                                               EventType.WORKFLOW_CANCELED]
    assert first.result() == "first" and third.result() == "third"
    assert [u for u in env.store.flow_usage() if u["key"] == key] == []


def test_a_waiting_run_past_its_deadline_times_out(env):
    key = unique("deadline")
    env.execute(limited, WorkflowOptions(input={"key": key, "name": "long", "sleep": 100}))
    short = env.execute(limited, WorkflowOptions(input={"key": key, "name": "short"}, timeout=5))
    env.advance(6)
    state = env.store.load(short.id, with_history=False)
    assert state.status is WorkflowStatus.TIMED_OUT
    assert "before it started" in state.error["message"]


def test_a_signal_to_a_waiting_run_does_not_let_it_in_early(env):
    key = unique("signal")
    env.execute(limited, WorkflowOptions(input={"key": key, "name": "first", "sleep": 50}))
    waiting = env.execute(limited, WorkflowOptions(input={"key": key, "name": "second"}))
    env.run_until_idle()
    env.signal(waiting.id, __import__("beluga_workflows").Signal("poke"))
    env.run_until_idle()
    state = env.store.load(waiting.id, with_history=False)
    assert state.wait_kind == "concurrency" and len(env.store.load(waiting.id).history) == 1
    assert waiting.result() == "second"


def test_a_run_with_two_keys_needs_a_slot_of_each(env):
    customer, shop = unique("cust"), unique("shop")
    a = env.execute(two_keys, WorkflowOptions(input={"customer": customer, "shop": shop,
                                                     "name": "a"}))
    b = env.execute(two_keys, WorkflowOptions(input={"customer": customer, "shop": shop,
                                                     "name": "b"}))
    c = env.execute(two_keys, WorkflowOptions(input={"customer": unique("other"), "shop": shop,
                                                     "name": "c"}))
    env.run_until_idle()
    kinds = {h.id: env.store.load(h.id, with_history=False).wait_kind for h in (a, b, c)}
    # b waits behind a (same customer); c has its own customer and the shop's second slot.
    assert kinds == {a.id: "timer", b.id: "concurrency", c.id: "timer"}
    assert [h.result() for h in (a, b, c)] == ["a", "b", "c"]
    assert started_at(env.store.load(b.id)) >= env.store.load(a.id).ended_at


def test_the_sweep_frees_the_slots_of_a_run_deleted_while_it_held_them(env):
    key = unique("orphan")
    holder = env.execute(limited, WorkflowOptions(input={"key": key, "name": "holder",
                                                         "sleep": 1000}))
    waiting = env.execute(limited, WorkflowOptions(input={"key": key, "name": "waiting"}))
    env.run_until_idle()
    env.store.delete(holder.id)
    assert waiting.result() == "waiting"
    assert [u for u in env.store.flow_usage() if u["key"] == key] == []


# -- throttle and rate limit --------------------------------------------------------------------

def test_a_throttle_delays_starts_beyond_its_rate_and_drops_none(env):
    key = unique("thr")
    t0 = env.clock.now()
    handles = [env.execute(throttled, WorkflowOptions(input={"key": key})) for _ in range(6)]
    waiting = env.store.load(handles[-1].id, with_history=False)
    assert waiting.wait_kind == "throttle" and "2 per 10s" in waiting.wait_name
    starts = sorted(started_at(env.store.load(h.id)) if h.result() else None for h in handles)
    offsets = [round((s - t0).total_seconds()) for s in starts]
    # A burst of 2, then one every 5 s.
    assert offsets == [0, 0, 5, 10, 15, 20]


def test_a_rate_limited_execute_raises_and_stores_nothing(env):
    key = unique("rate")
    first = env.execute(rated, WorkflowOptions(input={"key": key}))
    with pytest.raises(RateLimitExceededError, match="rate limit") as refused:
        env.execute(rated, WorkflowOptions(id=unique("refused"), input={"key": key}))
    assert refused.value.retry_at == first.state().created_at + timedelta(hours=1)
    assert env.store.load(refused.value.workflow_id) is None
    assert env.execute(rated, WorkflowOptions(input={"key": unique("other")})).result()
    env.advance(3600)
    assert env.execute(rated, WorkflowOptions(input={"key": key})).result() == key


def test_rate_limited_events_are_skipped_with_the_reason_in_the_result_and_the_event(env):
    user = unique("user")
    results = [env.send_event(Event("engine-flow/ping", {"user": user})) for _ in range(3)]
    assert len(results[0].started) == 1 and results[0].skipped == ()
    for skipped in results[1:]:
        assert skipped.started == ()
        (reason,) = skipped.skipped
        assert reason["workflow_type"] == "engine.flow.rated_events"
        assert reason["reason"].startswith(f'rate limit "engine.flow.rated_events" key "{user}"')
        env.run_until_idle()
        assert env.store.get_event(skipped.event_id).outcome["skipped"] == [reason]
    assert env.store.count(WorkflowFilter(workflow_type="engine.flow.rated_events",
                                          workflow_id_prefix="engine.flow.rated_events:")) >= 1
    started = [r.started[0] for r in results if r.started]
    assert started == [trigger_workflow_id("engine.flow.rated_events", results[0].event_id)]


# -- debounce and batch ----------------------------------------------------------------------------

def test_a_debounce_starts_one_run_per_burst_with_its_newest_event(env):
    doc = unique("doc")
    t0 = env.clock.now()
    sent = []
    for rev in range(3):
        sent.append(env.send_event(Event("engine-flow/edit", {"doc": doc, "rev": rev})))
        env.advance(0.5)
    # An older event arriving late (ts before the newest) does not replace it.
    late = env.send_event(Event("engine-flow/edit", {"doc": doc, "rev": -1},
                                ts=t0 - timedelta(seconds=5)))
    assert late.skipped and "newer" in late.skipped[0]["reason"]
    assert all(r.started == () and r.deferred for r in sent)
    env.advance(1.1)
    runs = env.store.list(WorkflowFilter(workflow_type="engine.flow.debounced"))
    mine = [r for r in runs if r.input["data"]["doc"] == doc]
    assert len(mine) == 1
    assert mine[0].workflow_id == trigger_workflow_id("engine.flow.debounced", sent[-1].event_id)
    assert env.get_handle(mine[0].workflow_id).result() == {"id": sent[-1].event_id, "rev": 2}
    superseded = env.store.get_event(sent[0].event_id).outcome["skipped"]
    assert "superseded" in superseded[0]["reason"]
    assert env.store.get_event(sent[-1].event_id).outcome["started"] == [mine[0].workflow_id]


def test_a_burst_longer_than_the_debounce_timeout_fires_at_the_timeout(env):
    doc = unique("long")
    t0 = env.clock.now()
    for rev in range(8):  # one every 0.5 s for 4 s: never a 1 s pause
        env.send_event(Event("engine-flow/edit", {"doc": doc, "rev": rev}))
        env.advance(0.5)
    runs = [r for r in env.store.list(WorkflowFilter(workflow_type="engine.flow.debounced"))
            if r.input["data"]["doc"] == doc]
    assert len(runs) >= 1
    first = min(runs, key=lambda r: r.created_at)
    assert (first.created_at - t0).total_seconds() == pytest.approx(3.0, abs=0.51)


def test_a_batch_of_10_takes_every_event_exactly_once(env):
    table = unique("table")
    results = [env.send_event(Event("engine-flow/row", {"table": table, "n": n}))
               for n in range(25)]
    assert all(r.started == () and r.deferred for r in results)
    env.run_until_idle()
    env.advance(1.5)
    runs = [r for r in env.store.list(WorkflowFilter(workflow_type="engine.flow.batched"))
            if r.input[0]["data"]["table"] == table]
    batches = sorted((env.get_handle(r.workflow_id).result() for r in runs), key=min)
    assert [len(b) for b in batches] == [10, 10, 5]
    assert sorted(n for b in batches for n in b) == list(range(25))


def test_execute_of_a_debounced_workflow_is_refused(env):
    with pytest.raises(InvalidInputError, match="debounces its events"):
        env.execute(debounced, WorkflowOptions(input={}))


# -- declarations ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch": Batch(10, "1s"), "debounce": Debounce("1s"), "on_event": "x"},
     "cannot both batch and debounce"),
    ({"concurrency": [Concurrency(1, key="input.a"), Concurrency(2, key="input.b"),
                      Concurrency(3, key="input.c")]}, "at most 2"),
    ({"concurrency": [Concurrency(1, key="input.a"), Concurrency(2, key="input.a")]},
     "same key"),
    ({"debounce": Debounce("1s")}, "on_event"),
    ({"rate_limit": RateLimit(1, "1s"), "debounce": Debounce("1s"), "on_event": "x"},
     "rate_limit cannot be combined"),
    ({"priority": "700"}, "between -600 and 600"),
    ({"priority": "input.(("}, "priority"),
    ({"concurrency": "input.key"}, "must be a Concurrency"),
])
def test_invalid_declarations_are_refused_at_decoration_time(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        workflow(name=unique("engine.flow.bad"), **kwargs)(lambda ctx: None)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Concurrency(0), "between 1 and"),
    (lambda: Concurrency(2.5), "must be an integer"),
    (lambda: Concurrency(1, key="input.(("), "Concurrency key"),
    (lambda: Concurrency(1, key=""), "non-empty"),
    (lambda: Throttle(5, "0s"), "positive"),
    (lambda: Throttle(5, "soon"), "Throttle period"),
    (lambda: RateLimit(True, "1h"), "integer"),
    (lambda: Debounce("5s", timeout="1s"), "must not be shorter"),
    (lambda: Batch(0, "1s"), "between 1 and"),
    (lambda: Batch(10, None), "required"),
])
def test_invalid_limits_and_keys_are_refused_when_built(build, message):
    with pytest.raises(InvalidInputError, match=message):
        build()
