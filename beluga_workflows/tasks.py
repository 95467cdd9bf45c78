"""Celery tasks of beluga_workflows, found by ``app.autodiscover_tasks()``.

- ``beluga_workflows.run_workflow(workflow_id)``: advance one run as far as it can go now. Late
  acknowledgement and reject-on-worker-lost: a message is only acknowledged once the activation
  returned, and a pool process killed mid-run gives its message back to the broker. Whatever the
  broker does, the run's lease in the store decides who advances it, and the periodic sweep picks
  up any run whose worker died.
- ``beluga_workflows.recover_workflows()``: the sweep (run it from Celery beat every
  ``BELUGA_WORKFLOWS["RECOVER_INTERVAL"]`` seconds; also run once whenever a worker starts).

A workflow's own exception fails that run (the runner records it), never the task or the worker.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.db import close_old_connections

from .runtimes import get_executor
from .runtimes.celery import RECOVER_TASK, RUN_TASK

__all__ = ["recover_workflows", "run_workflow"]

logger = logging.getLogger("beluga_workflows.tasks")


@shared_task(name=RUN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_workflow(workflow_id: str) -> dict[str, Any]:
    """Advance the open run of ``workflow_id``; a near wake-up is sent again with a countdown.

    Returns what the activation did (``claimed`` is False when the run was ended, missing or
    leased by another worker, which then advances it).
    """
    # Like a request: drop connections past CONN_MAX_AGE or failing CONN_HEALTH_CHECKS, keep the
    # rest (Celery's Django fixup closes them all per task unless CELERY_DB_REUSE_MAX is set).
    close_old_connections()
    executor = get_executor()
    result = executor.run(workflow_id)
    if result.suspended and result.wake_at is not None:
        executor.schedule(workflow_id, at=result.wake_at, queue=result.queue)
    return {
        "workflow_id": workflow_id,
        "claimed": result.claimed,
        "status": result.status.value if result.status is not None else None,
        "suspended": result.suspended,
        "lease_lost": result.lease_lost,
    }


@shared_task(name=RECOVER_TASK, ignore_result=True)
def recover_workflows(limit: int = 1000) -> int:
    """Send the runs that are due (timers passed, worker died, message lost); returns how many."""
    sent = get_executor().sweep(limit=limit)
    if sent:
        logger.info("recovery sweep sent %d run(s)", len(sent))
    return len(sent)


@worker_ready.connect(weak=False)
def recover_on_worker_start(sender: Any = None, **kwargs: Any) -> None:
    """Sweep once when a worker starts, so timers that came due while every worker was down fire
    now rather than at the next beat (or never, when no beat runs)."""
    from django.db import connections

    try:
        sent = get_executor().recover()
        if sent:
            logger.warning("worker start: sent %d run(s) that were due", len(sent))
    except Exception:
        logger.exception("recovery sweep at worker start failed; the periodic sweep will retry")
    finally:
        # This is the worker's main process: hand no database connection down to pool processes.
        connections.close_all()
