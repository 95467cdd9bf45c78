"""Workflows the command tests run (names unique to this package)."""

from beluga_workflows import WorkflowContext, workflow


@workflow(name="tests.commands.approval")
def approval(ctx: WorkflowContext, data=None):
    """Waits for an "approval" signal; answers the "stage" query meanwhile."""
    ctx.set_query_handler("stage", lambda: {"stage": "waiting", "input": data})
    decision = ctx.receive_signal("approval")
    return {"input": data, "approval": decision}


@workflow(name="tests.commands.echo")
def echo(ctx: WorkflowContext, data=None):
    return data


@workflow(name="tests.commands.fail")
def fail(ctx: WorkflowContext, data=None):
    raise ValueError("boom\non two lines")


@workflow(name="tests.commands.family")
def family(ctx: WorkflowContext, children: int = 2):
    """Runs ``children`` child runs of ``tests.commands.echo``."""
    return ctx.gather(*[ctx.start_child(echo, n) for n in range(children)])
