"""Activity retries: attempts, backoff within the jitter bounds, the cap, errors that stop at once,
per-attempt timeouts, and a history that shows every attempt."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from beluga_workflows import (
    ActivityError,
    DefaultRetryPolicy,
    EventType,
    NonRetryableError,
    RetryPolicy,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowOptions,
    activity,
    workflow,
)

from .support import Calls, events, unique

CALLS = Calls()


class PaymentDeclined(Exception):
    pass


ERRORS = {
    "ValueError": ValueError,
    "PaymentDeclined": PaymentDeclined,
    "NonRetryableError": NonRetryableError,
}


@activity(name="engine.retry.flaky")
def flaky(data: dict) -> int:
    """Fails ``fail_times`` times (with ``error``), then returns the attempt number."""
    n = CALLS.hit(data["key"])
    if n <= data["fail_times"]:
        raise ERRORS[data.get("error", "ValueError")](f"attempt {n} failed")
    return n


def _policy(spec: dict) -> RetryPolicy:
    spec = dict(spec)
    # Names stay strings (matched by class name or dotted path); "<name>-class" means the class.
    spec["non_retryable_errors"] = tuple(
        ERRORS[e.removesuffix("-class")] if e.endswith("-class") else e
        for e in spec.get("non_retryable_errors", ())
    )
    return RetryPolicy(**spec)


@workflow(name="engine.retry.call_flaky")
def call_flaky(ctx, data: dict) -> dict:
    try:
        value = ctx.execute_activity(flaky, data["activity"], retry=_policy(data["policy"]))
    except ActivityError as exc:
        if data.get("raise"):
            raise
        return {
            "failed": True,
            "attempts": exc.attempts,
            "cause": exc.cause["type"],
            "message": str(exc),
        }
    return {"value": value}


def run_flaky(env, policy: dict, fail_times: int, **extra) -> tuple[str, dict, object]:
    key = unique("flaky")
    handle = env.execute(
        call_flaky,
        WorkflowOptions(
            id=key,
            input={"policy": policy, "activity": {"key": key, "fail_times": fail_times, **extra}},
        ),
    )
    result = handle.result(timeout=timedelta(days=1).total_seconds())
    return key, result, env.store.load(key)


def attempts_of(state) -> tuple[list[int], list[int], list[int]]:
    started = [e.attempt for e in events(state, EventType.ACTIVITY_STARTED)]
    failed = [e.attempt for e in events(state, EventType.ACTIVITY_FAILED)]
    completed = [e.attempt for e in events(state, EventType.ACTIVITY_COMPLETED)]
    return started, failed, completed


def test_retries_until_success_and_history_shows_each_attempt(env):
    policy = {
        "max_attempts": 5,
        "initial_interval": 1,
        "backoff_coefficient": 2,
        "max_interval": 100,
    }
    key, result, state = run_flaky(env, policy, fail_times=3)
    assert result == {"value": 4}
    assert CALLS[key] == 4
    assert attempts_of(state) == ([1, 2, 3, 4], [1, 2, 3], [4])
    failures = events(state, EventType.ACTIVITY_FAILED)
    assert all(f.error["type"] == "ValueError" for f in failures)
    assert [f.error["message"] for f in failures] == [
        "attempt 1 failed",
        "attempt 2 failed",
        "attempt 3 failed",
    ]


def test_backoff_intervals_stay_within_the_jitter_bounds(env):
    initial, coefficient = 2.0, 3.0
    policy = {
        "max_attempts": 6,
        "initial_interval": initial,
        "backoff_coefficient": coefficient,
        "max_interval": 10_000,
    }
    key, result, state = run_flaky(env, policy, fail_times=5)
    assert result == {"value": 6}
    failures = events(state, EventType.ACTIVITY_FAILED)
    starts = events(state, EventType.ACTIVITY_STARTED)
    assert len(failures) == 5
    for n, failed in enumerate(failures, start=1):
        base = initial * coefficient ** (n - 1)
        waited = (failed.fire_at - failed.timestamp).total_seconds()
        assert 0.5 * base <= waited < 1.5 * base, f"attempt {n}: waited {waited} s, base {base} s"
        # The next attempt did not start before its retry was due.
        assert starts[n].timestamp >= failed.fire_at


def test_backoff_is_capped_at_max_interval(env):
    policy = {
        "max_attempts": 4,
        "initial_interval": 1,
        "backoff_coefficient": 10,
        "max_interval": 3,
    }
    key, result, state = run_flaky(env, policy, fail_times=10)
    assert result["failed"] and result["attempts"] == 4
    waits = [
        (f.fire_at - f.timestamp).total_seconds()
        for f in events(state, EventType.ACTIVITY_FAILED)
        if f.fire_at is not None
    ]
    assert len(waits) == 3
    assert 0.5 <= waits[0] < 1.5
    # 10 s and 100 s times a jitter of at least 0.5 are both above the 3 s cap.
    assert waits[1:] == [pytest.approx(3.0), pytest.approx(3.0)]


def test_attempts_exhausted_raise_activity_error(env):
    key, result, state = run_flaky(env, {"max_attempts": 3}, fail_times=10)
    assert result["failed"] is True
    assert result["attempts"] == 3
    assert result["cause"] == "ValueError"
    assert "failed after 3 attempt(s)" in result["message"]
    assert CALLS[key] == 3
    assert attempts_of(state) == ([1, 2, 3], [1, 2, 3], [])
    assert events(state, EventType.ACTIVITY_FAILED)[-1].fire_at is None  # no retry planned


def test_uncaught_activity_error_fails_the_run(env):
    key = unique("flaky")
    handle = env.execute(
        call_flaky,
        WorkflowOptions(
            id=key,
            input={
                "raise": True,
                "policy": {"max_attempts": 2},
                "activity": {"key": key, "fail_times": 10},
            },
        ),
    )
    with pytest.raises(WorkflowFailedError) as info:
        handle.result()
    assert info.value.error["type"] == "ActivityError"
    assert "engine.retry.flaky" in info.value.error["message"]
    assert handle.status() == "failed"


def test_non_retryable_error_stops_at_once(env):
    key, result, state = run_flaky(
        env, {"max_attempts": 5}, fail_times=10, error="NonRetryableError"
    )
    assert result["failed"] and result["attempts"] == 1 and result["cause"] == "NonRetryableError"
    assert CALLS[key] == 1
    assert attempts_of(state) == ([1], [1], [])


@pytest.mark.parametrize(
    "listed", ["PaymentDeclined-class", "PaymentDeclined", f"{__name__}.PaymentDeclined"]
)
def test_policy_non_retryable_errors_stop_at_once(env, listed):
    policy = {"max_attempts": 5, "non_retryable_errors": [listed]}
    key, result, state = run_flaky(env, policy, fail_times=10, error="PaymentDeclined")
    assert result["failed"] and result["attempts"] == 1 and result["cause"] == "PaymentDeclined"
    assert CALLS[key] == 1


def test_other_errors_are_still_retried_when_some_are_non_retryable(env):
    policy = {"max_attempts": 3, "non_retryable_errors": ["PaymentDeclined"]}
    key, result, _ = run_flaky(env, policy, fail_times=10, error="ValueError")
    assert result["attempts"] == 3
    assert CALLS[key] == 3


HANG: dict[str, threading.Event] = {}


@activity(name="engine.retry.hangs_first")
def hangs_first(key: str) -> int:
    n = CALLS.hit(key)
    if n == 1:
        HANG[key].wait(5)  # far past the per-attempt timeout
    return n


@workflow(name="engine.retry.with_timeout")
def with_timeout(ctx, key: str) -> int:
    return ctx.execute_activity(
        hangs_first,
        key,
        timeout=timedelta(milliseconds=100),
        retry=RetryPolicy(max_attempts=3, initial_interval=0.01),
    )


def test_attempt_timeout_counts_as_a_failed_attempt(env):
    key = unique("hang")
    HANG[key] = threading.Event()
    started = time.monotonic()
    try:
        handle = env.execute(with_timeout, WorkflowOptions(id=key, input=key))
        assert handle.result(timeout=60) == 2
    finally:
        HANG[key].set()
    assert time.monotonic() - started < 2, "the timed-out attempt was waited for"
    state = env.store.load(key)
    assert attempts_of(state) == ([1, 2], [1], [2])
    failed = events(state, EventType.ACTIVITY_FAILED)[0]
    assert failed.error["type"] == "TimeoutError"
    assert "timed out" in failed.error["message"]


@activity(name="engine.retry.with_default_policy", retry=RetryPolicy(max_attempts=2))
def with_default_policy(data: dict) -> int:
    return flaky(data)


@workflow(name="engine.retry.uses_activity_default")
def uses_activity_default(ctx, data: dict) -> dict:
    try:
        return {"value": ctx.execute_activity(with_default_policy, data)}
    except ActivityError as exc:
        return {"attempts": exc.attempts}


def test_activity_decorator_default_policy_applies(env):
    key = unique("default")
    handle = env.execute(
        uses_activity_default, WorkflowOptions(input={"key": key, "fail_times": 10})
    )
    assert handle.result() == {"attempts": 2}
    assert CALLS[key] == 2


# -- RetryPolicy itself -----------------------------------------------------------------------------


def test_default_policy_values():
    policy = RetryPolicy()
    assert (
        policy.max_attempts,
        policy.initial_interval,
        policy.backoff_coefficient,
        policy.max_interval,
        policy.non_retryable_errors,
    ) == (3, 0.1, 2.0, 10.0, ())
    assert DefaultRetryPolicy() == RetryPolicy.default() == policy


@pytest.mark.parametrize("bad", [0, -1, -0.5])
def test_zero_or_negative_values_normalise(bad):
    policy = RetryPolicy(
        max_attempts=bad, initial_interval=bad, backoff_coefficient=bad, max_interval=bad
    )
    assert policy.max_attempts == 1
    assert policy.initial_interval == 0.1
    assert policy.backoff_coefficient == 2.0
    assert policy.max_interval == 10.0


def test_negative_timedeltas_normalise_and_timedeltas_become_seconds():
    assert RetryPolicy(initial_interval=timedelta(seconds=-3)).initial_interval == 0.1
    assert RetryPolicy(max_interval=timedelta(0)).max_interval == 10.0
    policy = RetryPolicy(
        initial_interval=timedelta(milliseconds=250), max_interval=timedelta(minutes=1)
    )
    assert (policy.initial_interval, policy.max_interval) == (0.25, 60.0)


def test_interval_bounds_over_many_draws():
    policy = RetryPolicy(initial_interval=1, backoff_coefficient=2, max_interval=6)
    for attempt, base in [(1, 1), (2, 2), (3, 4)]:
        draws = [policy.interval(attempt) for _ in range(500)]
        assert all(min(0.5 * base, 6) <= d < 1.5 * base for d in draws)
        assert all(d <= 6 for d in draws)
    assert {policy.interval(5) for _ in range(50)} == {6.0}  # 16 s base, always capped


def test_many_attempts_stay_capped_without_overflow():
    """A policy that retries for a day (thousands of attempts) keeps waiting max_interval."""
    policy = RetryPolicy(
        max_attempts=10_000, initial_interval=1, backoff_coefficient=2, max_interval=30
    )
    assert policy.interval(1030) == 30.0
    assert policy.interval(9_999) == 30.0


@workflow(name="engine.retry.cancel_in_backoff")
def cancel_in_backoff(ctx, key: str) -> str:
    try:
        return ctx.execute_activity(
            flaky,
            {"key": key, "fail_times": 99},
            retry=RetryPolicy(max_attempts=5, initial_interval=3600),
        )
    except WorkflowCanceledError:
        ctx.execute_activity(flaky, {"key": f"{key}-cleanup", "fail_times": 0})
        raise


def test_cancel_during_a_retry_backoff(env):
    key = unique("backoff")
    handle = env.execute(cancel_in_backoff, WorkflowOptions(id=key, input=key))
    env.run_until_idle()
    state = env.store.load(key)
    assert state.wait_kind == "retry" and CALLS[key] == 1
    env.cancel(key)
    with pytest.raises(WorkflowCanceledError):
        handle.result()
    assert CALLS[key] == 1, "the canceled activity was retried"
    assert CALLS[f"{key}-cleanup"] == 1
    assert handle.status() == "canceled"
