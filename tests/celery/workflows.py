"""Workflows and activities the integration tests run on real Celery workers.

Activities record every execution in Redis (``<prefix>:fx:<workflow id>:<step>``, one list entry
``"<process group>:<pid>:<token>"`` per execution) and return the token, so a test can tell which
execution the history recorded and which ones ran in a worker that was killed.
"""

from __future__ import annotations

import os
import time
import uuid

import redis

from beluga_workflows import RetryPolicy, WorkflowContext, activity, workflow

_client: redis.Redis | None = None


def prefix() -> str:
    return os.environ.get("BELUGA_TEST_PREFIX", "beluga-test")


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BELUGA_TEST_REDIS_URL"], decode_responses=True)
    return _client


def effect_key(workflow_id: str, step: int) -> str:
    return f"{prefix()}:fx:{workflow_id}:{step}"


def mark_worker_ready(sender=None, **kwargs) -> None:
    """``worker_ready`` hook: tell the test which worker (node name) is consuming now."""
    client().sadd(f"{prefix()}:ready", sender.hostname)


def connections_key() -> str:
    return f"{prefix()}:connections"


def count_connection(sender=None, connection=None, **kwargs) -> None:
    """``connection_created`` hook: count the database connections worker processes open."""
    client().incr(connections_key())


@activity(name="celery_tests.step")
def step(data: dict) -> dict:
    """One side effect: recorded in Redis first, then a pause (a window for kill -9 to land in)."""
    token = uuid.uuid4().hex
    client().rpush(effect_key(data["wf"], data["i"]), f"{os.getpgid(0)}:{os.getpid()}:{token}")
    if data.get("pause"):
        time.sleep(data["pause"])
    return {"token": token}


@workflow(name="celery_tests.steps")
def steps(ctx: WorkflowContext, data: dict) -> list[str]:
    """``data["steps"]`` activities in a row; returns their tokens."""
    tokens = []
    for i in range(data["steps"]):
        result = ctx.execute_activity(
            step, {"wf": ctx.workflow_id, "i": i, "pause": data.get("pause", 0)},
            retry=RetryPolicy(max_attempts=3),
        )
        tokens.append(result["token"])
    return tokens


@activity(name="celery_tests.note")
def note(data: dict) -> int:
    return data["k"]


@workflow(name="celery_tests.three_signals")
def three_signals(ctx: WorkflowContext, data: dict | None = None) -> list:
    """Wait for three ``go`` signals, with a checkpoint (an activity) after each."""
    payloads = []
    for k in range(3):
        payloads.append(ctx.receive_signal("go"))
        ctx.execute_activity(note, {"k": k})
    return payloads


@workflow(name="celery_tests.sleeper")
def sleeper(ctx: WorkflowContext, data: dict) -> str:
    """Sleep ``data["seconds"]`` durably, then finish."""
    ctx.sleep(data["seconds"])
    return "woke"


# -- events (tests/celery/test_events.py) -------------------------------------------------------------

def starts_key(workflow_id: str) -> str:
    return f"{prefix()}:starts:{workflow_id}"


@activity(name="celery_tests.mark_start")
def mark_start(data: dict) -> str:
    """Record which run of a workflow id ran (a set: a retried step adds nothing new)."""
    client().sadd(starts_key(data["wf"]), data["run"])
    return data["run"]


def _triggered(ctx: WorkflowContext, event: dict) -> str:
    ctx.execute_activity(mark_start, {"wf": ctx.workflow_id, "run": ctx.run_id})
    return event["id"]


@workflow(name="celery_tests.on_placed_a", on_event="celery-tests/placed")
def on_placed_a(ctx: WorkflowContext, event: dict) -> str:
    """One of three workflows each ``celery-tests/placed`` event starts."""
    return _triggered(ctx, event)


@workflow(name="celery_tests.on_placed_b", on_event="celery-tests/placed")
def on_placed_b(ctx: WorkflowContext, event: dict) -> str:
    """One of three workflows each ``celery-tests/placed`` event starts."""
    return _triggered(ctx, event)


@workflow(name="celery_tests.on_placed_c", on_event="celery-tests/placed")
def on_placed_c(ctx: WorkflowContext, event: dict) -> str:
    """One of three workflows each ``celery-tests/placed`` event starts."""
    return _triggered(ctx, event)


@workflow(name="celery_tests.await_paid")
def await_paid(ctx: WorkflowContext, order: dict) -> dict | None:
    """Wait for the ``celery-tests/paid`` event of its order (sent up to 10 minutes earlier)."""
    paid = ctx.wait_for_event("celery-tests/paid", match="data.order_id", lookback="10m",
                              timeout="5m")
    return None if paid is None else {"id": paid.id, "data": paid.data}
