"""The workflows the Temporal tests run, in the worker processes and (registered) in pytest's.

Activities append a line per execution to the ledger file named by ``BELUGA_TEST_TEMPORAL_LEDGER``
(shared by every process), so a test can count how often each one ran, across worker crashes.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from beluga_workflows import (
    ActivityError,
    NonRetryableError,
    RetryPolicy,
    SignalTimeoutError,
    WorkflowCanceledError,
    WorkflowContext,
    activity,
    workflow,
)


def note(line: str) -> None:
    """Append ``line`` to the shared ledger (one write: lines of processes never interleave)."""
    path = os.environ.get("BELUGA_TEST_TEMPORAL_LEDGER")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)


# -- API.md §1 --------------------------------------------------------------------------------

@activity
def charge_card(order: dict) -> dict:
    note(f"charge {order['id']}")
    time.sleep(order.get("charge_seconds", 0))
    return {"charged": order["total"], "order": order["id"]}


@workflow(name="orders.process")
def process_order(ctx: WorkflowContext, order: dict) -> dict:
    """API.md §1's example; the hold after the approval is ``order["hold"]`` seconds (an hour
    there: the dev server skips no time)."""
    receipt = ctx.execute_activity(
        charge_card, order,
        retry=RetryPolicy(max_attempts=5, initial_interval=0.1,
                          backoff_coefficient=2.0, max_interval=30),
        timeout=timedelta(seconds=30),
    )
    approval = ctx.receive_signal("approval", timeout=timedelta(days=3))
    ctx.sleep(timedelta(seconds=order.get("hold", 3600)))
    return {"receipt": receipt, "approval": approval}


# -- signals, timeouts, queries ---------------------------------------------------------------

@workflow(name="temporal.signal_timeout")
def signal_timeout(ctx: WorkflowContext, seconds: float) -> str:
    try:
        return ctx.receive_signal("never", timeout=seconds)
    except SignalTimeoutError as exc:
        return f"gave up: {exc}"


@workflow(name="temporal.sleeper")
def sleeper(ctx: WorkflowContext, seconds: float) -> str:
    ctx.sleep(seconds)
    return "woke"


@workflow(name="temporal.progress")
def progress(ctx: WorkflowContext, items: list) -> dict:
    done: list = []
    ctx.set_query_handler("progress", lambda: {"done": list(done), "left": len(items) - len(done)})
    for _ in items:
        done.append(ctx.receive_signal("item"))
    return {"done": done, "at": ctx.now().isoformat(), "token": ctx.side_effect(lambda: "once")}


# -- cancellation -----------------------------------------------------------------------------

@activity
def slow_step(data: dict) -> str:
    note(f"slow-start {data['id']}")
    time.sleep(data.get("seconds", 3))
    note(f"slow-end {data['id']}")
    return "slow done"


@activity
def clean_up(data: dict) -> str:
    note(f"cleanup {data['id']} {data['after']}")
    return "cleaned"


@workflow(name="temporal.cancellable")
def cancellable(ctx: WorkflowContext, data: dict) -> str:
    try:
        if data["during"] == "sleep":
            ctx.sleep(120)
        else:
            ctx.execute_activity(slow_step, {"id": data["id"], "seconds": 5}, timeout=30)
        return "not canceled"
    except WorkflowCanceledError:
        assert ctx.is_cancel_requested
        ctx.execute_activity(clean_up, {"id": data["id"], "after": data["during"]})
        raise


# -- failures ---------------------------------------------------------------------------------

@activity
def flaky(data: dict) -> str:
    note(f"flaky {data['id']}")
    raise ValueError(f"flaky {data['id']} refuses")


@workflow(name="temporal.failing")
def failing(ctx: WorkflowContext, data: dict) -> str:
    ctx.execute_activity(flaky, data, retry=RetryPolicy(max_attempts=2, initial_interval=0.05))
    return "unreachable"


# -- determinism ------------------------------------------------------------------------------

@activity
def step_a(data: dict) -> str:
    return "a"


@activity
def step_b(data: dict) -> str:
    return "b"


@workflow(name="temporal.changing")
def changing(ctx: WorkflowContext, data: dict) -> str:
    """Runs ``step_a`` under code version 1, ``step_b`` under 2 (``BELUGA_TEST_CODE_VERSION``)."""
    step = step_a if os.environ.get("BELUGA_TEST_CODE_VERSION", "1") == "1" else step_b
    first = ctx.execute_activity(step, data)
    return first + str(ctx.receive_signal("go"))


# -- crash recovery ---------------------------------------------------------------------------

@activity
def crash_step(data: dict) -> str:
    note(f"begin {data['id']} {data['step']}")
    time.sleep(data.get("seconds", 0.4))
    note(f"end {data['id']} {data['step']}")
    return f"{data['id']}:{data['step']}"


@workflow(name="temporal.steps")
def steps(ctx: WorkflowContext, data: dict) -> list:
    return [ctx.execute_activity(crash_step, {"id": data["id"], "step": step,
                                              "seconds": data.get("seconds", 0.4)},
                                 timeout=data.get("timeout", 3))
            for step in range(data["steps"])]


# -- the engine's behaviour, on both backends (test_engine_behaviour.py) ----------------------

@activity
def tally(data: dict) -> str:
    note(f"tally {data['id']}")
    return "tallied"


@workflow(name="both.collect")
def both_collect(ctx: WorkflowContext, spec: dict) -> dict:
    """Prepares once, then takes ``count`` signals of each name, in the order of ``names``."""
    ctx.execute_activity(tally, {"id": spec["id"]})
    received: dict[str, list] = {name: [] for name in spec["names"]}
    for _ in range(spec["count"]):
        for name in spec["names"]:
            received[name].append(ctx.receive_signal(name))
    return received


@activity
def fails_until(data: dict) -> str:
    """Fails its first ``fail`` calls (counted in the ledger) with ``data["error"]``."""
    note(f"try {data['id']}")
    path = os.environ.get("BELUGA_TEST_TEMPORAL_LEDGER", "")
    tries = Path(path).read_text().splitlines().count(f"try {data['id']}") if path else 1
    if tries <= data["fail"]:
        if data.get("error") == "non_retryable":
            raise NonRetryableError(f"attempt {tries} refuses for good")
        raise ConnectionError(f"attempt {tries} refuses")
    return f"ok after {tries}"


@workflow(name="both.retrying")
def both_retrying(ctx: WorkflowContext, spec: dict) -> dict:
    try:
        return {"result": ctx.execute_activity(
            fails_until, spec, retry=RetryPolicy(max_attempts=spec["attempts"],
                                                 initial_interval=spec.get("wait", 0.05),
                                                 backoff_coefficient=1.0))}
    except ActivityError as exc:
        return {"attempts": exc.attempts, "cause": exc.cause["type"]}


@workflow(name="both.timed")
def both_timed(ctx: WorkflowContext, seconds: float) -> float:
    start = ctx.now()
    ctx.sleep(seconds)
    return (ctx.now() - start).total_seconds()


@workflow(name="both.fan_out")
def both_fan_out(ctx: WorkflowContext, spec: dict) -> list:
    futures = [ctx.start_activity(tally, {"id": f"{spec['id']}-{n}"}) for n in range(spec["n"])]
    futures.append(ctx.start_activity(fails_until, {"id": spec["id"], "fail": 99,
                                                    "error": "non_retryable"}))
    results = ctx.gather(*futures, return_exceptions=True)
    return [r if isinstance(r, str) else type(r).__name__ for r in results]


@workflow(name="both.effects")
def both_effects(ctx: WorkflowContext, data: dict) -> dict:
    token = ctx.side_effect(lambda: (note(f"effect {data['id']}"), data["id"])[1])
    ctx.set_query_handler("stage", lambda: {"token": token})
    answer = ctx.receive_signal("go")
    return {"token": token, "answer": answer}


@workflow(name="both.counting")
def both_counting(ctx: WorkflowContext, n: int) -> int:
    if n > 0:
        ctx.continue_as_new(n - 1)
    return 0


@workflow(name="both.cancel_wait")
def both_cancel_wait(ctx: WorkflowContext, data: dict) -> str:
    try:
        return ctx.receive_signal("never")
    except WorkflowCanceledError:
        ctx.execute_activity(clean_up, {"id": data["id"], "after": "signal"})
        raise
