"""Event-driven workflows of the events API tests."""

from beluga_workflows import WorkflowContext, workflow


@workflow(name="tests.api.on_placed", on_event="tests/placed")
def on_placed(ctx: WorkflowContext, event: dict) -> dict:
    """Started by each ``tests/placed`` event; returns the order id it was given."""
    return {"order": event["data"].get("order_id")}


@workflow(name="tests.api.await_paid")
def await_paid(ctx: WorkflowContext, order_id: str):
    """Waits for the ``tests/paid`` event of its order."""
    paid = ctx.wait_for_event("tests/paid", match={"data.order_id": order_id}, timeout="1h")
    return None if paid is None else paid.data
