"""The Django tasks (DEP 14, the ``django-tasks`` backport) of the ``django_tasks`` runtime.

Their module paths are what the task backend stores (``beluga_workflows.jobs.run_workflow``...):
the workers of every release answer to them. Each is a hint, safe to run twice (see
``runtimes/django_tasks.py``). A workflow's own exception fails that run, never the task.

- ``run_workflow(workflow_id)``: advance one run as far as it can go now; a near wake-up is
  enqueued again with ``run_after``.
- ``run_activity(workflow_id, run_id, op, attempt, attempts)``: a started activity.
- ``fan_out_event(event_id)``: an accepted event's fan-out.
- ``fire_event_groups()``: the due debounce and batch groups.
- ``sweep_workflows(planned)``: the recovery sweep, which enqueues its successor first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django_tasks import task

from .runtimes import get_executor
from .runtimes._connections import refresh_connections

__all__ = ["fan_out_event", "fire_event_groups", "run_activity", "run_workflow",
           "sweep_workflows"]


def _executor() -> Any:
    # Like a request: drop connections past CONN_MAX_AGE or failing CONN_HEALTH_CHECKS.
    refresh_connections()
    return get_executor()


@task
def run_workflow(workflow_id: str) -> dict[str, Any]:
    """Advance the open run of ``workflow_id``; returns what the activation did."""
    executor = _executor()
    result = executor.run(workflow_id)
    if result.suspended and result.wake_at is not None:
        executor.schedule(workflow_id, at=result.wake_at, queue=result.queue)
    return {"workflow_id": workflow_id, "claimed": result.claimed,
            "status": result.status.value if result.status is not None else None,
            "suspended": result.suspended, "lease_lost": result.lease_lost}


@task
def run_activity(workflow_id: str, run_id: str, op: int, attempt: int = 1,
                 attempts: list | None = None) -> str:
    """Run a started activity (``ctx.start_activity``) and deliver its outcome to its run."""
    return _executor().run_activity(workflow_id, run_id, op, attempt=attempt,
                                    attempts=attempts or [])


@task
def fan_out_event(event_id: str) -> dict[str, Any]:
    """Fan out event ``event_id``: start its triggers' runs, wake and cancel the runs it should."""
    outcome = _executor().fan_out(event_id)
    return {"event_id": event_id, "fanned_out": outcome is not None, **(outcome or {})}


@task
def fire_event_groups(limit: int = 100) -> list[str]:
    """Start the runs of the debounce and batch groups that are due; returns their ids."""
    return _executor().fire_groups(limit=limit)


@task
def sweep_workflows(planned: str | None = None, limit: int = 1000) -> int:
    """The recovery sweep planned for ``planned`` (ISO time); returns how many runs it enqueued."""
    executor = _executor()
    if not hasattr(executor, "sweep_now"):  # the site moved to another executor: end the chain
        return len(executor.sweep(limit=limit))
    when = datetime.fromisoformat(planned) if planned else None
    return len(executor.sweep_now(when, limit))
