"""Demo workflows, discovered at start-up like every installed app's workflows.py."""

from datetime import timedelta

from beluga_workflows import RetryPolicy, WorkflowContext, activity, workflow


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
