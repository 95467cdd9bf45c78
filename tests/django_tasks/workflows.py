"""Workflows of the django_tasks integration tests beside the Celery tests' (``tests/celery``):
retries, a failing workflow, a cancellable wait. Attempts are counted in Redis."""

from __future__ import annotations

from beluga_workflows import RetryPolicy, WorkflowContext, activity, workflow
from tests.celery.workflows import client, prefix  # also registers the Celery tests' workflows


def attempts_key(workflow_id: str) -> str:
    return f"{prefix()}:attempts:{workflow_id}"


@activity(name="dt_tests.flaky")
def flaky(data: dict) -> int:
    """Fail the first ``data["fail"]`` attempts, then return the attempt number."""
    attempt = client().incr(attempts_key(data["wf"]))
    if attempt <= data["fail"]:
        raise RuntimeError(f"attempt {attempt} fails")
    return attempt


@workflow(name="dt_tests.retried")
def retried(ctx: WorkflowContext, data: dict) -> int:
    return ctx.execute_activity(flaky, {"wf": ctx.workflow_id, "fail": data["fail"]},
                                retry=RetryPolicy(max_attempts=data.get("max", 5),
                                                  initial_interval=0.2, backoff_coefficient=1.0))


@workflow(name="dt_tests.fails")
def fails(ctx: WorkflowContext, data: dict | None = None) -> None:
    raise ValueError("the workflow's own error")


@workflow(name="dt_tests.waits_forever")
def waits_forever(ctx: WorkflowContext, data: dict | None = None) -> object:
    return ctx.receive_signal("never")
