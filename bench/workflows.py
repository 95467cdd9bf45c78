"""What the benchmark runs: our workflows (W1-W4, replay) and the Celery-chain baseline tasks."""

from __future__ import annotations

import os
import sys
import time

from celery import shared_task

from beluga_workflows import Concurrency, WorkflowContext, activity, workflow

READY_KEY = "beluga-bench:ready"
# With BENCH_COUNT_STATEMENTS=1 each worker counts its SQL statements in this Redis hash, by kind.
STATEMENTS_KEY = "beluga-bench:statements"


def mark_worker_ready(sender=None, **kwargs) -> None:
    """``worker_ready`` hook: tell ``bench/run.py`` this worker consumes now."""
    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).sadd(READY_KEY, sender.hostname)


def count_statements() -> None:
    """Count every SQL statement this process sends (Django's cursors and the PostgreSQL store's
    own psycopg statements) into the Redis hash ``STATEMENTS_KEY``: ``total`` and one field per
    kind. A Redis round trip per statement: only for counting, never for timing."""
    import redis
    from django.db.backends.signals import connection_created

    from beluga_workflows.stores.django import postgres

    client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])

    def add(kind: str) -> None:
        client.pipeline(transaction=False).hincrby(STATEMENTS_KEY, "total").hincrby(
            STATEMENTS_KEY, kind).execute()

    def django_statement(execute, sql, params, many, context):
        add("django " + (sql.lstrip().split(None, 1) or ["?"])[0].upper())
        return execute(sql, params, many, context)

    def wrap(sender, connection, **kwargs) -> None:
        if django_statement not in connection.execute_wrappers:
            connection.execute_wrappers.append(django_statement)

    connection_created.connect(wrap, weak=False)
    raw_execute = postgres.PostgresStatements._execute

    def pg_statement(statements, cursor, text, params):
        frame, name = sys._getframe(1), "?"  # named by the store operation that sent it
        while frame is not None and frame.f_code.co_name in (
                "_fetch", "_fetch_all", "_execute", "_cursor", "__enter__", "__exit__", "_run",
                "_contents_rows"):
            frame = frame.f_back
        add(f"pg {frame.f_code.co_name if frame is not None else name}")
        return raw_execute(statements, cursor, text, params)

    postgres.PostgresStatements._execute = pg_statement


@activity(name="bench.step")
def step(i: int) -> int:
    """A trivial activity."""
    return i


def _steps(ctx: WorkflowContext, steps: int) -> int:
    total = 0
    for i in range(steps):
        total += ctx.execute_activity(step, i)
    return total


@workflow(name="bench.w1")
def w1(ctx: WorkflowContext, steps: int) -> int:
    """W1: ``steps`` trivial activities in a row (the replay measurement runs 10,000)."""
    return _steps(ctx, steps)


# The limit W1c declares; the bench never has more W1c runs open at once, so none waits.
W1C_LIMIT = 1000


@workflow(name="bench.w1c", concurrency=Concurrency(W1C_LIMIT))
def w1c(ctx: WorkflowContext, steps: int) -> int:
    """W1c: W1's body, declared with ``Concurrency(1000)``: each run takes a ``ConcurrencySlot``
    row in the write that starts it and frees it in the write that ends it."""
    return _steps(ctx, steps)


@workflow(name="bench.w5")
def w5(ctx: WorkflowContext, n: int) -> int:
    """W5: ``n`` trivial activities started at once (each its own task on any worker), gathered."""
    return sum(ctx.gather(*[ctx.start_activity(step, i) for i in range(n)]))


@workflow(name="bench.w5_one")
def w5_one(ctx: WorkflowContext, i: int) -> int:
    """W5's yardstick: one run of one trivial activity (W5 runs ``n`` of them)."""
    return ctx.execute_activity(step, i)


@workflow(name="bench.w2")
def w2(ctx: WorkflowContext, data: None = None) -> object:
    """W2: wait for signal ``go``, return its payload."""
    return ctx.receive_signal("go")


@workflow(name="bench.w3")
def w3(ctx: WorkflowContext, seconds: float) -> str:
    """W3: a durable sleep."""
    ctx.sleep(seconds)
    return "woke"


@workflow(name="bench.w4")
def w4(ctx: WorkflowContext, order: dict) -> object:
    """W4: wait for the ``bench/paid`` event of its order, return its data."""
    return ctx.wait_for_event("bench/paid", match="data.k").data


# -- the baseline: plain Celery tasks (not durable) -------------------------------------------------

@shared_task(name="bench.noop", ignore_result=False)
def noop(i: int) -> int:
    """A trivial task; a chain of 10 of them is the baseline's W1."""
    return i


@shared_task(name="bench.wake", ignore_result=False)
def wake() -> float:
    """The baseline's W3: sent with a 1 s countdown; returns when it ran."""
    return time.time()
