"""Events (API.md §8) on every store that keeps them: triggers, waits, cancels, sends, refusals.

Most tests run in the time-skipping environment (the fan-out runs in the sender's thread there, so
``SendResult.woken`` / ``canceled`` are filled); those about threads and transactions use the
``local`` runtime. Each test uses event names of its own: a trigger registered here fires for any
event of its name sent in this process.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from django.db import transaction

from beluga_workflows import (
    CancelOn,
    Event,
    EventType,
    InvalidInputError,
    NonRetriableError,
    RetryAfterError,
    RetryPolicy,
    SendResult,
    Signal,
    StoreError,
    Trigger,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowFilter,
    WorkflowOptions,
    WorkflowStatus,
    activity,
    workflow,
)
from beluga_workflows.engine.events import trigger_workflow_id, validate_event
from beluga_workflows.runtimes.local import LocalExecutor
from beluga_workflows.stores.django import DjangoStore
from beluga_workflows.testing import WorkflowEnvironment

from ..stores.backends import make_document_store
from .support import Calls, events, unique, wait_until

CALLS = Calls()


# -- workflows ------------------------------------------------------------------------------------

@workflow(name="engine.events.on_placed", on_event="engine-events/placed")
def on_placed(ctx, event: dict) -> dict:
    return event


@workflow(name="engine.events.on_placed_too", on_event=["engine-events/placed", "engine-events/x"])
def on_placed_too(ctx, event: dict) -> str:
    return event["name"]


@workflow(name="engine.events.big_orders",
          on_event=Trigger("engine-events/order", where="event.data.total > 100"))
def big_orders(ctx, event: dict) -> int:
    return event["data"]["total"]


@workflow(name="engine.events.await_paid")
def await_paid(ctx, order: dict):
    """Sleeps a minute (events sent meanwhile come before the wait), then waits for its payment."""
    ctx.sleep(60)
    paid = ctx.wait_for_event("engine-events/paid", match="data.order_id",
                              timeout=order.get("timeout", "1h"), lookback=order.get("lookback"))
    return None if paid is None else paid.to_dict()


@workflow(name="engine.events.await_twice")
def await_twice(ctx, _=None) -> list:
    """Two waits for the same name, no match: two different events, oldest first."""
    return [ctx.wait_for_event("engine-events/tick", timeout="1h").id for _ in range(2)]


@workflow(name="engine.events.await_matching")
def await_matching(ctx, spec: dict):
    paid = ctx.wait_for_event("engine-events/matched", match=spec.get("match"),
                              where=spec.get("where"), timeout="1h")
    return None if paid is None else paid.data


@activity(name="engine.events.clean_up")
def clean_up(key: str) -> str:
    CALLS.hit(("clean", key))
    return key


@workflow(name="engine.events.cancellable",
          cancel_on=[CancelOn("engine-events/cancelled", match="data.order_id"),
                     CancelOn("engine-events/halt", where="event.data.all == true")])
def cancellable(ctx, order: dict) -> str:
    try:
        ctx.receive_signal("never")
    except WorkflowCanceledError:
        ctx.execute_activity(clean_up, order["data"]["order_id"])
        raise
    return "not canceled"


@workflow(name="engine.events.announcer")
def announcer(ctx, key: str) -> str:
    sent = ctx.send_event("engine-events/announced", {"key": key})
    ctx.receive_signal("go")
    return sent.event_id


@workflow(name="engine.events.on_announced", on_event="engine-events/announced")
def on_announced(ctx, event: dict) -> str:
    return event["data"]["key"]


@activity(name="engine.events.rate_limited")
def rate_limited(spec: dict) -> str:
    if CALLS.hit(("limited", spec["key"])) <= spec["failures"]:
        raise RetryAfterError(spec.get("delay", "2m"), "rate limited")
    return "ok"


@activity(name="engine.events.refused")
def refused(key: str) -> str:
    CALLS.hit(("refused", key))
    raise NonRetriableError("card declined")


@workflow(name="engine.events.retrying")
def retrying(ctx, spec: dict) -> str:
    if spec.get("refused"):
        return ctx.execute_activity(refused, spec["key"], retry=RetryPolicy(max_attempts=5))
    return ctx.execute_activity(rate_limited, spec,
                                retry=RetryPolicy(max_attempts=spec["attempts"],
                                                  initial_interval=0.1))


@workflow(name="engine.events.bad_wait")
def bad_wait(ctx, spec: dict):
    return ctx.wait_for_event("engine-events/never", **spec)


def order_input(order_id: str, **extra) -> dict:
    """A run's input shaped like a trigger event, as runs started by ``on_event`` get it."""
    return {"id": f"placed-{order_id}", "name": "placed", "data": {"order_id": order_id}, **extra}


def waiting_for_event(store, workflow_id: str) -> bool:
    state = store.load(workflow_id, with_history=False)
    return bool(state and state.is_open and not state.lease_owner and state.wait_kind == "event")


# -- triggers ---------------------------------------------------------------------------------------

def test_an_event_starts_one_run_of_each_triggered_workflow_with_the_event_as_input(env):
    event_id = unique("placed")
    ts = datetime(2030, 5, 1, 12, 0, tzinfo=timezone.utc)
    result = env.send_event(Event("engine-events/placed", {"order_id": "o-1"}, id=event_id, ts=ts))
    first, second = (f"engine.events.on_placed:{event_id}", f"engine.events.on_placed_too:{event_id}")
    assert result == SendResult(event_id, False, (first, second))
    assert env.get_handle(first).result() == {"id": event_id, "name": "engine-events/placed",
                                              "data": {"order_id": "o-1"}, "ts": ts.isoformat()}
    assert env.get_handle(second).result() == "engine-events/placed"
    record = env.store.get_event(event_id)
    assert record.event == Event("engine-events/placed", {"order_id": "o-1"}, event_id, ts)
    assert record.fanned_out_at is not None
    assert record.outcome == {"started": [first, second], "woken": [], "canceled": [],
                              "skipped": []}


def test_a_second_event_with_an_accepted_id_is_a_duplicate_and_starts_nothing(env):
    event_id = unique("dup")
    env.send_event(Event("engine-events/placed", {"order_id": "o-1"}, id=event_id))
    again = env.send_event(Event("engine-events/placed", {"order_id": "changed"}, id=event_id))
    assert again == SendResult(event_id, True)
    env.run_until_idle()
    assert env.store.count_events() == 1
    assert env.store.get_event(event_id).event.data == {"order_id": "o-1"}
    assert env.store.count(WorkflowFilter()) == 2  # the first event's two runs, nothing more


def test_a_trigger_whose_where_is_false_is_skipped_with_the_reason(env):
    small, big = unique("small"), unique("big")
    skipped = env.send_event(Event("engine-events/order", {"total": 50}, id=small))
    assert skipped.started == ()
    assert env.store.get_event(small).outcome["skipped"] == [{
        "workflow_type": "engine.events.big_orders",
        "reason": "its trigger's where 'event.data.total > 100' is false for this event"}]
    started = env.send_event(Event("engine-events/order", {"total": 500}, id=big))
    assert started.started == (f"engine.events.big_orders:{big}",)
    assert env.get_handle(started.started[0]).result() == 500
    assert env.store.count(WorkflowFilter(workflow_type="engine.events.big_orders")) == 1


def test_a_fan_out_that_died_is_finished_by_the_sweep_and_a_second_one_starts_nothing(env):
    event_id = unique("outbox")
    env.executor.schedule_fan_out = lambda event_id: None  # its process dies before doing it
    result = env.send_event(Event("engine-events/placed", id=event_id))
    assert len(result.started) == 2
    assert env.store.load(result.started[0]) is None  # decided, not started yet
    env.executor.recover()
    assert env.store.get_event(event_id).fanned_out_at is None  # within the grace period
    del env.executor.schedule_fan_out
    env.advance(31)  # the sweep fans out events left undone for fan_out_grace (30 s)
    assert env.store.get_event(event_id).fanned_out_at is not None
    runs = {wf: env.store.load(wf).run_id for wf in result.started}
    assert env.get_handle(result.started[0]).result()["id"] == event_id

    for _ in range(2):  # a fan-out done again (a redelivered message) starts nothing
        assert env.executor.fan_out(event_id)["started"] == list(result.started)
    env.run_until_idle()
    assert {wf: env.store.load(wf).run_id for wf in result.started} == runs
    assert env.store.get_event(event_id).outcome["started"] == list(result.started)


def test_fan_outs_racing_in_threads_start_each_trigger_once(store, make_local):
    executor = make_local(max_workers=2)
    executor.schedule_fan_out = lambda event_id: None
    event_id = unique("race")
    result = executor.send_event(Event("engine-events/placed", id=event_id))
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def fan_out() -> None:
        try:
            barrier.wait()
            executor.fan_out(event_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fan_out) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    run_ids = {store.load(wf, with_history=False).run_id for wf in result.started}
    assert len(run_ids) == 2
    for workflow_id in result.started:
        assert executor.get_handle(workflow_id).result(timeout=10)
    assert store.get_event(event_id).outcome["started"] == list(result.started)


# -- wait_for_event ---------------------------------------------------------------------------------

def test_an_event_sent_after_the_run_started_but_before_it_waits_is_received(env):
    key = unique("early")
    handle = env.execute(await_paid, WorkflowOptions(id=key, input=order_input(key)))
    env.run_until_idle()  # asleep: the wait is a minute away
    env.advance(10)
    other = env.send_event(Event("engine-events/paid", {"order_id": "someone-else"}))
    sent = env.send_event(Event("engine-events/paid", {"order_id": key, "amount": 5}, id=unique()))
    assert sent.woken == () and other.woken == ()  # nobody waits yet
    received = handle.result()
    assert received["id"] == sent.event_id and received["data"] == {"order_id": key, "amount": 5}
    state = env.store.load(key)
    (got,) = events(state, EventType.EVENT_RECEIVED)
    assert got.result == received  # recorded: a replay never asks the store again


def test_an_event_sent_while_the_run_waits_wakes_it(env):
    key = unique("late")
    handle = env.execute(await_paid, WorkflowOptions(id=key, input=order_input(key)))
    env.run_until_idle()
    env.advance(61)
    state = env.store.load(key, with_history=False)
    assert state.wait_kind == "event"
    assert state.wait_name == f'engine-events/paid where data.order_id = "{key}"'
    assert env.send_event(Event("engine-events/paid", {"order_id": "nobody"})).woken == ()
    sent = env.send_event(Event("engine-events/paid", {"order_id": key}))
    assert sent.woken == (key,)
    assert handle.result()["id"] == sent.event_id
    assert env.store.get_event(sent.event_id).outcome["woken"] == [key]


def test_an_event_sent_before_the_run_started_counts_only_within_the_lookback(env):
    default, looking_back = unique("default"), unique("lookback")
    for key in (default, looking_back):
        env.send_event(Event("engine-events/paid", {"order_id": key}))
    env.advance(5)
    first = env.execute(await_paid, WorkflowOptions(id=default, input=order_input(default)))
    second = env.execute(await_paid, WorkflowOptions(
        id=looking_back, input=order_input(looking_back, lookback="2m")))
    assert first.result() is None  # before the run's start: not seen (it timed out)
    assert second.result()["data"] == {"order_id": looking_back}


def test_lookback_zero_ignores_events_sent_before_the_wait_as_inngest_does(env):
    ignored, later = unique("zero"), unique("zero-later")
    handles = {key: env.execute(await_paid, WorkflowOptions(
        id=key, input=order_input(key, lookback=0, timeout="10m"))) for key in (ignored, later)}
    env.run_until_idle()
    env.advance(30)
    for key in (ignored, later):  # during the sleep: before either wait began
        env.send_event(Event("engine-events/paid", {"order_id": key}))
    env.advance(31)  # both wait now
    assert waiting_for_event(env.store, later)
    sent = env.send_event(Event("engine-events/paid", {"order_id": later}))
    assert sent.woken == (later,)
    assert handles[later].result()["id"] == sent.event_id
    assert handles[ignored].result() is None


def test_a_wait_that_times_out_returns_none_and_records_it(env):
    key = unique("timeout")
    handle = env.execute(await_paid, WorkflowOptions(id=key, input=order_input(key, timeout="3d")))
    started = env.clock.now()
    assert handle.result() is None
    state = env.store.load(key)
    (wait,) = events(state, EventType.EVENT_WAIT_STARTED)
    assert wait.fire_at - wait.timestamp == timedelta(days=3)
    assert len(events(state, EventType.EVENT_TIMED_OUT)) == 1
    assert env.clock.now() - started >= timedelta(days=3)
    # The wait is gone with the run: an event now wakes nothing.
    assert env.send_event(Event("engine-events/paid", {"order_id": key})).woken == ()
    assert env.store.matching_waits(Event("engine-events/paid", {"order_id": key})) == []


def test_each_event_is_consumed_once_per_run_and_one_event_serves_many_runs(env):
    keys = [unique("twice") for _ in range(2)]
    handles = [env.execute(await_twice, WorkflowOptions(id=k)) for k in keys]
    env.run_until_idle()
    first = env.send_event(Event("engine-events/tick", id=unique("t1")))
    assert set(first.woken) == set(keys)
    env.advance(1)
    second = env.send_event(Event("engine-events/tick", id=unique("t2")))
    for handle in handles:
        assert handle.result() == [first.event_id, second.event_id]


def test_match_by_dict_of_literal_values_and_by_where(env):
    by_dict = env.execute(await_matching, WorkflowOptions(
        id=unique("dict"), input={"match": {"data.kind": "gold", "data.n": 2}}))
    by_where = env.execute(await_matching, WorkflowOptions(
        id=unique("where"), input={"where": "event.data.n >= 3 && event.data.kind != 'gold'",
                                   "min": 3}))
    env.run_until_idle()
    noise = [{"kind": "gold", "n": 1}, {"kind": "silver", "n": 2}, {"kind": "gold", "n": 3},
             {"n": 2}]
    for data in noise:
        env.send_event(Event("engine-events/matched", data))
    assert env.store.load(by_dict.id, with_history=False).is_open
    env.send_event(Event("engine-events/matched", {"kind": "gold", "n": 2.0}))  # 2.0 == 2 in JSON
    env.send_event(Event("engine-events/matched", {"kind": "copper", "n": 7}))
    assert by_dict.result() == {"kind": "gold", "n": 2.0}
    assert by_where.result() == {"kind": "copper", "n": 7}


def test_runs_waiting_on_threads_get_their_own_event_exactly_once_however_it_races(store,
                                                                                   make_local):
    executor = make_local(max_workers=4)
    keys = [unique("threads") for _ in range(16)]
    rng = random.Random(7)
    order = [("start", k) for k in keys] + [("send", k) for k in keys]
    rng.shuffle(order)
    handles = {}
    for action, key in order:
        if action == "start":
            handles[key] = executor.execute(await_matching, WorkflowOptions(
                id=key, input={"match": {"data.order_id": key}}))
        else:
            executor.send_event(Event("engine-events/matched", {"order_id": key}, id=f"ev-{key}"))
        time.sleep(rng.random() * 0.01)
    for key, handle in handles.items():
        # An event sent before its run was created is older than the run: not seen.
        state = store.get_event(f"ev-{key}")
        created = store.load(key, with_history=False).created_at
        if state.received_at >= created:
            assert handle.result(timeout=20) == {"order_id": key}
            assert len(events(store.load(key), EventType.EVENT_RECEIVED)) == 1
        else:
            assert store.load(key, with_history=False).is_open


# -- cancel_on ------------------------------------------------------------------------------------

def test_cancel_on_cancels_only_the_matching_runs_and_their_clean_up_runs(env):
    first, second = unique("c1"), unique("c2")
    handles = {key: env.execute(cancellable, WorkflowOptions(id=key, input=order_input(key)))
               for key in (first, second)}
    env.run_until_idle()
    sent = env.send_event(Event("engine-events/cancelled", {"order_id": first}))
    assert sent.canceled == (first,)
    with pytest.raises(WorkflowCanceledError):
        handles[first].result()
    assert CALLS[("clean", first)] == 1 and CALLS[("clean", second)] == 0
    assert env.store.load(second, with_history=False).is_open
    assert env.store.get_event(sent.event_id).outcome["canceled"] == [first]

    assert env.send_event(Event("engine-events/halt", {"all": False})).canceled == ()
    assert env.send_event(Event("engine-events/halt", {"all": True})).canceled == (second,)
    with pytest.raises(WorkflowCanceledError):
        handles[second].result()
    assert CALLS[("clean", second)] == 1
    # The ended runs' cancel waits are gone: the same events cancel nothing now.
    assert env.send_event(Event("engine-events/cancelled", {"order_id": first})).canceled == ()
    assert env.store.matching_waits(Event("engine-events/halt", {"all": True})) == []


# -- ctx.send_event -------------------------------------------------------------------------------

def test_send_event_in_a_workflow_is_a_recorded_step_a_replay_does_not_repeat(env):
    key = unique("announce")
    handle = env.execute(announcer, WorkflowOptions(id=key, input=key))
    env.run_until_idle()
    for _ in range(2):  # activations that replay the send
        env.executor.run(key)
    sent = f"{handle.run_id}:1"
    assert env.store.count_events(name="engine-events/announced") == 1
    assert env.store.get_event(sent).event.data == {"key": key}
    env.signal(key, Signal("go"))
    assert handle.result() == sent
    assert env.get_handle(f"engine.events.on_announced:{sent}").result() == key


def test_send_event_of_a_run_killed_before_recording_it_sends_it_once(env, monkeypatch):
    store, key = env.store, unique("killed")
    crashed = []

    def dies_after_sending(write):
        def writing(workflow_id, run_id, owner, events_, **kwargs):
            if workflow_id == key and not crashed and any(
                    e.type is EventType.EVENT_SENT for e in events_):
                crashed.append(True)  # the event is stored; its record is lost with the worker
                raise StoreError("worker killed")
            return write(workflow_id, run_id, owner, events_, **kwargs)
        return writing

    # A step's write is ``checkpoint`` (which some stores answer without ``append``).
    for name in ("append", "checkpoint"):
        monkeypatch.setattr(store, name, dies_after_sending(getattr(store, name)))
    handle = env.execute(announcer, WorkflowOptions(id=key, input=key))
    env.run_until_idle()
    assert crashed and store.count_events(name="engine-events/announced") == 1
    assert store.load(key, with_history=False).lease_owner  # abandoned, lease still held
    env.advance(31)  # the lease expires; the sweep gives the run to a new activation
    env.signal(key, Signal("go"))
    sent = handle.result()
    assert sent == f"{handle.run_id}:1"
    assert store.count_events(name="engine-events/announced") == 1
    (recorded,) = events(store.load(key), EventType.EVENT_SENT)
    assert recorded.result["duplicate"] is True  # the second send was taken as the same event
    assert store.count(WorkflowFilter(workflow_type="engine.events.on_announced",
                                      workflow_id_prefix=f"engine.events.on_announced:{sent}")) == 1


# -- RetryAfterError, NonRetriableError -----------------------------------------------------------

def test_retry_after_error_retries_after_its_delay_and_counts_as_an_attempt(env):
    key = unique("retry-after")
    handle = env.execute(retrying, WorkflowOptions(id=key, input={
        "key": key, "failures": 1, "attempts": 3, "delay": "2m"}))
    assert handle.result() == "ok"
    failed = events(env.store.load(key), EventType.ACTIVITY_FAILED)
    assert len(failed) == 1 and failed[0].fire_at - failed[0].timestamp == timedelta(minutes=2)
    assert failed[0].error["type"] == "RetryAfterError"

    exhausted = unique("retry-after-exhausted")
    handle = env.execute(retrying, WorkflowOptions(id=exhausted, input={
        "key": exhausted, "failures": 99, "attempts": 2, "delay": 0.5}))
    with pytest.raises(WorkflowFailedError, match="after 2 attempt"):
        handle.result()
    assert CALLS[("limited", exhausted)] == 2


def test_non_retriable_error_is_the_non_retryable_error_and_stops_at_once(env):
    key = unique("refused")
    handle = env.execute(retrying, WorkflowOptions(id=key, input={"key": key, "refused": True}))
    with pytest.raises(WorkflowFailedError, match="card declined"):
        handle.result()
    assert CALLS[("refused", key)] == 1


# -- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("event", "message"), [
    (Event(""), "event name must not be empty"),
    (Event("x" * 256), "event name is 256 characters long"),
    (Event("bad\nname"), "event name must hold only printable"),
    (Event("nul\x00"), "event name must hold only printable"),
    (Event(" padded"), "event name must not start or end with whitespace"),
    (Event(42), "event name must be a string"),
    (Event("ok", [1, 2]), "event data must be a JSON object"),
    (Event("ok", "text"), "event data must be a JSON object"),
    (Event("ok", {"when": object()}), "event data is not JSON-serialisable"),
    (Event("ok", {"big": "x" * (3 * 1024 * 1024)}), "event data is too large"),
    (Event("ok", id=""), "event id must not be empty"),
    (Event("ok", id="y" * 256), "event id is 256 characters long"),
    (Event("ok", ts=datetime(2030, 1, 1)), "event ts must be a timezone-aware datetime"),
    (Event("ok", ts="2030-01-01"), "event ts must be a datetime"),
])
def test_a_bad_event_is_refused_and_nothing_is_stored(env, event, message):
    with pytest.raises(InvalidInputError, match=message):
        env.send_event(event)
    assert env.store.count_events() == 0
    assert env.store.count(WorkflowFilter()) == 0


def test_a_bad_wait_fails_its_run_with_an_error_naming_the_problem_and_stores_no_wait(env):
    cases = {
        "duration": ({"timeout": "3 days"}, "event wait timeout"),
        "lookback": ({"lookback": "-1s"}, "event wait lookback"),
        "where": ({"where": "event.data.total >"}, "wait_for_event where"),
        "match": ({"match": 42}, "wait_for_event match must be a dotted path or a dict"),
        "path": ({"match": "data.missing"}, "is not in the run's input"),
    }
    for label, (spec, message) in cases.items():
        handle = env.execute(bad_wait, WorkflowOptions(id=unique(label), input=spec))
        with pytest.raises(WorkflowFailedError) as failed:
            handle.result()
        assert failed.value.error["type"] == "InvalidInputError", label
        assert message in failed.value.error["message"], (label, failed.value.error)
    assert env.store.matching_waits(Event("engine-events/never")) == []


def test_bad_triggers_cancels_and_durations_are_refused_at_decoration_time():
    refusals = [
        (lambda: Trigger("orders/placed", where="event.data.total >"),
         "trigger where: invalid expression at column 19"),
        (lambda: Trigger(""), "trigger event name must not be empty"),
        (lambda: CancelOn("orders/x", where="(("), "cancel_on where: invalid expression"),
        (lambda: CancelOn("orders/x", match=5), "cancel_on match must be a dotted path"),
        (lambda: CancelOn("orders/x", match="data..id"), "not a dotted path"),
        (lambda: CancelOn("orders/x", match={"data.id": object()}), "not JSON-serialisable"),
        (lambda: workflow(on_event=42), "on_event must be an event name"),
        (lambda: workflow(on_event=["ok", 7]), "on_event takes event names and Trigger"),
        (lambda: workflow(on_event="bad\tname"), "printable"),
        (lambda: workflow(cancel_on="orders/x"), "cancel_on must be a CancelOn"),
        (lambda: RetryAfterError("3 days"), "RetryAfterError delay"),
    ]
    for make, message in refusals:
        with pytest.raises(InvalidInputError, match=message):
            make()


def test_document_stores_refuse_events_naming_the_stores_that_keep_them():
    store, clean = make_document_store("dapr")
    try:
        with WorkflowEnvironment(store=store) as env:
            for refused in (lambda: env.send_event(Event("orders/placed")),
                            lambda: env.execute(cancellable, WorkflowOptions(
                                input=order_input("o-1"))),
                            lambda: store.list_events(), lambda: store.get_event("e-1")):
                with pytest.raises(StoreError, match="the django and memory stores"):
                    refused()
            handle = env.execute(await_matching, WorkflowOptions(input={}))
            with pytest.raises(WorkflowFailedError, match="the django and memory stores"):
                handle.result()
            assert store.list(WorkflowFilter(workflow_type="engine.events.cancellable")) == []
    finally:
        clean()


# -- values and transactions -------------------------------------------------------------------------

def test_validate_event_completes_an_event_and_to_dict_round_trips():
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    event = validate_event(Event("orders/placed"), now=now)
    assert event.id.startswith("evt-") and len(event.id) == 36
    assert event.ts == now and event.data == {}
    assert event.to_dict() == {"id": event.id, "name": "orders/placed", "data": {},
                               "ts": "2030-01-02T03:04:05+00:00"}
    assert Event.from_dict(event.to_dict()) == event
    assert SendResult.from_dict(SendResult("e", False, ("a",)).to_dict()) == SendResult(
        "e", False, ("a",))
    long_id = trigger_workflow_id("t" * 200, "e" * 200)
    assert len(long_id) <= 255 and long_id == trigger_workflow_id("t" * 200, "e" * 200)
    assert long_id != trigger_workflow_id("t" * 200, "e" * 199 + "f")


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
@pytest.mark.parametrize("alias", ["default", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_event_sent_inside_a_transaction_takes_effect_when_it_commits(alias):
    executor = LocalExecutor(store=DjangoStore(using=alias), max_workers=2, sweep_interval=0.05)
    try:
        rolled_back, committed = unique("rollback"), unique("commit")
        with pytest.raises(RuntimeError), transaction.atomic(using=alias):
            executor.send_event(Event("engine-events/placed", id=rolled_back))
            raise RuntimeError("the caller's transaction fails")
        assert executor.store.get_event(rolled_back) is None
        with transaction.atomic(using=alias):
            result = executor.send_event(Event("engine-events/placed", id=committed))
            assert executor.send_event(Event("engine-events/placed", id=committed)).duplicate
            assert executor.store.load(result.started[0]) is None
        # Started within seconds of the commit: a fan-out sent before it would have found no
        # event, and the runs would wait for the sweep's 30 s grace.
        for workflow_id in result.started:
            wait_until(lambda wf=workflow_id: executor.store.load(wf, with_history=False),
                       message=f"{workflow_id} to start after the commit")
            assert executor.get_handle(workflow_id).result(timeout=10)
        assert executor.get_handle(result.started[0]).result()["id"] == committed
        assert executor.store.count(WorkflowFilter(status=WorkflowStatus.RUNNING)) == 0
    finally:
        executor.close()
