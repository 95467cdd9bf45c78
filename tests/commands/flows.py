"""Workflows the command tests run (names unique to this package)."""

from beluga_workflows import RetryPolicy, WorkflowContext, activity, workflow


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


# While set, step 2 of ``tests.commands.three_steps`` fails (a test clears it to "fix" it).
STEP_TWO_FAILS = {"on": False}
STEP_CALLS: dict[tuple[str, int], int] = {}


@activity(name="tests.commands.step", retry=RetryPolicy(max_attempts=1))
def step(spec: dict) -> str:
    """Counts its calls per ``(key, n)``; step 2 fails while ``STEP_TWO_FAILS["on"]``."""
    key = (spec["key"], spec["n"])
    STEP_CALLS[key] = STEP_CALLS.get(key, 0) + 1
    if spec["n"] == 2 and STEP_TWO_FAILS["on"]:
        raise RuntimeError("step 2 is broken")
    return f"step{spec['n']}"


@workflow(name="tests.commands.three_steps")
def three_steps(ctx: WorkflowContext, key: str = "") -> list:
    """Three activities in a row: one operation per step."""
    return [ctx.execute_activity(step, {"key": key, "n": n}) for n in (1, 2, 3)]
