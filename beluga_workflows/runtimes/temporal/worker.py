"""The Temporal worker of our workflows: ``BelugaWorkflow`` and the activities, on one task queue.

``python manage.py workflows_temporal_worker`` calls ``run_worker``. Workflow tasks run on the
SDK's own threads; activities (plain sync functions) on a thread pool of ``max_workers``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.workflow import NondeterminismError

from .activities import record_value, run_activity
from .workflow import BelugaWorkflow

__all__ = ["build_worker", "run_worker"]

logger = logging.getLogger("beluga_workflows.temporal")


def build_worker(client: Client, task_queue: str, *, max_workers: int = 8,
                 max_cached_workflows: int | None = None) -> tuple[Worker, ThreadPoolExecutor]:
    """A worker polling ``task_queue`` for every beluga workflow and activity, and its pool.

    ``max_cached_workflows=0`` keeps no run in memory between its workflow tasks: every task
    replays the run's history from the start (what a new worker does after a crash).
    """
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="beluga-temporal-act")
    options: dict[str, Any] = {}
    if max_cached_workflows is not None:
        options["max_cached_workflows"] = max_cached_workflows
    worker = Worker(
        client, task_queue=task_queue, workflows=[BelugaWorkflow],
        activities=[run_activity, record_value], activity_executor=pool,
        max_concurrent_activities=max_workers, max_concurrent_local_activities=max_workers,
        workflow_runner=UnsandboxedWorkflowRunner(),
        workflow_failure_exception_types=[NondeterminismError], **options)
    return worker, pool


async def _serve(target: str, namespace: str, task_queue: str, ready: Any, **options: Any) -> None:
    client = await Client.connect(target, namespace=namespace)
    worker, pool = build_worker(client, task_queue, **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with worker:
            if ready is not None:
                ready()
            await stop.wait()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_worker(target: str, namespace: str, task_queue: str, *, ready: Any = None,
               **options: Any) -> None:
    """Run the worker until SIGINT/SIGTERM (then finish in-flight tasks and return).

    ``ready``: called once the worker polls its task queue.
    """
    asyncio.run(_serve(target, namespace, task_queue, ready, **options))
