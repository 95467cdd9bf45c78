"""Workflows with flow control (API.md §9) of the flow-control API tests."""

from beluga_workflows import (
    Batch,
    Concurrency,
    Debounce,
    RateLimit,
    Throttle,
    WorkflowContext,
    workflow,
)


@workflow(name="tests.api.flow.fulfil",
          concurrency=[Concurrency(2, key="input.customer"), Concurrency(3)],
          priority="input.priority")
def fulfil(ctx: WorkflowContext, order: dict) -> dict:
    """Holds its slots until signal "go"."""
    return {"order": order, "go": ctx.receive_signal("go")}


@workflow(name="tests.api.flow.sync", throttle=Throttle(5, "1s"))
def sync(ctx: WorkflowContext, data=None):
    return data


@workflow(name="tests.api.flow.signup", rate_limit=RateLimit(1, "1h", key="input.user"))
def signup(ctx: WorkflowContext, data: dict) -> str:
    return data["user"]


@workflow(name="tests.api.flow.digest", on_event="tests-flow/edit",
          debounce=Debounce("1s", key="event.data.doc", timeout="3s"))
def digest(ctx: WorkflowContext, event: dict) -> str:
    return event["id"]


@workflow(name="tests.api.flow.rows", on_event="tests-flow/row",
          batch=Batch(10, "1s", key="event.data.table"))
def rows(ctx: WorkflowContext, events: list) -> int:
    return len(events)


@workflow(name="tests.api.flow.ping", on_event="tests-flow/ping",
          rate_limit=RateLimit(1, "1h", key="event.data.user"))
def ping(ctx: WorkflowContext, event: dict) -> str:
    return event["data"]["user"]
