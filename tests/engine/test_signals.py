"""Signals: delivered whenever they are sent, FIFO per name, each consumed exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from beluga_workflows import (
    EventType,
    InvalidInputError,
    Signal,
    SignalTimeoutError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowOptions,
    WorkflowStatus,
    activity,
    workflow,
)

from .support import Calls, events, unique, wait_until, waiting_for_signal

CALLS = Calls()


@activity(name="engine.signals.prepare")
def prepare(key: str) -> str:
    CALLS.hit(key)
    return "prepared"


@workflow(name="engine.signals.collect")
def collect(ctx, spec: dict) -> dict:
    """Prepares once, then takes ``count`` signals of each name, in the order of ``names``."""
    ctx.execute_activity(prepare, spec["key"])
    received: dict[str, list] = {name: [] for name in spec["names"]}
    for _ in range(spec["count"]):
        for name in spec["names"]:
            received[name].append(ctx.receive_signal(name))
    return received


def test_signals_sent_before_the_workflow_waits_are_received(env):
    key = unique("early")
    handle = env.execute(
        collect, WorkflowOptions(id=key, input={"key": key, "names": ["a", "b"], "count": 2})
    )
    # Nothing has run yet: the signals wait in the inbox. Mixed names keep their own order.
    for name, payload in [("b", 1), ("a", {"n": 1}), ("b", 2), ("a", {"n": 2}), ("a", "extra")]:
        env.signal(key, Signal(name=name, payload=payload))
    assert handle.result() == {"a": [{"n": 1}, {"n": 2}], "b": [1, 2]}
    assert CALLS[key] == 1
    state = env.store.load(key)
    received = events(state, EventType.SIGNAL_RECEIVED)
    assert [(e.signal_name, e.signal_payload) for e in received] == [
        ("a", {"n": 1}),
        ("b", 1),
        ("a", {"n": 2}),
        ("b", 2),
    ]
    # The one signal nobody asked for is still in the inbox, not lost and not consumed.
    assert [(s.name, s.payload) for s in state.signals] == [("a", "extra")]


def test_signal_sent_while_the_workflow_waits_is_received(store, make_local):
    executor = make_local()
    key = unique("waiting")
    handle = executor.execute(
        collect, WorkflowOptions(id=key, input={"key": key, "names": ["go"], "count": 1})
    )
    wait_until(lambda: waiting_for_signal(store, key, "go"), message="the run to wait for 'go'")
    assert handle.status() is WorkflowStatus.RUNNING
    accepted = executor.signal(key, Signal(name="go", payload={"by": "ann"}, sender_id="tests"))
    assert accepted.id is not None and accepted.name == "go"
    assert handle.result(timeout=5) == {"go": [{"by": "ann"}]}
    assert CALLS[key] == 1


def test_signal_of_another_name_does_not_end_the_wait(env):
    key = unique("other")
    handle = env.execute(
        collect, WorkflowOptions(id=key, input={"key": key, "names": ["go"], "count": 1})
    )
    env.signal(key, Signal(name="stop", payload=1))
    with pytest.raises(TimeoutError):
        handle.result()
    assert waiting_for_signal(env.store, key, "go")
    env.signal(key, Signal(name="go", payload=2))
    assert handle.result() == {"go": [2]}


@workflow(name="engine.signals.drain")
def drain(ctx, spec: dict) -> dict:
    return {
        name: [ctx.receive_signal(name) for _ in range(count)]
        for name, count in spec["expect"].items()
    }


def test_hundreds_of_signals_from_threads_are_each_received_once_in_order(store, make_local):
    executor = make_local(max_workers=4)
    threads_per_name, per_thread = 4, 40
    names = ["left", "right"]
    key = unique("storm")
    total = threads_per_name * per_thread
    handle = executor.execute(
        drain, WorkflowOptions(id=key, input={"expect": {name: total for name in names}})
    )
    start = threading.Barrier(threads_per_name * len(names))
    errors: list[BaseException] = []

    def send(name: str, sender: int) -> None:
        try:
            start.wait(5)
            for i in range(per_thread):
                executor.signal(key, Signal(name=name, payload=[sender, i], sender_id=str(sender)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    senders = [
        threading.Thread(target=send, args=(name, s))
        for name in names
        for s in range(threads_per_name)
    ]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(30)
    assert not errors
    result = handle.result(timeout=30)

    for name in names:
        got = [tuple(p) for p in result[name]]
        assert len(got) == total
        assert len(set(got)) == total, f"a {name!r} signal was received twice"
        assert set(got) == {(s, i) for s in range(threads_per_name) for i in range(per_thread)}
        for sender in range(threads_per_name):
            seen = [i for s, i in got if s == sender]
            assert seen == list(range(per_thread)), f"{name!r} from sender {sender} out of order"
    state = store.load(key)
    assert state.signals == []
    assert len(events(state, EventType.SIGNAL_RECEIVED)) == total * len(names)


def test_signal_to_unknown_workflow_raises_not_found(env):
    with pytest.raises(WorkflowNotFoundError):
        env.signal(unique("missing"), Signal(name="go"))


def test_signal_to_ended_run_raises_not_running(env):
    key = unique("ended")
    handle = env.execute(
        collect, WorkflowOptions(id=key, input={"key": key, "names": [], "count": 0})
    )
    assert handle.result() == {}
    before = env.store.load(key)
    with pytest.raises(WorkflowNotRunningError) as info:
        env.signal(key, Signal(name="late", payload=1))
    assert isinstance(info.value, InvalidInputError)
    assert "ended" in str(info.value)
    after = env.store.load(key)
    assert after.signals == [] and len(after.history) == len(before.history)


@workflow(name="engine.signals.with_timeout")
def with_timeout(ctx, spec: dict) -> dict:
    start = ctx.now()
    try:
        payload = ctx.receive_signal("answer", timeout=timedelta(days=spec["days"]))
    except SignalTimeoutError as exc:
        if spec.get("raise"):
            raise
        return {"timed_out": str(exc), "waited": (ctx.now() - start).total_seconds()}
    return {"payload": payload}


def test_receive_signal_timeout_raises_signal_timeout_error(env):
    handle = env.execute(with_timeout, WorkflowOptions(input={"days": 3}))
    result = handle.result()
    assert "answer" in result["timed_out"]
    assert result["waited"] == pytest.approx(timedelta(days=3).total_seconds(), abs=1)
    kinds = [e.type for e in env.store.load(handle.id).history]
    assert EventType.SIGNAL_WAIT_STARTED in kinds and EventType.SIGNAL_TIMED_OUT in kinds


def test_signal_before_the_timeout_wins(env):
    handle = env.execute(with_timeout, WorkflowOptions(input={"days": 3}))
    env.run_until_idle()
    env.advance(timedelta(days=2))
    env.signal(handle.id, Signal(name="answer", payload="yes"))
    assert handle.result() == {"payload": "yes"}


def test_uncaught_signal_timeout_fails_the_run(env):
    handle = env.execute(with_timeout, WorkflowOptions(input={"days": 1, "raise": True}))
    with pytest.raises(WorkflowFailedError) as info:
        handle.result()
    assert info.value.error["type"] == "SignalTimeoutError"


GATES: dict[str, threading.Event] = {}


@activity(name="engine.signals.gated")
def gated(key: str) -> str:
    GATES[key].wait(5)
    return "through"


@workflow(name="engine.signals.after_gate")
def after_gate(ctx, key: str) -> list:
    ctx.execute_activity(gated, key)
    return [ctx.receive_signal("go"), ctx.receive_signal("go")]


def test_signals_sent_while_an_activity_runs_are_received_after_it(store, make_local):
    executor = make_local()
    key = unique("gated")
    GATES[key] = threading.Event()
    handle = executor.execute(after_gate, WorkflowOptions(id=key, input=key))
    wait_until(lambda: store.load(key, with_history=False).lease_owner, message="the run to start")
    executor.signal(key, Signal(name="go", payload=1))  # the run is busy in its activity
    executor.signal(key, Signal(name="go", payload=2))
    GATES[key].set()
    assert handle.result(timeout=5) == [1, 2]
