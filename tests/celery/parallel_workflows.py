"""Workflows and activities of the parallel-steps tests (tests/celery/test_parallel.py).

The worker processes import this module through ``CELERY_IMPORTS`` (worker_settings.py); the test
process imports it from the test module. Names are prefixed ``celery_par.``.

``par_mark`` records every execution in Redis (``<prefix>:par:<workflow id>:<i>``, one JSON entry
``{"t", "pgid", "pid", "token", "package"}`` per execution (``package``: the
``beluga_workflows`` the worker imported), and a count of the run's executions at
``<prefix>:par:<workflow id>:count``, written *before* the activity's pause, so an
execution killed mid-way is recorded too) and returns ``{"i", "token"}``: a test can tell which
execution the run's history recorded, when each one started and which ones ran in a worker that
was killed.

``hold_child_start`` (a ``before_task_publish`` handler): when a Redis flag
``<prefix>:par:hold:<child id>`` is set, the process sending the first ``run_workflow`` message of
that child (the parent's worker, inside ``ctx.start_child``: the child's row is committed, the
parent's ``child_workflow_started`` is not recorded yet) announces it on the list
``<prefix>:par:holding`` and stays there (at most 30 s): the window a test kills the worker in.
"""

from __future__ import annotations

import json
import os
import time
import uuid

from celery.signals import before_task_publish

from beluga_workflows import ChildWorkflowError, RetryPolicy, WorkflowContext, activity, workflow

from .workflows import client, prefix

# -- Redis keys (under the session's prefix: the workers read it from their environment, the test
# process passes conftest.PREFIX as ``at``) -----------------------------------------------------

def runs_key(workflow_id: str, i: int, at: str | None = None) -> str:
    return f"{at or prefix()}:par:{workflow_id}:{i}"


def count_key(workflow_id: str, at: str | None = None) -> str:
    return f"{at or prefix()}:par:{workflow_id}:count"


def hold_key(child_id: str, at: str | None = None) -> str:
    return f"{at or prefix()}:par:hold:{child_id}"


def holding_key(at: str | None = None) -> str:
    return f"{at or prefix()}:par:holding"


# -- activities -------------------------------------------------------------------------------------

@activity(name="celery_par.mark")
def par_mark(data: dict) -> dict:
    """Record this execution (time, process group, pid, token, package), pause ``data["pause"]``, return
    ``{"i": data["i"], "token": token}``."""
    import beluga_workflows

    token = uuid.uuid4().hex
    client().rpush(runs_key(data["wf"], data["i"]), json.dumps(
        {"t": time.time(), "pgid": os.getpgid(0), "pid": os.getpid(), "token": token,
         "package": beluga_workflows.__file__}))
    client().incr(count_key(data["wf"]))
    if data.get("pause"):
        time.sleep(data["pause"])
    return {"i": data["i"], "token": token}


@activity(name="celery_par.fail")
def par_fail(data: dict) -> None:
    raise ValueError(f"child {data['k']} cannot do it")


# -- activity fan-outs ------------------------------------------------------------------------------

@workflow(name="celery_par.fan_out")
def fan_out(ctx: WorkflowContext, data: dict) -> list[dict]:
    """Start ``data["n"]`` activities at once, gather them. Each pauses ``data["pause"]``
    seconds, those of ``data["slow"]`` (a list of ``i``) ``data["slow_pause"]`` seconds."""
    slow = set(data.get("slow", ()))
    futures = [ctx.start_activity(par_mark, {"wf": ctx.workflow_id, "i": i,
                                             "pause": data["slow_pause"] if i in slow
                                             else data.get("pause", 0)},
                                  retry=RetryPolicy(max_attempts=3))
               for i in range(data["n"])]
    return ctx.gather(*futures)


@workflow(name="celery_par.quick")
def quick(ctx: WorkflowContext, data: dict) -> str:
    """One activity in the run itself, then done."""
    ctx.execute_activity(par_mark, {"wf": ctx.workflow_id, "i": 0})
    return "quick"


@workflow(name="celery_par.race")
def race(ctx: WorkflowContext, data: dict) -> dict:
    """A slow and a fast activity; ``wait_any`` picks the first to end (answered by the query
    ``winner``, registered after it); then wait for signal ``go``; then gather both."""
    slow = ctx.start_activity(par_mark, {"wf": ctx.workflow_id, "i": 0, "pause": data["slow"]})
    fast = ctx.start_activity(par_mark, {"wf": ctx.workflow_id, "i": 1, "pause": 0})
    first = ctx.wait_any(slow, fast)
    winner = "slow" if first is slow else "fast" if first is fast else f"neither: {first!r}"
    ctx.set_query_handler("winner", lambda: winner)
    go = ctx.receive_signal("go")
    results = ctx.gather(slow, fast)
    return {"winner": winner, "go": go, "tokens": [r["token"] for r in results]}


# -- children ---------------------------------------------------------------------------------------

@workflow(name="celery_par.child_echo")
def child_echo(ctx: WorkflowContext, data: dict) -> dict:
    """One activity, then ``{"k": k, "double": 2 * k}``."""
    ctx.execute_activity(par_mark, {"wf": ctx.workflow_id, "i": 0})
    return {"k": data["k"], "double": 2 * data["k"]}


@workflow(name="celery_par.child_waits")
def child_waits(ctx: WorkflowContext, data: dict) -> str:
    """Wait for signal ``go`` (a test cancels the parent meanwhile)."""
    ctx.receive_signal("go")
    return "signalled"


@workflow(name="celery_par.child_fails")
def child_fails(ctx: WorkflowContext, data: dict) -> None:
    """Fail: its only activity raises ``ValueError`` (one attempt)."""
    ctx.execute_activity(par_fail, data, retry=RetryPolicy(max_attempts=1))


@workflow(name="celery_par.parent")
def parent(ctx: WorkflowContext, data: dict) -> list:
    """Start ``data["n"]`` children of type ``data["child"]`` (input ``{"k": k}``), gather them."""
    children = [ctx.start_child(data["child"], {"k": k}) for k in range(data["n"])]
    return ctx.gather(*children)


@workflow(name="celery_par.parent_catches")
def parent_catches(ctx: WorkflowContext, data: dict) -> dict:
    """Run a failing child; return what the ``ChildWorkflowError`` said."""
    try:
        ctx.execute_child(child_fails, {"k": 7})
    except ChildWorkflowError as exc:
        return {"code": exc.code, "status": exc.status, "child_id": exc.child_id,
                "cause": exc.cause.get("type"), "message": str(exc)}
    return {"code": None}


@before_task_publish.connect(weak=False)
def hold_child_start(sender=None, body=None, **kwargs) -> None:
    """Stall the first message of a flagged child run (see the module docstring)."""
    if "BELUGA_TEST_REDIS_URL" not in os.environ:  # not a process the tests started
        return
    if sender != "beluga_workflows.run_workflow" or not isinstance(body, (list, tuple)):
        return
    args = body[0] if body else ()
    if not args or not isinstance(args[0], str) or "/" not in args[0]:
        return
    child_id = args[0]
    if not client().delete(hold_key(child_id)):
        return
    client().rpush(holding_key(), json.dumps({"child": child_id, "pgid": os.getpgid(0)}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.05)
