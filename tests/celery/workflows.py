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


# -- flow control (tests/celery/test_flow_control.py) ------------------------------------------------
#
# Activities log to a Redis list per test (``<prefix>:flow:<log>``), one JSON entry per record:
# ``flow_hold`` an "enter" and a "leave" (``time.time()``: every process is on one host) around a
# pause, so a test can rebuild who was inside when (an execution killed mid-way has no "leave");
# ``flow_mark`` one "start" per execution.

import json  # noqa: E402 - this section's own imports

from beluga_workflows import (  # noqa: E402
    Batch,
    Concurrency,
    Debounce,
    RateLimit,
    Throttle,
)


def flow_log_key(log: str) -> str:
    return f"{prefix()}:flow:{log}"


def _flow_record(log: str, **entry) -> None:
    entry.update(t=time.time(), pgid=os.getpgid(0), pid=os.getpid())
    client().rpush(flow_log_key(log), json.dumps(entry))


@activity(name="celery_tests.flow_hold")
def flow_hold(data: dict) -> str:
    """Be inside for ``data["hold"]`` seconds, with an "enter" and a "leave" record around it."""
    token = uuid.uuid4().hex
    _flow_record(data["log"], at="enter", token=token, wf=data["wf"], key=data["key"])
    time.sleep(data["hold"])
    _flow_record(data["log"], at="leave", token=token, wf=data["wf"], key=data["key"])
    return token


@activity(name="celery_tests.flow_mark")
def flow_mark(data: dict) -> float:
    """Record that the run started (its first step); with ``data["until"]`` (a Redis key), stay
    inside until that key is set (at most 60 s), holding the run's concurrency slot."""
    _flow_record(data["log"], at="start", wf=data["wf"])
    if data.get("until"):
        deadline = time.monotonic() + 60
        while not client().exists(data["until"]) and time.monotonic() < deadline:
            time.sleep(0.02)
    return time.time()


@workflow(name="celery_tests.flow_limited", concurrency=Concurrency(2, key="input.key"))
def flow_limited(ctx: WorkflowContext, data: dict) -> str:
    """At most 2 open runs per ``input.key``; each is inside ``flow_hold`` for ``data["hold"]``."""
    ctx.execute_activity(flow_hold, {"log": data["log"], "wf": ctx.workflow_id, "key": data["key"],
                                     "hold": data["hold"]},
                         retry=RetryPolicy(max_attempts=5))
    return data["key"]


@workflow(name="celery_tests.flow_throttled", throttle=Throttle(5, "1s", key="input.key"))
def flow_throttled(ctx: WorkflowContext, data: dict) -> str:
    """At most 5 starts per second per ``input.key`` (a burst of 5, then one every 0.2 s)."""
    ctx.execute_activity(flow_mark, {"log": data["log"], "wf": ctx.workflow_id})
    return ctx.workflow_id


@workflow(name="celery_tests.flow_queued", concurrency=Concurrency(1, key="input.queue"),
          priority="input.p")
def flow_queued(ctx: WorkflowContext, data: dict) -> str:
    """One open run per ``input.queue``; ``input.p`` (or ``WorkflowOptions.priority``) seconds
    ahead of the waiters; ``data["until"]``: hold the slot until that Redis key is set."""
    ctx.execute_activity(flow_mark, {"log": data["log"], "wf": ctx.workflow_id,
                                     "until": data.get("until")})
    return ctx.workflow_id


@workflow(name="celery_tests.flow_rated", on_event="celery-tests/flow-ping",
          rate_limit=RateLimit(1, "1h", key="event.data.user"))
def flow_rated(ctx: WorkflowContext, event: dict) -> str:
    """One run per hour per ``event.data.user``; the other events are skipped."""
    return event["id"]


@workflow(name="celery_tests.flow_rated_calls", rate_limit=RateLimit(1, "1h", key="input.user"))
def flow_rated_calls(ctx: WorkflowContext, data: dict) -> str:
    """One run per hour per ``input.user``; ``execute`` beyond it raises."""
    return data["user"]


@workflow(name="celery_tests.flow_debounced", on_event="celery-tests/flow-edit",
          debounce=Debounce("1s", key="event.data.doc", timeout="3s"))
def flow_debounced(ctx: WorkflowContext, event: dict) -> dict:
    """One run 1 s after a burst of edits of a doc (at most 3 s after its first), with the newest."""
    return {"id": event["id"], "rev": event["data"]["rev"]}


@workflow(name="celery_tests.flow_batched", on_event="celery-tests/flow-row",
          batch=Batch(10, "1s", key="event.data.table"))
def flow_batched(ctx: WorkflowContext, events: list) -> list[str]:
    """Up to 10 rows of a table per run (or those of 1 s after the first); their event ids."""
    return [e["id"] for e in events]


# -- schedules (tests/celery/test_schedules.py) ------------------------------------------------------
#
# A scheduled run records itself in a Redis list per schedule (``<prefix>:ticks:<schedule id>``):
# its workflow id, run id, process and the beluga_workflows package it imported, so a test can
# tell duplicate runs of a tick (two run ids for one workflow id) and check which code ran.


def ticks_key(schedule_id: str) -> str:
    return f"{prefix()}:ticks:{schedule_id}"


@activity(name="celery_tests.tick_mark")
def tick_mark(data: dict) -> float:
    import beluga_workflows

    entry = {**data, "t": time.time(), "pid": os.getpid(), "package": beluga_workflows.__file__}
    client().rpush(ticks_key(data["schedule"]), json.dumps(entry))
    return entry["t"]


@workflow(name="celery_tests.ticked")
def ticked(ctx: WorkflowContext, data: dict) -> float:
    """A schedule's run: one recorded step."""
    return ctx.execute_activity(tick_mark, {"schedule": data["schedule"], "wf": ctx.workflow_id,
                                            "run": ctx.run_id})
