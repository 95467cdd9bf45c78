"""Durations: timedelta, seconds, or "30s"-style strings, wherever the engine takes a duration."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from beluga_workflows import (
    InvalidInputError,
    RetryPolicy,
    SignalTimeoutError,
    WorkflowOptions,
    workflow,
)
from beluga_workflows.engine.durations import (
    DURATION_UNITS,
    MAX_DURATION_SECONDS,
    parse_duration,
)
from beluga_workflows.engine.types import MAX_DURATION_SECONDS as TYPES_MAX
from beluga_workflows.engine.types import to_seconds
from beluga_workflows.testing import WorkflowEnvironment

from .support import unique


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5),
    ("30s", 30.0),
    ("5m", 300.0),
    ("2h", 7200.0),
    ("7d", 604800.0),
    ("1w", 604800.0),
    ("0s", 0.0),
    ("1.5h", 5400.0),
    ("0.25s", 0.25),
    ("2.5ms", 0.0025),
    ("  30s", 30.0),
    ("30s\n", 30.0),
    ("\t 1w \t", 604800.0),
    ("0010m", 600.0),
])
def test_each_unit_decimals_and_surrounding_whitespace(text, seconds):
    assert parse_duration(text, "sleep duration") == pytest.approx(seconds)
    assert to_seconds(text) == pytest.approx(seconds)


def test_the_units_are_the_documented_ones():
    assert set(DURATION_UNITS) == {"ms", "s", "m", "h", "d", "w"}


@pytest.mark.parametrize("text", [
    "5",          # a bare number: seconds or minutes?
    "5 m s",
    "5 m",        # nothing inside but the number and the unit
    "5ms5s",
    "-1s",        # no sign
    "+1s",
    "1y",         # no months or years (their length depends on the date)
    "1mo",
    "",
    "   ",
    "s",
    "1.s",
    ".5h",
    "1e3s",
    "5M",         # units are lower case
    "5H",
    "1,5h",
    "nan s",
    "infs",
    "٣s",         # only ASCII digits
    "1h30m",      # one number and one unit
    "PT1H",
])
def test_refused_strings_name_the_value_what_it_is_for_and_the_units(text):
    with pytest.raises(InvalidInputError) as info:
        parse_duration(text, "sleep duration")
    message = str(info.value)
    assert message.startswith(f"sleep duration {text!r} is not a duration")
    assert "(ms, s, m, h, d, w)" in message
    assert "timedelta or a number of seconds" in message


def test_a_long_bad_string_is_shortened_in_the_message():
    with pytest.raises(InvalidInputError) as info:
        parse_duration("x" * 10_000, "signal timeout")
    assert "'" + "x" * 40 + "'..." in str(info.value)
    assert len(str(info.value)) < 300


def test_a_string_past_100_years_is_refused_like_a_number():
    with pytest.raises(InvalidInputError, match="at most 100 years"):
        parse_duration("5300w", "workflow timeout")
    with pytest.raises(InvalidInputError, match="at most 100 years"):
        parse_duration("9" * 400 + "s", "workflow timeout")  # not "finite": it is a big number
    assert parse_duration("5200w", "workflow timeout") == 5200 * 604800.0


@pytest.mark.parametrize("value, seconds", [
    (None, None),
    (0, 0.0),
    (30, 30.0),
    (1.5, 1.5),
    (timedelta(minutes=2), 120.0),
    (timedelta(0), 0.0),
    (MAX_DURATION_SECONDS, MAX_DURATION_SECONDS),
])
def test_timedelta_and_number_paths_are_unchanged(value, seconds):
    assert parse_duration(value, "timeout") == seconds
    result = to_seconds(value, "timeout")
    assert result == seconds and (result is None or type(result) is float)


@pytest.mark.parametrize("value, message", [
    (True, "timeout must be a timedelta or a number of seconds (or a string such as '30s'), not bool"),
    ([30], "not list"),
    (b"30s", "not bytes"),
    (float("nan"), "timeout must be a finite number of seconds"),
    (float("inf"), "timeout must be a finite number of seconds"),
    (-1, "timeout must not be negative (got -1 s)"),
    (timedelta(seconds=-5), "timeout must not be negative (got -5 s)"),
    (1e300, "timeout must be at most 100 years (got 1e+300 s)"),
    (MAX_DURATION_SECONDS + 1, "timeout must be at most 100 years"),
    (10 ** 400, "timeout must be at most 100 years"),       # an int past the float range
    (-(10 ** 400), "timeout must not be negative"),
])
def test_the_number_rules_and_their_messages_are_kept(value, message):
    with pytest.raises(InvalidInputError) as info:
        parse_duration(value, "timeout")
    assert message in str(info.value)


def test_the_cap_has_one_home():
    assert TYPES_MAX is MAX_DURATION_SECONDS
    assert math.isclose(MAX_DURATION_SECONDS, 100 * 365 * 24 * 3600)


def test_what_defaults_to_duration():
    with pytest.raises(InvalidInputError, match="^duration 'soon' is not a duration"):
        to_seconds("soon")


def test_retry_policy_intervals_take_strings():
    policy = RetryPolicy(initial_interval="500ms", max_interval="1m")
    assert policy.initial_interval == 0.5 and policy.max_interval == 60.0
    assert RetryPolicy(initial_interval="0s").initial_interval == 0.1  # zero normalises, as 0 does
    with pytest.raises(InvalidInputError, match="initial_interval 'fast' is not a duration"):
        RetryPolicy(initial_interval="fast")


# -- end to end, under the time-skipping environment ----------------------------------------------

@workflow(name="engine.durations.nap")
def nap(ctx, duration: str) -> dict:
    before = ctx.now()
    ctx.sleep(duration)
    return {"before": before.isoformat(), "after": ctx.now().isoformat()}


@workflow(name="engine.durations.await_answer")
def await_answer(ctx, timeout: str) -> str:
    try:
        return ctx.receive_signal("answer", timeout=timeout)
    except SignalTimeoutError:
        return "no answer"


def test_sleep_of_two_hours_given_as_a_string_completes_with_the_clock_advanced():
    with WorkflowEnvironment() as env:
        start = env.clock.now()
        handle = env.execute(nap, WorkflowOptions(id=unique("nap"), input="2h"))
        env.run_until_idle()
        assert handle.status() == "running"
        env.advance("1h")
        assert handle.status() == "running"
        env.advance(timedelta(hours=1))
        result = handle.result()
        slept = datetime.fromisoformat(result["after"]) - datetime.fromisoformat(result["before"])
        assert timedelta(hours=2) <= slept < timedelta(hours=2, seconds=1)
        assert env.clock.now() - start >= timedelta(hours=2)


def test_a_bad_sleep_string_fails_the_run_naming_it():
    with WorkflowEnvironment() as env:
        handle = env.execute(nap, WorkflowOptions(id=unique("nap"), input="2 hours"))
        env.run_until_idle()
        state = env.store.load(handle.id)
        assert state.status == "failed"
        assert "sleep duration '2 hours' is not a duration" in state.error["message"]


def test_signal_timeout_and_workflow_timeout_take_strings():
    with WorkflowEnvironment() as env:
        handle = env.execute(await_answer, WorkflowOptions(id=unique("ask"), input="5m",
                                                           timeout="1d"))
        env.run_until_idle()
        state = env.store.load(handle.id)
        assert state.deadline - state.created_at == timedelta(days=1)
        env.advance("5m")
        assert handle.result() == "no answer"


def test_a_bad_workflow_timeout_string_is_refused_before_the_run_exists():
    with WorkflowEnvironment() as env:
        key = unique("bad-timeout")
        with pytest.raises(InvalidInputError, match="workflow timeout '1 day' is not a duration"):
            env.execute(await_answer, WorkflowOptions(id=key, input="5m", timeout="1 day"))
        assert env.store.load(key) is None
