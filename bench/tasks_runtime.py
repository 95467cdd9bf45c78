"""W1 on the django_tasks executor, beside Celery's in the same bench run (``bench/run.py``).

(Not named django_tasks.py: bench/ is on sys.path when bench/run.py runs, and would shadow it.)

After the Celery workloads, the Celery workers are stopped and 2 ``manage.py db_worker``
processes (the ORM task backend of ``django-tasks-db``, on the same PostgreSQL database, no
broker) take their place; the client enqueues with a ``DjangoTasksExecutor``. The same W1 latency
(sequential runs) and throughput (runs at once) passes are measured. A db_worker polls its queue
when idle: ``--interval`` (here 0.01 s) bounds the latency it adds to a run that finds it idle.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

POLL_INTERVAL = "0.01"


def measure_w1(bench: Any, env: dict[str, str], log_dir: Path, repo: Path, workers: int,
               say: Any, pct: Any, summary: Any) -> dict[str, Any]:
    """Stop the Celery workers, start ``workers`` db_workers, measure W1; their figures."""
    from beluga_workflows.runtimes.django_tasks import DjangoTasksExecutor

    bench.procs.stop()
    worker_env = {**env, "BELUGA_EXECUTOR": "django_tasks"}  # chosen outright: no broker used
    procs = []
    for i in range(workers):
        log = open(log_dir / f"db_worker-{i}.log", "ab")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--no-reload", "--no-startup-delay",
             "--interval", POLL_INTERVAL, "--queue-name", "default", "-v", "0"],
            cwd=repo, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        procs.append(proc)
    celery_executor = bench.executor
    bench.executor = DjangoTasksExecutor(store=bench.store)
    try:
        for k in range(20):  # warm-up: imports, connections
            bench.execute("bench.w1", 10, f"dtw-{k}").result(timeout=60)
        times = bench.w1_sequential("bench.w1", bench.sizes["w1_latency"], "dtl")
        say(f"W1 on django_tasks, latency: median {statistics.median(times):.1f} ms, "
            f"p99 {pct(times, .99):.1f} ms")
        rate = bench.w1_throughput(bench.sizes["w1_throughput"], "dtt",
                                   label="W1 on django_tasks")
    finally:
        bench.executor = celery_executor
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.log.close()  # type: ignore[attr-defined]
    return {"w1_latency_ms": summary(times), "w1_throughput": rate, "workers": workers,
            "poll_interval_s": float(POLL_INTERVAL)}
