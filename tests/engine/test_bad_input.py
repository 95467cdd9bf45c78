"""Bad input is refused at the call with an InvalidInputError naming the problem, and nothing is stored."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest

from beluga_workflows import (
    ActivityError,
    InvalidInputError,
    Signal,
    WorkflowFailedError,
    WorkflowFilter,
    WorkflowOptions,
    activity,
    workflow,
)

from .support import unique


@activity(name="engine.bad.echo")
def echo(value):
    return value


@activity(name="engine.bad.returns_object")
def returns_object(_):
    return object()


@workflow(name="engine.bad.wait")
def wait(ctx, value=None):
    return ctx.receive_signal("go")


@workflow(name="engine.bad.bad_result")
def bad_result(ctx, value=None):
    return {"when": {1, 2, 3}}


@workflow(name="engine.bad.bad_activity_input")
def bad_activity_input(ctx, value=None):
    return ctx.execute_activity(echo, {"file": open})


@workflow(name="engine.bad.bad_activity_result")
def bad_activity_result(ctx, value=None):
    try:
        return ctx.execute_activity(returns_object, None)
    except ActivityError as exc:
        return {"attempts": exc.attempts, "cause": exc.cause}


def ids_in(store) -> list[str]:
    return sorted(s.workflow_id for s in store.list(WorkflowFilter()))


@pytest.mark.parametrize(
    "value, named",
    [
        (object(), "not JSON-serialisable"),
        ({"a": {1, 2}}, "not JSON-serialisable"),
        (b"bytes", "not JSON-serialisable"),
        (float("nan"), "not JSON-serialisable"),
        ({1j: 1}, "not JSON-serialisable"),
    ],
)
def test_non_json_input_is_refused(env, value, named):
    key = unique("bad-input")
    with pytest.raises(InvalidInputError) as info:
        env.execute(wait, WorkflowOptions(id=key, input=value))
    assert "workflow input" in str(info.value) and named in str(info.value)
    assert env.store.load(key) is None
    assert ids_in(env.store) == []


def test_django_json_types_are_accepted(env):
    value = {
        "at": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "day": dt.date(2025, 1, 2),
        "amount": decimal.Decimal("1.50"),
        "ref": uuid.UUID(int=7),
    }
    handle = env.execute(wait, WorkflowOptions(input=value))
    stored = env.store.load(handle.id).input
    assert stored == {
        "at": "2025-01-02T03:04:05Z",
        "day": "2025-01-02",
        "amount": "1.50",
        "ref": str(uuid.UUID(int=7)),
    }


def test_oversized_input_is_refused(store, make_local):
    executor = make_local(max_payload_bytes=1000)
    key = unique("big")
    with pytest.raises(InvalidInputError) as info:
        executor.execute(wait, WorkflowOptions(id=key, input="x" * 2000))
    assert "too large" in str(info.value)
    assert store.load(key) is None


def test_unknown_workflow_name_is_refused(env):
    key = unique("unknown")
    with pytest.raises(InvalidInputError) as info:
        env.execute("engine.bad.no_such_workflow", WorkflowOptions(id=key))
    assert "unknown workflow type 'engine.bad.no_such_workflow'" in str(info.value)
    assert env.store.load(key) is None


def test_undecorated_function_is_refused(env):
    def not_a_workflow(ctx):
        return 1

    with pytest.raises(InvalidInputError) as info:
        env.execute(not_a_workflow, WorkflowOptions(id=unique("plain")))
    assert "not a registered workflow" in str(info.value)
    assert ids_in(env.store) == []


@pytest.mark.parametrize(
    "bad_id, named",
    [
        ("", "must not be empty"),
        ("x" * 256, "256 characters long; the limit is 255"),
        ("line\nbreak", "control characters"),
        ("tab\there", "control characters"),
        ("nul\x00", "control characters"),
        (" padded", "whitespace"),
        (42, "must be a string"),
    ],
)
def test_bad_workflow_id_is_refused(env, bad_id, named):
    with pytest.raises(InvalidInputError) as info:
        env.execute(wait, WorkflowOptions(id=bad_id))
    assert named in str(info.value)
    assert ids_in(env.store) == []


def test_longest_allowed_id_and_unicode_are_accepted(env):
    for workflow_id in ("x" * 255, "order/42 für Zoë"):
        handle = env.execute(wait, WorkflowOptions(id=workflow_id))
        assert env.store.load(workflow_id).run_id == handle.run_id


@pytest.mark.parametrize(
    "timeout, named",
    [
        (-1, "must not be negative"),
        (dt.timedelta(seconds=-5), "must not be negative"),
        (0, "must be positive"),
        ("10", "timedelta or a number of seconds"),
        (float("inf"), "finite"),
    ],
)
def test_bad_workflow_timeout_is_refused(env, timeout, named):
    key = unique("bad-timeout")
    with pytest.raises(InvalidInputError) as info:
        env.execute(wait, WorkflowOptions(id=key, timeout=timeout))
    assert "timeout" in str(info.value) and named in str(info.value)
    assert env.store.load(key) is None


def test_non_json_signal_payload_is_refused(env):
    key = unique("bad-payload")
    env.execute(wait, WorkflowOptions(id=key))
    env.run_until_idle()
    before = env.store.load(key)
    with pytest.raises(InvalidInputError) as info:
        env.signal(key, Signal(name="go", payload={"when": object()}))
    assert "signal payload" in str(info.value) and "not JSON-serialisable" in str(info.value)
    after = env.store.load(key)
    assert after.signals == [] and after.wake_seq == before.wake_seq
    assert len(after.history) == len(before.history)


@pytest.mark.parametrize("name", ["", "   ", "x" * 256, None])
def test_bad_signal_name_is_refused(env, name):
    key = unique("bad-signal")
    env.execute(wait, WorkflowOptions(id=key))
    with pytest.raises(InvalidInputError) as info:
        env.signal(key, Signal(name=name))
    assert "signal name" in str(info.value)
    assert env.store.load(key).signals == []


def test_non_json_workflow_result_fails_the_run_with_a_clear_error(env):
    handle = env.execute(bad_result, WorkflowOptions())
    with pytest.raises(WorkflowFailedError) as info:
        handle.result()
    assert info.value.error["type"] == "InvalidInputError"
    assert "workflow result is not JSON-serialisable" in info.value.error["message"]
    assert env.store.load(handle.id).result is None


def test_non_json_activity_input_fails_at_the_call(env):
    handle = env.execute(bad_activity_input, WorkflowOptions())
    with pytest.raises(WorkflowFailedError) as info:
        handle.result()
    assert info.value.error["type"] == "InvalidInputError"
    assert (
        "input of activity 'engine.bad.echo' is not JSON-serialisable"
        in info.value.error["message"]
    )
    # Refused before anything was recorded for the activity.
    assert [e.type.value for e in env.store.load(handle.id).history] == [
        "workflow_started",
        "workflow_failed",
    ]


def test_non_json_activity_result_is_a_final_failure_and_never_stored(env):
    handle = env.execute(bad_activity_result, WorkflowOptions())
    result = handle.result()
    assert result["attempts"] == 1, "a bad result is a bug in the activity: no retries"
    assert result["cause"]["type"] == "InvalidInputError"
    assert (
        "result of activity 'engine.bad.returns_object' is not JSON-serialisable"
        in result["cause"]["message"]
    )
    assert "activity_completed" not in [e.type.value for e in env.store.load(handle.id).history]


def test_bad_options_object_is_refused(env):
    with pytest.raises(InvalidInputError):
        env.execute(wait, "not options")
    with pytest.raises(InvalidInputError):
        env.execute(wait, WorkflowOptions(queue=""))
    assert ids_in(env.store) == []


def test_absurdly_long_timeout_is_refused_not_overflowed(env):
    from beluga_workflows import InvalidInputError, WorkflowOptions

    with pytest.raises(InvalidInputError, match="at most 100 years"):
        env.execute(wait, WorkflowOptions(id="too-long-timeout", timeout=1e300))
    assert env.store.load("too-long-timeout") is None
