"""Workflows with flow control (API.md §9) of the admin's flow-control tests (registered on import)."""

from __future__ import annotations

from beluga_workflows import (
    Batch,
    Concurrency,
    Debounce,
    RateLimit,
    Throttle,
    WorkflowContext,
    workflow,
)

FULFIL = "admin_tests.flow.fulfil"
PING = "admin_tests.flow.ping"


@workflow(name=FULFIL, concurrency=Concurrency(2, key="input.customer"),
          priority="input.priority")
def fulfil(ctx: WorkflowContext, order: dict) -> dict:
    """Holds its slot until signal "go"."""
    return {"order": order, "go": ctx.receive_signal("go")}


@workflow(name="admin_tests.flow.sync", throttle=Throttle(5, "1s"))
def sync(ctx: WorkflowContext, data=None):
    return data


@workflow(name=PING, on_event="admin_tests/ping",
          rate_limit=RateLimit(1, "1h", key="event.data.user"))
def ping(ctx: WorkflowContext, event: dict) -> str:
    return event["data"]["user"]


@workflow(name="admin_tests.flow.digest", on_event="admin_tests/edit",
          debounce=Debounce("1s", key="event.data.doc", timeout="3s"))
def digest(ctx: WorkflowContext, event: dict) -> str:
    return event["id"]


@workflow(name="admin_tests.flow.rows", on_event="admin_tests/row",
          batch=Batch(10, "1s", key="event.data.table"))
def rows(ctx: WorkflowContext, events: list) -> int:
    return len(events)
