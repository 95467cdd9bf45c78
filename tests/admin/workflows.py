"""Workflows the admin tests start (registered on import)."""

from __future__ import annotations

from beluga_workflows import RetryPolicy, WorkflowContext, activity, workflow
from beluga_workflows.activities import HumanActivity


@workflow(name="admin_tests.wait_for_signal")
def wait_for_signal(ctx: WorkflowContext, data: dict | None = None) -> dict:
    """Wait for signal "go", then return its payload with the input."""
    ctx.set_query_handler("stage", lambda: "waiting for go")
    payload = ctx.receive_signal("go")
    return {"input": data, "go": payload}


@workflow(name="admin_tests.fail")
def fail(ctx: WorkflowContext, data: dict | None = None) -> None:
    """Fail at once with a traceback."""
    raise ValueError(f"bad input: {data!r}")


@workflow(name="admin_tests.hello")
def hello(ctx: WorkflowContext, name: str | None = None) -> str:
    return ctx.side_effect(lambda: f"Hello, {name or 'world'}!")


@workflow(name="admin_tests.review")
def review(ctx: WorkflowContext, data: dict | None = None) -> dict:
    """Ask a person to review ``data``; return their answer."""
    data = data or {}
    task = HumanActivity(
        title=data.get("title", "Approve the refund"),
        description="A customer asks for a refund.",
        timeout=data.get("timeout"),
        timeout_decision=data.get("timeout_decision"),
    )
    answer = ctx.execute_activity(task, data.get("order", {"order": 42, "amount": "19.90"}))
    return {"answer": answer}


@workflow(name="admin_tests.two_reviews")
def two_reviews(ctx: WorkflowContext, data: dict | None = None) -> list:
    first = ctx.execute_activity(HumanActivity("First look", choices=("approve", "reject")), data)
    second = ctx.execute_activity(HumanActivity("Second look"), first)
    return [first, second]


# While set, step 2 of ``admin_tests.three_steps`` fails (a test clears it to "deploy the fix").
STEP_TWO_FAILS = {"on": False}
STEP_CALLS: dict[tuple[str, int], int] = {}


@activity(name="admin_tests.step", retry=RetryPolicy(max_attempts=1))
def step(spec: dict) -> str:
    """Counts its calls per ``(key, n)``; step 2 fails while ``STEP_TWO_FAILS["on"]``."""
    key = (spec["key"], spec["n"])
    STEP_CALLS[key] = STEP_CALLS.get(key, 0) + 1
    if spec["n"] == 2 and STEP_TWO_FAILS["on"]:
        raise RuntimeError("step 2 is broken")
    return f"step{spec['n']}"


@workflow(name="admin_tests.three_steps")
def three_steps(ctx: WorkflowContext, key: str = "") -> list:
    """Three activities in a row (``step`` 1, 2, 3): one operation per step."""
    return [ctx.execute_activity(step, {"key": key, "n": n}) for n in (1, 2, 3)]


@workflow(name="admin_tests.side_by_side")
def side_by_side(ctx: WorkflowContext, key: str = "") -> list:
    """Steps 1 and 2 run in parallel (step 2 begins inside step 1), then step 3."""
    both = ctx.gather(ctx.start_activity(step, {"key": key, "n": 1}),
                      ctx.start_activity(step, {"key": key, "n": 4}))
    return [*both, ctx.execute_activity(step, {"key": key, "n": 3})]
