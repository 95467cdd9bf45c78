"""Workflows the admin tests start (registered on import)."""

from __future__ import annotations

from beluga_workflows import WorkflowContext, workflow
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
