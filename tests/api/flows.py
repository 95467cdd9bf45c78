"""Workflows the API tests run (names unique to this package)."""

from beluga_workflows import RetryPolicy, WorkflowContext, activity, workflow
from beluga_workflows.activities import HUMAN_DECISIONS, HumanActivity


@workflow(name="tests.api.approval")
def approval(ctx: WorkflowContext, data=None):
    """Waits for an "approval" signal; answers the "stage" query meanwhile."""
    stage = {"value": "waiting"}
    ctx.set_query_handler("stage", lambda: stage["value"])
    decision = ctx.receive_signal("approval")
    stage["value"] = "approved"
    return {"input": data, "approval": decision}


@workflow(name="tests.api.echo")
def echo(ctx: WorkflowContext, data=None):
    return data


@workflow(name="tests.api.fail")
def fail(ctx: WorkflowContext, data=None):
    raise ValueError("boom")


@workflow(name="tests.api.steps")
def steps(ctx: WorkflowContext, count: int = 0):
    """Records ``count`` side effects: a history of ``count + 2`` events."""
    for i in range(count):
        ctx.side_effect(lambda i=i: i)
    return count


@workflow(name="tests.api.review")
def review(ctx: WorkflowContext, options=None):
    """Asks a person to review a refund ``rounds`` times (default 1; 0: until canceled); returns
    the answers. ``choices`` and ``timeout`` (seconds) configure the request."""
    options = options or {}
    ask = HumanActivity("Approve the refund", "A customer asks for a refund.",
                        choices=options.get("choices") or HUMAN_DECISIONS,
                        timeout=options.get("timeout"))
    rounds = options.get("rounds", 1)
    answers = []
    while not rounds or len(answers) < rounds:
        data = {"order": 42, "amount": "19.90", "round": len(answers) + 1}
        answers.append(ctx.execute_activity(ask, data))
    return answers


@workflow(name="tests.api.family")
def family(ctx: WorkflowContext, children: int = 2):
    """Runs ``children`` child runs of ``tests.api.echo`` and returns their results."""
    return ctx.gather(*[ctx.start_child(echo, n) for n in range(children)])


# While set, step 2 of ``tests.api.three_steps`` fails (a test clears it to "deploy the fix").
STEP_TWO_FAILS = {"on": False}
STEP_CALLS: dict[tuple[str, int], int] = {}


@activity(name="tests.api.step", retry=RetryPolicy(max_attempts=1))
def step(spec: dict) -> str:
    """Counts its calls per ``(key, n)``; step 2 fails while ``STEP_TWO_FAILS["on"]``."""
    key = (spec["key"], spec["n"])
    STEP_CALLS[key] = STEP_CALLS.get(key, 0) + 1
    if spec["n"] == 2 and STEP_TWO_FAILS["on"]:
        raise RuntimeError("step 2 is broken")
    return f"step{spec['n']}"


@workflow(name="tests.api.three_steps")
def three_steps(ctx: WorkflowContext, key: str = "") -> list:
    """Three activities in a row (``step`` 1, 2, 3): a history of one operation per step."""
    return [ctx.execute_activity(step, {"key": key, "n": n}) for n in (1, 2, 3)]
