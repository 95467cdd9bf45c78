"""W1 on Temporal beside our own engine, in one run: ``python bench/temporal.py [--runs N]``.

W1 is ``bench.w1``: 10 trivial activities in a row. Latency: the median and p90 of 20 runs one
after the other (start to result). Throughput: ``--runs`` runs started at once, runs ended per
second. On Temporal the runs go through the dev server (``temporal server start-dev``, SQLite) and
one worker process (``manage.py workflows_temporal_worker``, 8 activity threads); our engine runs
them on the ``local`` executor (8 threads in this process) over the memory store, so both rows are
measured on the same machine in the same minute. The worker skips the system checks: the bench
also declares ``bench.w1c`` (flow control), which the temporal executor does not run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QUEUE = f"beluga-bench-{uuid.uuid4().hex[:6]}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.temporal_settings")
os.environ["BENCH_TEMPORAL_QUEUE"] = QUEUE


def measure(executor, label: str, runs: int) -> dict[str, float]:
    from beluga_workflows import WorkflowOptions

    for _ in range(3):  # warm-up: connections, imports, caches
        executor.execute("bench.w1", WorkflowOptions(input=10)).result(timeout=60)
    times = []
    for _ in range(20):
        started = time.perf_counter()
        executor.execute("bench.w1", WorkflowOptions(input=10)).result(timeout=60)
        times.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    handles = [executor.execute("bench.w1", WorkflowOptions(input=10)) for _ in range(runs)]
    for handle in handles:
        assert handle.result(timeout=600) == sum(range(10))
    elapsed = time.perf_counter() - started
    row = {"median_ms": statistics.median(times),
           "p90_ms": sorted(times)[int(len(times) * 0.9) - 1], "wf_per_s": runs / elapsed}
    print(f"{label:<28} W1 latency median {row['median_ms']:7.1f} ms  p90 {row['p90_ms']:7.1f} ms"
          f"   throughput {row['wf_per_s']:6.1f} wf/s ({runs} runs)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    import django

    django.setup()
    from django.test.utils import override_settings

    from beluga_workflows import get_executor
    from beluga_workflows.runtimes import reset_executor
    from beluga_workflows.stores import reset_store

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "workflows_temporal_worker", "--task-queue", QUEUE,
         "--skip-checks"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        line = worker.stdout.readline()
        if "polling" not in line:
            sys.exit(f"the Temporal worker did not start: {line}")
        measure(get_executor(), "temporal (dev server)", args.runs)
    finally:
        worker.terminate()
        worker.wait(30)
    with override_settings(BELUGA_WORKFLOWS={
            "STORE": {"BACKEND": "memory", "OPTIONS": {}},
            "EXECUTOR": {"BACKEND": "local", "OPTIONS": {"max_workers": 8}}, "HOOKS": []}):
        reset_executor()
        reset_store()
        measure(get_executor(), "local executor, memory store", args.runs)
        reset_executor()


if __name__ == "__main__":
    main()
