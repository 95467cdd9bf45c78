"""Demo workflows, discovered at start-up like every installed app's workflows.py."""

from datetime import timedelta

from beluga_workflows import CancelOn, RetryPolicy, WorkflowContext, activity, workflow


@activity(name="demo.charge_card")
def charge_card(order: dict) -> dict:
    return {"charged": order.get("total", 0), "currency": order.get("currency", "EUR")}


@activity(name="demo.ship")
def ship(order: dict) -> dict:
    return {"shipped": True, "items": order.get("items", [])}


@workflow(name="demo.process_order")
def process_order(ctx: WorkflowContext, order: dict) -> dict:
    """Charge, wait for a person's approval (up to 3 days), wait an hour, ship."""
    receipt = ctx.execute_activity(charge_card, order, retry=RetryPolicy(max_attempts=5))
    ctx.set_query_handler("stage", lambda: "awaiting approval")
    approval = ctx.receive_signal("approval", timeout=timedelta(days=3))
    ctx.sleep(order.get("delay_seconds", 1))
    shipment = ctx.execute_activity(ship, order)
    return {"receipt": receipt, "approval": approval, "shipment": shipment}


@workflow(name="demo.hello")
def hello(ctx: WorkflowContext, name: str | None = None) -> str:
    """The smallest workflow: one recorded step."""
    return ctx.side_effect(lambda: f"Hello, {name or 'world'}!")


@workflow(name="demo.fulfil_order", on_event="demo/order_placed",
          cancel_on=[CancelOn("demo/order_cancelled", match="data.order_id")])
def fulfil_order(ctx: WorkflowContext, event: dict) -> dict:
    """Event-driven: each ``demo/order_placed`` event starts one run, which waits up to a day for
    the ``demo/order_paid`` event of the same ``order_id`` (one sent before it got there counts
    too), ships, and announces ``demo/order_shipped``. A ``demo/order_cancelled`` event of that
    order cancels it. Try it from the admin's Events page: send ``demo/order_placed`` with
    ``{"order_id": "o-1", "items": ["tea"]}``, then ``demo/order_paid`` with ``{"order_id": "o-1"}``.
    """
    order = event["data"]
    paid = ctx.wait_for_event("demo/order_paid", match="data.order_id", timeout="1d")
    if paid is None:
        return {"order_id": order.get("order_id"), "status": "unpaid"}
    shipment = ctx.execute_activity(ship, order)
    ctx.send_event("demo/order_shipped", {"order_id": order.get("order_id")})
    return {"order_id": order.get("order_id"), "status": "shipped", "paid_at": paid.ts,
            "shipment": shipment}



@workflow(name="demo.await_approval")
def await_approval(ctx: WorkflowContext, request: dict | None = None) -> dict:
    """Wait (up to a day) for the ``approval`` signal; say who approved the request. The async
    demo views (``/demo/async/``) start it, signal it and await its result."""
    approval = ctx.receive_signal("approval", timeout=timedelta(days=1))
    return {"request": request, "approved_by": approval}
