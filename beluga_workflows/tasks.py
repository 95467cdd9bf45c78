"""Celery tasks of beluga_workflows, found by ``app.autodiscover_tasks()``.

- ``beluga_workflows.run_workflow(workflow_id)``: advance one run as far as it can go now. Late
  acknowledgement and reject-on-worker-lost: a message is only acknowledged once the activation
  returned, and a pool process killed mid-run gives its message back to the broker. Whatever the
  broker does, the run's lease in the store decides who advances it, and the periodic sweep picks
  up any run whose worker died.
- ``beluga_workflows.fan_out_event(event_id)``: an accepted event's fan-out (the runs its
  triggers start, the waiting runs it wakes, the runs it cancels); late acknowledgement too, and
  idempotent: done twice, it starts, wakes and cancels nothing twice. The first run it wakes is
  advanced by the same task, right after (its wake-up is in the store: lost with the worker, the
  sweep sends it).
- ``beluga_workflows.recover_workflows()``: the sweep (run it from Celery beat every
  ``BELUGA_WORKFLOWS["RECOVER_INTERVAL"]`` seconds; also run once whenever a worker starts).

A workflow's own exception fails that run (the runner records it), never the task or the worker.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_init, worker_ready
from django.conf import settings
from django.db import connections

from .runtimes import get_executor
from .runtimes._connections import refresh_connections
from .runtimes.celery import ACTIVITY_TASK, FAN_OUT_TASK, FIRE_GROUPS_TASK, RECOVER_TASK, RUN_TASK
from .schedules.celery import fire_schedule

__all__ = ["fan_out_event", "fire_event_groups", "fire_schedule", "recover_workflows",
           "run_activity", "run_workflow"]

logger = logging.getLogger("beluga_workflows.tasks")


# Whether this process has made the store's connection persistent (done once per process).
_connection_kept = False


def keep_store_connection() -> None:
    """Keep the store's database connection open across activations in this worker process.

    Django's default ``CONN_MAX_AGE = 0`` closes a connection at the end of each request, and
    Celery's Django fixup does the same after each task: a worker would reconnect for every
    activation (on PostgreSQL that halves throughput). A worker makes that alias's connection
    persistent instead, with ``CONN_HEALTH_CHECKS`` on so that a broken one (a server restart) is
    replaced before the next activation uses it. A site's own positive ``CONN_MAX_AGE`` is kept.
    """
    global _connection_kept
    _connection_kept = True
    alias = get_executor().store.database_alias
    if alias is None:
        return
    settings_dict = connections[alias].settings_dict
    if settings_dict.get("CONN_MAX_AGE") == 0:
        settings_dict["CONN_MAX_AGE"] = None
        settings_dict["CONN_HEALTH_CHECKS"] = True
        logger.info("keeping the connection of database %r open across activations "
                    "(its CONN_MAX_AGE is 0)", alias)


# Celery's Django fixup closes every connection before and after each task unless
# CELERY_DB_REUSE_MAX is set; a worker then recycles its connections every 2 x this many tasks.
DB_REUSE_MAX = 1000


@worker_init.connect(weak=False)
def keep_connections_across_tasks(sender: Any = None, **kwargs: Any) -> None:
    """Stop Celery's Django fixup from closing the database connections around every task.

    Without ``CELERY_DB_REUSE_MAX`` in the site's settings (Celery's default), the fixup closes
    them before and after each task, whatever ``CONN_MAX_AGE`` says: every activation reconnects,
    and on PostgreSQL loses its prepared statements. This runs after the fixup's own
    ``worker_init`` handler, in the worker's main process (the pool processes inherit it), and
    gives the fixup ``DB_REUSE_MAX``. A site's own ``CELERY_DB_REUSE_MAX`` is kept.
    """
    app = getattr(sender, "app", None)
    for fixup in getattr(app, "_fixups", None) or ():
        worker_fixup = getattr(fixup, "_worker_fixup", None)
        if worker_fixup is not None and getattr(worker_fixup, "db_reuse_max", 0) in (None, 0):
            worker_fixup.db_reuse_max = DB_REUSE_MAX
            logger.info("Celery's Django fixup would close the database connections after every "
                        "task: reusing them for up to %d tasks", 2 * DB_REUSE_MAX)


@shared_task(name=RUN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_workflow(workflow_id: str) -> dict[str, Any]:
    """Advance the open run of ``workflow_id``; a near wake-up is sent again with a countdown.

    Returns what the activation did (``claimed`` is False when the run was ended, missing or
    leased by another worker, which then advances it).
    """
    if not _connection_kept:
        keep_store_connection()
    # Like a request: drop connections past CONN_MAX_AGE or failing CONN_HEALTH_CHECKS (looked at
    # without a round trip where the socket tells: runtimes/_connections.py), keep the rest
    # (Celery's Django fixup closes them all per task unless CELERY_DB_REUSE_MAX is set).
    refresh_connections()
    return _advance(get_executor(), workflow_id)


def _advance(executor: Any, workflow_id: str) -> dict[str, Any]:
    """One activation of ``workflow_id``; a near wake-up is sent again with a countdown."""
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


@shared_task(name=FAN_OUT_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def fan_out_event(event_id: str) -> dict[str, Any]:
    """Fan out event ``event_id``: start its triggers' runs, wake and cancel the runs it should.

    Returns what it did (``fanned_out`` False when the event is not visible, or a workflow it
    triggers is not registered in this worker: the sweep sends it again later).
    """
    if not _connection_kept:
        keep_store_connection()
    refresh_connections()
    executor = get_executor()
    serving = getattr(executor, "serving_in_place", None)
    with serving() if serving is not None else contextlib.nullcontext([]) as kept:
        outcome = executor.fan_out(event_id)
    for workflow_id in kept:  # the first run it woke: advanced here, without a broker trip
        _advance(executor, workflow_id)
    return {"event_id": event_id, "fanned_out": outcome is not None, **(outcome or {})}


@shared_task(name=ACTIVITY_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_activity(workflow_id: str, run_id: str, op: int, attempt: int = 1,
                 attempts: list | None = None) -> str:
    """Run a started activity (``ctx.start_activity``) and deliver its outcome to its run."""
    if not _connection_kept:
        keep_store_connection()
    refresh_connections()
    return get_executor().run_activity(workflow_id, run_id, op, attempt=attempt,
                                       attempts=attempts or [])


@shared_task(name=FIRE_GROUPS_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def fire_event_groups(limit: int = 100) -> list[str]:
    """Start the runs of the debounce and batch groups that are due; returns their ids."""
    if not _connection_kept:
        keep_store_connection()
    refresh_connections()
    return get_executor().fire_groups(limit=limit)


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
    if settings.DEBUG:
        logger.warning(
            "DEBUG = True in this Celery worker: Django keeps the last 9,000 ORM queries of each "
            "connection in memory and times every one, which costs each activation time and the "
            "worker memory; set DEBUG = False for workers")
    try:
        sent = get_executor().recover()
        if sent:
            logger.warning("worker start: sent %d run(s) that were due", len(sent))
    except Exception:
        logger.exception("recovery sweep at worker start failed; the periodic sweep will retry")
    finally:
        # This is the worker's main process: hand no database connection down to pool processes.
        connections.close_all()
