"""The benchmark: beluga_workflows on PostgreSQL + Redis + Celery against a Celery chain.

Run ``bin/bench`` (it starts PostgreSQL and Redis when they are not running, then runs this file);
``python bench/run.py`` when they are. ``--quick`` for a smaller run. What it does, in one run:

1. drops and creates the PostgreSQL database ``beluga_bench`` (``BENCH_DATABASE_URL``) and migrates
   it; empties Redis database 12 (``BENCH_REDIS_URL``), the broker and result backend of this run;
2. starts Celery beat and 2 worker processes (``--pool threads --concurrency 4`` each: 4 runs in
   flight per process, the README's advice; ``BENCH_POOL=prefork BENCH_CONCURRENCY=1`` for one
   pool process each, as before issue 20) under ``bench.settings``; the baseline tasks run on the
   same ones;
3. measures W1 (10 trivial activities: sequential latency, then 2,000 at once), W1c (the same
   workflow declared with ``Concurrency(1000)``: a slot row taken and freed per run; measured
   alternately with W1 on the same workers, latency interleaved run by run, throughput in
   batches W1, W1c | W1c, W1 | ..., for the ratio of their costs; then a check that every slot
   was freed), W2 (signal sent to workflow completed), W3 (500 durable 1 s sleeps), W4 (event
   sent to the run waiting for it completed: the event's fan-out task, then the run's), W5 (one
   run gathering 100 started activities against 100 runs of one activity each), worker
   memory over 20,000 workflows, the replay of a run with 10,000 recorded steps and the admin
   and API list pages at 100,000 runs, and the baseline (a chain of 10 trivial Celery tasks; a
   1 s countdown for W3); then, when the ``temporal`` extra is installed (and not
   ``--skip-temporal``), W1 on Temporal (``bench/temporal.py``: a dev server the bench starts, one
   worker process; with activities and with local activities);
4. prints one table and writes every figure to ``var/bench/results-<time>.json``.

Times are wall-clock on this machine, so the load of other processes shows in them: the table's
header gives the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/beluga_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
QUEUE = "beluga-bench"
WORKERS = 2

# w1c_*: the W1 / W1c comparison: rounds (each: W1 and W1c, their order alternating), and per
# round and variant that many sequential runs (latency), then that many at once (throughput; at
# most W1c's limit of 1000, so no W1c run ever waits for a slot).
FULL = {"w1_latency": 200, "w1_throughput": 2000, "w1c_rounds": 4, "w1c_latency": 50,
        "w1c_throughput": 500, "w2": 100, "w3": 500, "w4": 100, "w5": 100, "w5_rounds": 3,
        "memory": 20000, "replay_steps": 10000, "list_rows": 100000, "list_requests": 40,
        "temporal_latency": 20, "temporal_throughput": 200}
QUICK = {"w1_latency": 50, "w1_throughput": 400, "w1c_rounds": 4, "w1c_latency": 15,
         "w1c_throughput": 150, "w2": 30, "w3": 100, "w4": 30, "w5": 100, "w5_rounds": 3,
         "memory": 2000,
         "replay_steps": 2000, "list_rows": 20000, "list_requests": 10,
         "temporal_latency": 10, "temporal_throughput": 50}
# What ``--only`` can measure alone.
ONLY = ("w1", "w3", "w5", "baseline_w1", "baseline_w3")
# The workers' pool (Celery's --pool / --concurrency): 4 threads each (README "Production");
# BENCH_POOL=prefork BENCH_CONCURRENCY=1 measures one pool process each (the bench before issue 20).
POOL = os.environ.get("BENCH_POOL", "threads")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
# W1c may cost at most this much more than W1 (the flow-control issue's requirement).
W1C_MAX_RATIO = 1.15


# -- plumbing -----------------------------------------------------------------------------------

def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median": statistics.median(values), "p95": pct(values, 0.95),
            "p99": pct(values, 0.99), "max": max(values)}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise SystemExit(f"bench: timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class LoadSampler:
    """The 1-minute load average, sampled every 2 s while the bench runs (other processes show)."""

    def __init__(self) -> None:
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(2.0):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        self._stop.set()
        values = self.samples or [os.getloadavg()[0]]
        return {"mean": statistics.mean(values), "max": max(values)}


class CpuMeter:
    """CPU time (user + system, from ``/proc/<pid>/stat``) of each kind of process of the bench
    while it runs: the client (this process), the Celery workers' main and pool processes,
    PostgreSQL (every ``postgres`` process: backends, WAL writer, checkpointer...), Redis.

    Sampled every 0.2 s, each process's last reading kept: a process that ends in the window (a
    PostgreSQL backend of a connection Celery's Django fixup recycles every 1,000 tasks) keeps
    what it spent; one that starts in it counts from zero. Divided by the workflows run: CPU ms
    per workflow per kind."""

    TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
    KINDS = ("client", "worker main", "worker pool", "postgres", "redis")

    def __init__(self, procs: Processes) -> None:
        import threading

        self.procs = procs
        self.first: dict[int, tuple[str, int]] = {}
        self.last: dict[int, int] = {}
        self._stop = threading.Event()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _ticks(pid: int) -> int | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)

    @staticmethod
    def _named(*names: str) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if (entry / "comm").read_text().strip() in names:
                        pids.append(int(entry.name))
        return pids

    def _sample(self, first: bool = False) -> None:
        kinds = {"client": [os.getpid()], "worker main": [p.pid for p in self.procs.workers],
                 "worker pool": self.procs.pool_pids(), "postgres": self._named("postgres"),
                 "redis": self._named("redis-server")}
        for kind, pids in kinds.items():
            for pid in pids:
                ticks = self._ticks(pid)
                if ticks is None:
                    continue
                if pid not in self.first:
                    self.first[pid] = (kind, ticks if first else 0)
                self.last[pid] = ticks

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def per_workflow(self, count: int) -> dict[str, float]:
        """Stop sampling; CPU ms per workflow of each kind, and ``total``."""
        self._stop.set()
        self._thread.join()
        self._sample()
        out = dict.fromkeys(self.KINDS, 0.0)
        for pid, (kind, ticks) in self.first.items():
            out[kind] += (self.last[pid] - ticks) * self.TICK_MS / count
        out["total"] = sum(out.values())
        return out


def fmt_cpu(cpu: dict[str, float]) -> str:
    return ", ".join(f"{kind} {ms:.2f}" for kind, ms in cpu.items() if kind != "total") + \
        f" = {cpu['total']:.2f} ms"


def stored_results(results: list, timeout: float) -> list:
    """The values of Celery ``results`` once the result backend (Redis) holds them all, read
    from its keys. Not ``result.get()``: with the threads pool, chains ended before their
    result's subscription was made and ``get()`` waited on it for ever (every result stored)."""
    backend = results[0].backend
    keys = [backend.get_key_for_task(result.id) for result in results]
    deadline = time.monotonic() + timeout
    values: list = []
    while len(values) < len(keys):
        chunk = keys[len(values):len(values) + 500]
        raw = backend.client.mget(chunk)
        ready = list(itertools.takewhile(lambda value: value is not None, raw))
        values.extend(backend.decode_result(value)["result"] for value in ready)
        if len(ready) < len(chunk):
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {len(keys) - len(values)} Celery results did not come "
                                 f"within {timeout:g} s")
            time.sleep(0.01)
    return values


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BELUGA_", "CELERY_")) or k == "CELERY_DB_REUSE_MAX"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "BENCH_QUEUE": QUEUE,
        "BELUGA_EXECUTOR": "celery",
        "BELUGA_STORE": "django",
        "BELUGA_LOG_LEVEL": "ERROR",
        "BELUGA_VAR_DIR": str(REPO / "var" / "bench"),
        "DEBUG": "false",
    })
    return env


def prepare_database(env: dict[str, str]) -> None:
    import environ
    import psycopg

    config = environ.Env.db_url_config(DATABASE_URL)
    name = config["NAME"]
    with psycopg.connect(host=config.get("HOST") or "127.0.0.1", port=config.get("PORT") or 5432,
                         user=config.get("USER") or "postgres",
                         password=config.get("PASSWORD") or None, dbname="postgres",
                         autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if migrate.returncode:
        raise SystemExit(f"bench: migrate failed:\n{migrate.stdout}\n{migrate.stderr}")


def drop_database() -> None:
    import environ
    import psycopg

    config = environ.Env.db_url_config(DATABASE_URL)
    with psycopg.connect(host=config.get("HOST") or "127.0.0.1", port=config.get("PORT") or 5432,
                         user=config.get("USER") or "postgres",
                         password=config.get("PASSWORD") or None, dbname="postgres",
                         autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{config["NAME"]}" WITH (FORCE)')


class Processes:
    """Celery beat and worker processes, each in a process group of its own."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.workers: list[subprocess.Popen] = []
        self.others: list[subprocess.Popen] = []

    def spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.log_dir / log_name, "ab")  # noqa: SIM115 - closed at stop()
        proc = subprocess.Popen([sys.executable, "-m", "celery", "--quiet", "-A", "beluga_project",
                                 *args], cwd=REPO, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        return proc

    def start(self, redis_client) -> None:
        from bench.workflows import READY_KEY

        names = [f"bench-w{i}-{uuid.uuid4().hex[:6]}@localhost" for i in range(WORKERS)]
        for name in names:
            self.workers.append(self.spawn(
                ["worker", "--pool", POOL, "--concurrency", str(CONCURRENCY), "-n", name,
                 "-Q", QUEUE,
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--loglevel", "WARNING"], f"{name.split('@')[0]}.log"))
        self.others.append(self.spawn(["beat", "-s", str(self.log_dir / "beat-schedule"),
                                       "--loglevel", "WARNING"], "beat.log"))
        wait_for(lambda: all(redis_client.sismember(READY_KEY, n) for n in names), 90,
                 f"the workers to start (logs in {self.log_dir})", interval=0.1)

    def restart(self, env: dict[str, str], log_dir: Path, redis_client) -> None:
        """Stop every process, then start them again with ``env``, logging under ``log_dir``."""
        from bench.workflows import READY_KEY

        self.stop()
        self.workers, self.others = [], []
        redis_client.delete(READY_KEY)
        self.env = env
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.start(redis_client)

    def pool_pids(self) -> list[int]:
        """The pool (child) processes of the workers: where the workflows run."""
        pids = []
        for proc in self.workers:
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()
                pids.extend(int(p) for p in text.split())
        return pids

    def rss_mb(self) -> dict[str, float]:
        """Resident memory (MB) of each worker's main and pool process."""
        out = {}
        for kind, pids in (("main", [p.pid for p in self.workers]), ("pool", self.pool_pids())):
            for pid in pids:
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            out[f"{kind}-{pid}"] = int(line.split()[1]) / 1024
        return out

    def stop(self) -> None:
        for proc in self.workers + self.others:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers + self.others:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
            proc.log.close()  # type: ignore[attr-defined]


# -- the workloads ------------------------------------------------------------------------------

class Bench:
    def __init__(self, sizes: dict[str, int], procs: Processes) -> None:
        from beluga_workflows import get_executor

        self.sizes = sizes
        self.procs = procs
        self.executor = get_executor()
        self.store = self.executor.store
        self.results: dict[str, Any] = {}
        self.last_submitted_s = 0.0  # how long the last w1_throughput took to submit its runs
        self.count_statements = False  # the workers count their statements (--count-statements)

    def execute(self, workflow_type: str, data: Any, workflow_id: str):
        from beluga_workflows import WorkflowOptions

        return self.executor.execute(workflow_type, WorkflowOptions(id=workflow_id, input=data))

    def ended_span(self, id_prefix: str, since: float) -> tuple[int, float]:
        """How many runs of ``id_prefix`` ended, and seconds from ``since`` (epoch) to the last end."""
        from django.db.models import Count, Max

        from beluga_workflows.models import WorkflowState

        row = (WorkflowState.objects.filter(workflow_id__startswith=id_prefix)
               .exclude(status="running").aggregate(n=Count("run_id"), last=Max("ended_at")))
        last = row["last"].timestamp() if row["last"] else since
        return row["n"], last - since

    def wait_ended(self, id_prefix: str, count: int, timeout: float) -> None:
        from beluga_workflows import WorkflowFilter

        flt = WorkflowFilter(workflow_id_prefix=id_prefix)

        def done() -> bool:
            open_runs = self.store.count(WorkflowFilter(status="running", workflow_id_prefix=id_prefix))
            return open_runs == 0 and self.store.count(flt) == count

        wait_for(done, timeout, f"{count} runs {id_prefix}* to end", interval=0.02)
        failed = count - self.store.count(WorkflowFilter(status="completed",
                                                         workflow_id_prefix=id_prefix))
        if failed:
            raise SystemExit(f"bench: {failed} runs {id_prefix}* did not complete")

    # W1 ---------------------------------------------------------------------------------------

    def w1_sequential(self, workflow_type: str, n: int, id_prefix: str) -> list[float]:
        """``n`` runs one after the other: ms from start to result of each."""
        times = []
        for k in range(n):
            started = time.perf_counter()
            self.execute(workflow_type, 10, f"{id_prefix}-{k:05d}").result(timeout=60)
            times.append((time.perf_counter() - started) * 1000)
        return times

    def warm_up(self) -> None:
        """20 W1 runs, one after the other: connections, imports, caches."""
        for k in range(20):
            self.execute("bench.w1", 10, f"w1w-{k}").result(timeout=60)

    def w1_latency(self) -> None:
        n = self.sizes["w1_latency"]
        self.warm_up()
        times = self.w1_sequential("bench.w1", n, "w1l")
        self.results["w1_latency_ms"] = summary(times)
        say(f"W1 latency: median {statistics.median(times):.1f} ms, p99 {pct(times, .99):.1f} ms")

    def w1_throughput(self, count: int, id_prefix: str, workflow_type: str = "bench.w1",
                      label: str = "W1", after_submit: Callable[[], None] | None = None) -> float:
        started = time.time()
        for k in range(count):
            self.execute(workflow_type, 10, f"{id_prefix}-{k:06d}")
        submitted = time.time() - started
        self.last_submitted_s = submitted
        if after_submit is not None:
            after_submit()
        self.wait_ended(id_prefix, count, timeout=max(120, count / 5))
        _, span = self.ended_span(id_prefix, started)
        rate = count / span
        say(f"{label} throughput: {count} workflows in {span:.2f} s = {rate:.0f} wf/s "
            f"(submitted in {submitted:.2f} s)")
        return rate

    def w1_throughput_and_cpu(self) -> None:
        """W1 throughput, and the CPU each kind of process spent per workflow meanwhile."""
        count = self.sizes["w1_throughput"]
        meter = CpuMeter(self.procs)
        self.results["w1_throughput"] = self.w1_throughput(count, "w1t")
        self.results["w1_cpu_ms"] = meter.per_workflow(count)
        say(f"W1 CPU per workflow (ms): {fmt_cpu(self.results['w1_cpu_ms'])}")

    def w1(self) -> None:
        """``--only w1``: W1 latency, throughput and CPU per workflow."""
        self.w1_latency()
        self.w1_throughput_and_cpu()

    def w1_concurrency(self) -> None:
        """W1c (``bench.w1c``: W1's body with ``Concurrency(1000)``) against plain W1, measured
        alternately on the same workers. Each round: ``w1c_latency`` sequential runs of each,
        interleaved run by run (W1, W1c, W1c, W1, ...), then ``w1c_throughput`` at once of W1,
        then of W1c (of W1c then W1 when the round is odd). Latencies are the medians of all the
        runs, throughputs the medians of the rounds, so a slow minute of the machine hits both
        variants; at the end no ``ConcurrencySlot`` (nor ``ConcurrencyWaiter``) row may be
        left."""
        from beluga_workflows.models import ConcurrencySlot, ConcurrencyWaiter
        from bench.workflows import W1C_LIMIT

        rounds = self.sizes["w1c_rounds"]
        n, count = self.sizes["w1c_latency"], self.sizes["w1c_throughput"]
        if count > W1C_LIMIT:
            raise SystemExit(f"bench: w1c_throughput {count} > the W1c limit {W1C_LIMIT}: "
                             "runs would wait for slots")
        phase_started = time.monotonic()
        for k in range(20):  # warm-up of the new type (W1's was warmed up before)
            self.execute("bench.w1c", 10, f"w1cw-{k}").result(timeout=60)
        types = {"W1": "bench.w1", "W1c": "bench.w1c"}
        latency: dict[str, list[float]] = {v: [] for v in types}
        round_medians: dict[str, list[float]] = {v: [] for v in types}
        rates: dict[str, list[float]] = {v: [] for v in types}
        submits: dict[str, list[float]] = {v: [] for v in types}
        slots_open: list[int] = []
        orders = []
        for r in range(rounds):
            order = ("W1", "W1c") if r % 2 == 0 else ("W1c", "W1")
            orders.append(", ".join(order))
            times: dict[str, list[float]] = {v: [] for v in types}
            for k in range(n):  # latency: interleaved run by run
                for variant in order if k % 2 == 0 else order[::-1]:
                    times[variant] += self.w1_sequential(
                        types[variant], 1, f"cmp{r}-{variant.lower()}-l{k:05d}")
            for variant in order:
                latency[variant] += times[variant]
                round_medians[variant].append(statistics.median(times[variant]))
            for variant in order:
                tag = f"cmp{r}-{variant.lower()}"
                peek = None
                if variant == "W1c":  # the runs do hold slots while open
                    def peek() -> None:
                        slots_open.append(ConcurrencySlot.objects.count())
                rates[variant].append(self.w1_throughput(
                    count, f"{tag}-t", types[variant], f"{variant} (round {r + 1}/{rounds}, "
                    f"latency median {statistics.median(times[variant]):.1f} ms)",
                    after_submit=peek))
                submits[variant].append(self.last_submitted_s)
        slots_after = ConcurrencySlot.objects.count()
        waiters_after = ConcurrencyWaiter.objects.count()
        figures: dict[str, Any] = {}
        for variant in types:
            figures[variant] = {
                "latency_ms": summary(latency[variant]),
                "latency_round_medians_ms": round_medians[variant],
                "throughput_rounds": rates[variant],
                "throughput_median": statistics.median(rates[variant]),
                "throughput_best": max(rates[variant]),
                "submitted_s_rounds": submits[variant],
            }
        w1, w1c = figures["W1"], figures["W1c"]
        result = {
            "rounds": rounds, "orders": orders, "latency_runs": n, "throughput_runs": count,
            "limit": W1C_LIMIT, **figures,
            # The cost of a workflow is the time it takes: 1 / throughput.
            "cost_ratio": w1["throughput_median"] / w1c["throughput_median"],
            "cost_ratio_best": w1["throughput_best"] / w1c["throughput_best"],
            "cost_ratio_rounds": [a / b for a, b in zip(rates["W1"], rates["W1c"], strict=True)],
            "latency_ratio_rounds": [b / a for a, b in zip(round_medians["W1"],
                                                           round_medians["W1c"], strict=True)],
            "latency_ratio": w1c["latency_ms"]["median"] / w1["latency_ms"]["median"],
            "slots_open_after_submit": slots_open,
            "slots_after": slots_after, "waiters_after": waiters_after,
            "elapsed_s": time.monotonic() - phase_started,
        }
        self.results["w1c"] = result
        say(f"W1c = W1 + Concurrency({W1C_LIMIT}): {w1c['throughput_median']:.0f} wf/s, "
            f"{w1c['latency_ms']['median']:.1f} ms median; W1 alternated with it: "
            f"{w1['throughput_median']:.0f} wf/s, {w1['latency_ms']['median']:.1f} ms; cost "
            f"{result['cost_ratio']:.2f}x W1's (latency {result['latency_ratio']:.2f}x); "
            f"ConcurrencySlot rows left: {slots_after} (waiters {waiters_after}); "
            f"{result['elapsed_s']:.0f} s")

    def baseline_w1(self) -> None:
        from celery import chain

        from bench.workflows import noop

        def one():
            return chain(noop.s(0), *[noop.s() for _ in range(9)]).apply_async()

        for _ in range(20):
            one().get(timeout=60)
        times = []
        for _ in range(self.sizes["w1_latency"]):
            started = time.perf_counter()
            one().get(timeout=60)
            times.append((time.perf_counter() - started) * 1000)
        self.results["baseline_w1_latency_ms"] = summary(times)
        count = self.sizes["w1_throughput"]
        started = time.time()
        pending = [one() for _ in range(count)]
        stored_results(pending, 600)
        span = time.time() - started
        self.results["baseline_w1_throughput"] = count / span
        say(f"baseline W1: median {statistics.median(times):.1f} ms, p99 {pct(times, .99):.1f} ms, "
            f"{count / span:.0f} chains/s")

    # W2 ---------------------------------------------------------------------------------------

    def w2(self) -> None:
        from beluga_workflows import Signal
        from beluga_workflows.models import WorkflowState

        def waiting(workflow_id: str) -> bool:
            return WorkflowState.objects.filter(workflow_id=workflow_id, wait_kind="signal",
                                                lease_owner="").exists()

        times = []
        for k in range(self.sizes["w2"] + 5):
            workflow_id = f"w2-{k:05d}"
            handle = self.execute("bench.w2", None, workflow_id)
            wait_for(lambda wid=workflow_id: waiting(wid), 30, f"{workflow_id} to wait",
                     interval=0.002)
            started = time.perf_counter()
            self.executor.signal(workflow_id, Signal(name="go", payload=k))
            assert handle.result(timeout=30) == k
            if k >= 5:  # the first few warm up
                times.append((time.perf_counter() - started) * 1000)
        self.results["w2_ms"] = summary(times)
        say(f"W2 signal -> completed: median {statistics.median(times):.1f} ms, "
            f"p99 {pct(times, .99):.1f} ms")

    # W4 ---------------------------------------------------------------------------------------

    def w4(self) -> None:
        """An event sent (``send_event``) to the run waiting for it, until that run completed."""
        from beluga_workflows import Event
        from beluga_workflows.models import WorkflowState

        def waiting(workflow_id: str) -> bool:
            return WorkflowState.objects.filter(workflow_id=workflow_id, wait_kind="event",
                                                lease_owner="").exists()

        times = []
        for k in range(self.sizes["w4"] + 5):
            workflow_id = f"w4-{k:05d}"
            handle = self.execute("bench.w4", {"data": {"k": k}}, workflow_id)
            wait_for(lambda wid=workflow_id: waiting(wid), 30, f"{workflow_id} to wait",
                     interval=0.002)
            started = time.perf_counter()
            self.executor.send_event(Event("bench/paid", {"k": k}))
            assert handle.result(timeout=30) == {"k": k}
            if k >= 5:  # the first few warm up
                times.append((time.perf_counter() - started) * 1000)
        self.results["w4_ms"] = summary(times)
        say(f"W4 event sent -> waiting run completed: median {statistics.median(times):.1f} ms, "
            f"p99 {pct(times, .99):.1f} ms")

    # W5 ---------------------------------------------------------------------------------------

    def w5(self) -> None:
        """One run fanning out ``w5`` trivial activities and gathering them, against ``w5`` runs
        of one activity each, started at once: total times, alternated over ``w5_rounds``. With
        ``--count-statements``, also the SQL statements the workers sent for each."""
        n = self.sizes["w5"]
        fan, single = [], []
        fan_sql, single_sql = [], []
        for round_ in range(self.sizes["w5_rounds"]):
            before = self.statements()
            started = time.perf_counter()
            handle = self.execute("bench.w5", n, f"w5-{round_}")
            assert handle.result(timeout=300) == sum(range(n))
            fan.append(time.perf_counter() - started)
            middle = self.statements()
            started = time.perf_counter()
            handles = [self.execute("bench.w5_one", i, f"w5-one-{round_}-{i:04d}")
                       for i in range(n)]
            for handle in handles:
                handle.result(timeout=300)
            single.append(time.perf_counter() - started)
            if before is not None:
                after = self.statements()
                fan_sql.append(self.counted(before, middle))
                single_sql.append(self.counted(middle, after))
        self.results["w5"] = {"fan_out_s": statistics.median(fan),
                              "single_s": statistics.median(single),
                              "rounds_fan_out_s": fan, "rounds_single_s": single}
        say(f"W5 one run gathering {n} started activities: median {statistics.median(fan):.2f} s; "
            f"{n} runs of one activity: {statistics.median(single):.2f} s = "
            f"{statistics.median(fan) / statistics.median(single):.2f}x "
            f"(rounds: {', '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(fan, single, strict=True))})")
        if fan_sql:
            self.results["w5"].update(statements_fan_out=fan_sql, statements_single=single_sql)
            for label, counts in (("one W5 run", fan_sql), (f"{n} runs of one activity", single_sql)):
                say(f"W5 statements of {label} (per round): "
                    f"{', '.join(str(c.get('total', 0)) for c in counts)}; last round by kind: "
                    f"{', '.join(f'{k} {v}' for k, v in sorted(counts[-1].items()) if k != 'total')}")

    def statements(self) -> dict[str, int] | None:
        """The workers' statement counts so far (``--count-statements``), else ``None``."""
        if not self.count_statements:
            return None
        import redis

        from bench.workflows import STATEMENTS_KEY

        time.sleep(0.3)  # the workers' last statements (after the run's end) are counted
        raw = redis.Redis.from_url(REDIS_URL).hgetall(STATEMENTS_KEY)
        return {k.decode(): int(v) for k, v in raw.items()}

    @staticmethod
    def counted(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}

    # W3 ---------------------------------------------------------------------------------------

    def w3(self) -> None:
        from beluga_workflows.models import HistoryEvent

        count = self.sizes["w3"]
        started = time.time()
        for k in range(count):
            self.execute("bench.w3", 1.0, f"w3-{k:05d}")
        submitted = time.time() - started
        self.wait_ended("w3-", count, timeout=120)
        _, total = self.ended_span("w3-", started)
        due = dict(HistoryEvent.objects.filter(run__workflow_id__startswith="w3-",
                                               type="timer_started")
                   .values_list("run_id", "fire_at"))
        fired = dict(HistoryEvent.objects.filter(run__workflow_id__startswith="w3-",
                                                 type="timer_fired")
                     .values_list("run_id", "timestamp"))
        overshoot = [(fired[r] - due[r]).total_seconds() * 1000 for r in due]
        self.results["w3_total_s"] = total
        self.results["w3_overshoot_ms"] = summary(overshoot)
        say(f"W3: {count} x 1 s sleep in {total:.2f} s (submitted in {submitted:.2f} s), "
            f"overshoot median {statistics.median(overshoot):.0f} ms, "
            f"p99 {pct(overshoot, .99):.0f} ms")

    def baseline_w3(self) -> None:
        from bench.workflows import wake

        count = self.sizes["w3"]
        started = time.time()
        sent = []
        for _ in range(count):
            due = time.time() + 1.0
            sent.append((due, wake.apply_async(countdown=1.0)))
        ran = list(zip(stored_results([result for _, result in sent], 120),
                       [due for due, _ in sent], strict=True))
        total = max(r for r, _ in ran) - started
        overshoot = [(r - due) * 1000 for r, due in ran]
        self.results["baseline_w3_total_s"] = total
        self.results["baseline_w3_overshoot_ms"] = summary(overshoot)
        say(f"baseline W3: {total:.2f} s, overshoot median {statistics.median(overshoot):.0f} ms, "
            f"p99 {pct(overshoot, .99):.0f} ms")

    # memory -----------------------------------------------------------------------------------

    def memory(self, already: int) -> None:
        before = self.results["rss_before_mb"]
        remaining = max(self.sizes["memory"] - already, 0)
        started = time.time()
        batch, k = 2000, 0
        while k < remaining:
            size = min(batch, remaining - k)
            self.w1_throughput(size, f"mem{k // batch:03d}")
            k += size
        after = self.procs.rss_mb()
        self.results["rss_after_mb"] = after
        self.results["memory_workflows"] = already + remaining
        self.results["memory_sustained_wf_s"] = remaining / (time.time() - started) if remaining else None
        growth = {k: after.get(k, 0) - v for k, v in before.items()}
        self.results["rss_growth_mb"] = growth
        say(f"worker RSS before {fmt_rss(before)} after {fmt_rss(after)} MB "
            f"over {already + remaining} workflows")

    # replay -----------------------------------------------------------------------------------

    def replay(self) -> None:
        from django.db import transaction

        from beluga_workflows.models import HistoryEvent as EventRow
        from beluga_workflows.stores.django.rows import event_row, run_row
        from beluga_workflows.types import EventType, HistoryEvent, WorkflowState

        steps = self.sizes["replay_steps"]
        times = []
        for k in range(3):
            now = datetime.now(timezone.utc)
            # No wake_at: no worker or sweep picks it up; it is run here, in this process.
            state = WorkflowState(workflow_id=f"replay-{k}", run_id=uuid.uuid4().hex,
                                  workflow_type="bench.w1", input=steps, created_at=now,
                                  updated_at=now)
            events = [HistoryEvent(id=1, type=EventType.WORKFLOW_STARTED, timestamp=now,
                                   activity_name="bench.w1", input=steps)]
            for i in range(steps):
                at = now + timedelta(microseconds=i)
                events.append(HistoryEvent(id=2 * i + 2, type=EventType.ACTIVITY_STARTED,
                                           timestamp=at, activity_name="bench.step", input=i,
                                           op=i + 1, attempt=1))
                events.append(HistoryEvent(id=2 * i + 3, type=EventType.ACTIVITY_COMPLETED,
                                           timestamp=at, activity_name="bench.step", result=i,
                                           op=i + 1, attempt=1, duration=0.0))
            state.history = events
            with transaction.atomic():
                run_row(state, 1).save(force_insert=True)
                EventRow.objects.bulk_create([event_row(state.run_id, e) for e in events],
                                             batch_size=2000)
            started = time.perf_counter()
            result = self.executor.run(state.workflow_id)
            times.append(time.perf_counter() - started)
            final = self.store.load(state.workflow_id, with_history=False)
            assert result.claimed and final.status.value == "completed", (result, final.error)
            assert final.result == sum(range(steps))
        self.results["replay_s"] = summary(times)
        say(f"replay of {steps} recorded steps: median {statistics.median(times):.3f} s, "
            f"max {max(times):.3f} s")

    # lists ------------------------------------------------------------------------------------

    def lists(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client
        from django.urls import reverse

        from beluga_workflows.models import WorkflowState

        target = self.sizes["list_rows"]
        existing = WorkflowState.objects.count()
        fill = max(target - existing, 0)
        table = WorkflowState._meta.db_table
        with connection.cursor() as cursor:
            # Bulk rows: mostly completed, some failed, a few open ones waiting for a signal.
            cursor.execute(f"""
                INSERT INTO {table} (run_id, workflow_id, workflow_type, status, input, result,
                    error, created_at, updated_at, ended_at, deadline, queue, lease_owner,
                    lease_expires_at, version, wake_seq, wake_at, wait_kind, wait_name,
                    wait_until, cancel_requested, last_event_id, parent_id)
                SELECT md5('bulk' || g), 'bulk-' || lpad(g::text, 7, '0'),
                    (ARRAY['orders.process', 'reports.build', 'bench.w1'])[1 + g %% 3],
                    CASE WHEN g %% 50 = 0 THEN 'running' WHEN g %% 17 = 0 THEN 'failed'
                         ELSE 'completed' END,
                    jsonb_build_object('n', g), CASE WHEN g %% 50 = 0 THEN NULL ELSE to_jsonb(g) END,
                    NULL, now() - make_interval(secs => g), now() - make_interval(secs => g),
                    CASE WHEN g %% 50 = 0 THEN NULL ELSE now() - make_interval(secs => g) END,
                    NULL, '', '', NULL, 3, 0, NULL,
                    CASE WHEN g %% 50 = 0 THEN 'signal' ELSE '' END,
                    CASE WHEN g %% 50 = 0 THEN 'approval' ELSE '' END, NULL, false, 3, ''
                FROM generate_series(1, %s) AS g""", [fill])
            cursor.execute(f"ANALYZE {table}")
        total = WorkflowState.objects.count()
        user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
        client = Client()
        client.force_login(user)
        pages = {
            "admin_list": reverse("admin:beluga_workflows_workflowstate_changelist"),
            "admin_list_status": reverse("admin:beluga_workflows_workflowstate_changelist")
            + "?status=running",
            "api_list": "/api/workflows/",
            "api_list_status": "/api/workflows/?status=running",
        }
        for key, url in pages.items():
            for _ in range(3):
                assert client.get(url).status_code == 200, url
            times = []
            for _ in range(self.sizes["list_requests"]):
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            self.results[f"{key}_ms"] = summary(times)
            say(f"{key} at {total} runs: median {statistics.median(times):.1f} ms, "
                f"p95 {pct(times, .95):.1f} ms")
        self.results["list_rows"] = total


def fmt_rss(rss: dict[str, float]) -> str:
    return "/".join(f"{v:.0f}" for _, v in sorted(rss.items()))


# -- the table ------------------------------------------------------------------------------------

def table(r: dict[str, Any], sizes: dict[str, int]) -> str:
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f} ms"

    def ratio(ours: float | None, base: float | None, higher_is_better: bool = False) -> str:
        if ours is None or base is None or not base or not ours:
            return "-"
        return f"{(ours / base):.2f}x" + (" (higher is better)" if higher_is_better else "")

    def met(ok: bool) -> str:
        return "yes" if ok else "NO"

    rows = []
    w1, bw1 = r["w1_latency_ms"], r.get("baseline_w1_latency_ms")
    rows.append(["W1 latency (10 steps, start -> result)", ms(w1["median"]), ms(w1["p99"]), "-",
                 "median <= 12 ms", f"{ms(bw1['median'])} / p99 {ms(bw1['p99'])}" if bw1 else "-",
                 ratio(w1["median"], bw1 and bw1["median"]), met(w1["median"] <= 12)])
    tp, btp = r["w1_throughput"], r.get("baseline_w1_throughput")
    rows.append([f"W1 throughput ({sizes['w1_throughput']} wf, 2 workers)", "-", "-",
                 f"{tp:.0f} wf/s", ">= 150 wf/s", f"{btp:.0f} wf/s" if btp else "-",
                 ratio(tp, btp, True), met(tp >= 150)])
    if r.get("memory_sustained_wf_s"):
        rows.append([f"W1 throughput sustained ({r['memory_workflows']} wf)", "-", "-",
                     f"{r['memory_sustained_wf_s']:.0f} wf/s", ">= 150 wf/s", "-", "-",
                     met(r["memory_sustained_wf_s"] >= 150)])
    c = r.get("w1c")
    if c:
        cw1, cw1c = c["W1"], c["W1c"]
        alternated = f"{c['rounds']} rounds alternated"
        rows.append([f"W1 latency, {alternated} with W1c ({c['rounds']} x {c['latency_runs']})",
                     ms(cw1["latency_ms"]["median"]), ms(cw1["latency_ms"]["p99"]), "-", "-",
                     "-", "-", "-"])
        rows.append([f"W1c latency (W1 + Concurrency({c['limit']}))",
                     ms(cw1c["latency_ms"]["median"]), ms(cw1c["latency_ms"]["p99"]), "-",
                     f"median <= {W1C_MAX_RATIO:.2f}x W1's", "-", "-",
                     f"{met(c['latency_ratio'] <= W1C_MAX_RATIO)} ({c['latency_ratio']:.2f}x)"])
        rows.append([f"W1 throughput, {alternated} with W1c ({c['rounds']} x "
                     f"{c['throughput_runs']} wf)", "-", "-",
                     f"{cw1['throughput_median']:.0f} wf/s", "-", "-", "-", "-"])
        rows.append([f"W1c throughput (W1 + Concurrency({c['limit']}))", "-", "-",
                     f"{cw1c['throughput_median']:.0f} wf/s",
                     f"cost <= {W1C_MAX_RATIO:.2f}x W1's", "-", "-",
                     f"{met(c['cost_ratio'] <= W1C_MAX_RATIO)} ({c['cost_ratio']:.2f}x)"])
        rows.append(["ConcurrencySlot rows left after W1c", str(c["slots_after"]), "-", "-",
                     "0 (all freed)", "-", "-", met(c["slots_after"] == 0
                                                    and c["waiters_after"] == 0)])
    cpu = r.get("w1_cpu_ms")
    if cpu:
        rows.append([f"W1 CPU per workflow ({sizes['w1_throughput']} wf, all processes)", "-", "-",
                     f"{cpu['total']:.2f} ms", "<= 7 ms", "-", "-", met(cpu["total"] <= 7)])
        pools = ("worker main", "worker pool") if POOL == "prefork" else ("worker main",)
        for kind in ("client", *pools, "postgres", "redis"):
            rows.append([f"  of which {kind}", "-", "-", f"{cpu[kind]:.2f} ms", "-", "-", "-",
                         "-"])
    w2 = r["w2_ms"]
    rows.append(["W2 signal sent -> completed", ms(w2["median"]), ms(w2["p99"]), "-",
                 "median <= 10 ms", "- (no signals)", "-", met(w2["median"] <= 10)])
    w4 = r.get("w4_ms")
    if w4:
        rows.append(["W4 event sent -> waiting run completed", ms(w4["median"]), ms(w4["p99"]),
                     "-", "median, p99 <= 15 ms", "- (no events)", "-",
                     met(w4["median"] <= 15 and w4["p99"] <= 15)])
    w5 = r.get("w5")
    if w5:
        rows.append([f"W5 one run gathering {sizes['w5']} started activities", "-", "-",
                     f"{w5['fan_out_s']:.2f} s", f"<= 1.5x {sizes['w5']} runs of 1 activity",
                     f"{w5['single_s']:.2f} s ({sizes['w5']} runs)",
                     ratio(w5["fan_out_s"], w5["single_s"]),
                     met(w5["fan_out_s"] <= 1.5 * w5["single_s"])])
    w3t, bw3t = r["w3_total_s"], r.get("baseline_w3_total_s")
    rows.append([f"W3 total ({sizes['w3']} x durable 1 s sleep)", "-", "-", f"{w3t:.2f} s",
                 "<= 2 s", f"{bw3t:.2f} s" if bw3t else "-", ratio(w3t, bw3t), met(w3t <= 2.0)])
    w3, bw3 = r["w3_overshoot_ms"], r.get("baseline_w3_overshoot_ms")
    rows.append(["W3 wake-up overshoot", ms(w3["median"]), ms(w3["p99"]), "-", "median <= 50 ms",
                 f"{ms(bw3['median'])} / p99 {ms(bw3['p99'])}" if bw3 else "-",
                 ratio(w3["median"], bw3 and bw3["median"]), met(w3["median"] <= 50)])
    rp = r["replay_s"]
    rows.append([f"replay of {sizes['replay_steps']} recorded steps", f"{rp['median']:.3f} s",
                 f"{rp['max']:.3f} s (max)", "-", "<= 0.5 s", "-", "-", met(rp["max"] <= 0.5)])
    for key, label in (("admin_list", "admin list"), ("admin_list_status", "admin list ?status"),
                       ("api_list", "API list"), ("api_list_status", "API list ?status")):
        s = r[f"{key}_ms"]
        rows.append([f"{label} at {r['list_rows']} runs", ms(s["median"]), f"{ms(s['p95'])} (p95)",
                     "-", "p95 <= 100 ms", "-", "-", met(s["p95"] <= 100)])
    before, after = r["rss_before_mb"], r["rss_after_mb"]
    # The processes that run the workflows: the pool processes, or (threads) the workers.
    pool = [k for k in before if k.startswith("pool")] or [k for k in before if k.startswith("main")]
    growth = max((after.get(k, 0) - before[k] for k in pool), default=0)
    rows.append([f"worker RSS over {r['memory_workflows']} wf ({POOL} x {CONCURRENCY})",
                 " / ".join(f"{before[k]:.0f}" for k in pool) + " MB before",
                 " / ".join(f"{after.get(k, 0):.0f}" for k in pool) + " MB after",
                 f"+{growth:.1f} MB max", "flat (< +10%)", "-", "-",
                 met(all(after.get(k, 0) <= before[k] * 1.10 for k in pool))])
    rows += temporal_rows(r, ms)
    headers = ["workload", "median", "p99", "throughput", "target", "baseline (Celery chain)",
               "ours/baseline", "met?"]
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def temporal_rows(r: dict[str, Any], ms: Callable[[float | None], str]) -> list[list[str]]:
    """W1 on Temporal (activities, local activities) beside ours; the target is the peers'."""
    t = r.get("temporal")
    if not isinstance(t, dict):
        return []
    from bench.temporal import PEERS

    rows = []
    for key, label in (("activities", "activities"), ("local_activities", "local activities")):
        row = t[key]
        ok = row["median_ms"] <= PEERS["median_ms"] and row["wf_per_s"] >= PEERS["wf_per_s"]
        rows.append([f"Temporal W1 latency + throughput ({label}, {row['runs']} wf)",
                     ms(row["median_ms"]), ms(row["p99_ms"]), f"{row['wf_per_s']:.1f} wf/s",
                     f"peers: ~{PEERS['median_ms']:.0f} ms, ~{PEERS['wf_per_s']:.0f} wf/s",
                     "-", "-", ("yes" if ok else "NO") if key == "local_activities" else "-"])
    return rows


def w1c_text(c: dict[str, Any], elapsed: float) -> str:
    """The W1 / W1c comparison in words, with the figures of every round."""
    w1, w1c = c["W1"], c["W1c"]

    def rounds(values: list[float], fmt: str) -> str:
        return " / ".join(format(v, fmt) for v in values)

    return (
        f"W1 + Concurrency({c['limit']}) (W1c): {w1c['throughput_median']:.0f} wf/s, "
        f"{w1c['latency_ms']['median']:.1f} ms median, {c['cost_ratio']:.2f}x the cost of W1 "
        f"(W1 in the same run: {w1['throughput_median']:.0f} wf/s, "
        f"{w1['latency_ms']['median']:.1f} ms median; latency {c['latency_ratio']:.2f}x; "
        f"requirement: <= {W1C_MAX_RATIO:.2f}x).\n"
        f"Measured alternately on the same workers in {c['rounds']} rounds; each round "
        f"{c['latency_runs']} sequential runs of each variant, interleaved run by run "
        f"(latency), then {c['throughput_runs']} at once of one variant, then of the other "
        f"(throughput; order {' | '.join(c['orders'])}). Throughputs are the medians of the "
        f"rounds, latencies the medians of all {c['rounds'] * c['latency_runs']} runs of a "
        f"variant; the cost ratio is W1's median throughput / W1c's.\n"
        f"  throughput per round: W1 {rounds(w1['throughput_rounds'], '.0f')}, "
        f"W1c {rounds(w1c['throughput_rounds'], '.0f')} wf/s; cost ratio per round "
        f"{rounds(c['cost_ratio_rounds'], '.2f')} (median "
        f"{statistics.median(c['cost_ratio_rounds']):.2f}); best-of: W1 "
        f"{w1['throughput_best']:.0f}, W1c {w1c['throughput_best']:.0f} wf/s = "
        f"{c['cost_ratio_best']:.2f}x\n"
        f"  submitting the {c['throughput_runs']} runs (the client's starts, one process) took "
        f"per round: W1 {rounds(w1['submitted_s_rounds'], '.2f')} of "
        f"{rounds([c['throughput_runs'] / x for x in w1['throughput_rounds']], '.2f')} s, "
        f"W1c {rounds(w1c['submitted_s_rounds'], '.2f')} of "
        f"{rounds([c['throughput_runs'] / x for x in w1c['throughput_rounds']], '.2f')} s "
        f"(submission to last end)\n"
        f"  latency median per round: W1 {rounds(w1['latency_round_medians_ms'], '.1f')}, "
        f"W1c {rounds(w1c['latency_round_medians_ms'], '.1f')} ms; ratio per round "
        f"{rounds(c['latency_ratio_rounds'], '.2f')}\n"
        f"  ConcurrencySlot rows while W1c runs were open (just after each submission): "
        f"{rounds(c['slots_open_after_submit'], 'd')}; after the variant: {c['slots_after']} "
        f"(ConcurrencyWaiter rows: {c['waiters_after']}) -> "
        f"{'all slots freed' if c['slots_after'] == 0 else 'SLOTS LEFT'}\n"
        f"  the comparison took {c['elapsed_s']:.0f} s of the run's {elapsed:.0f} s "
        f"(the run without it: about {elapsed - c['elapsed_s']:.0f} s)")


# -- Django's default settings -----------------------------------------------------------------

# What a site that adds the app to its own settings has (the bench's tuned values in comments).
DJANGO_DEFAULTS = {
    "BENCH_CONN_MAX_AGE": "0",  # 600
    "BENCH_CONN_HEALTH_CHECKS": "false",  # true
    "BENCH_DEBUG": "true",  # false
    "CELERY_DB_REUSE_MAX": "0",  # 1000: Celery's fixup then closes connections after each task
}


def django_defaults(bench: Bench, procs: Processes, env: dict[str, str], log_dir: Path,
                    redis_client) -> None:
    """W1 throughput with the workers on Django's defaults, between two passes on the tuned
    settings (so drift of the machine shows)."""
    count = bench.sizes["w1_throughput"]

    def restart(worker_env: dict[str, str], name: str) -> None:
        procs.restart(worker_env, log_dir / name, redis_client)
        for k in range(20):  # warm-up, as for the first pass
            bench.execute("bench.w1", 10, f"warm-{name}-{k}").result(timeout=60)

    restart({**env, **DJANGO_DEFAULTS}, "defaults")
    defaults = bench.w1_throughput(count, "w1d")
    restart(env, "tuned")
    tuned = bench.w1_throughput(count, "w1r")
    first = bench.results["w1_throughput"]
    ratio = defaults / ((first + tuned) / 2)
    bench.results["django_defaults"] = {
        "w1_throughput": defaults, "tuned_before": first, "tuned_after": tuned, "ratio": ratio,
        "settings": DJANGO_DEFAULTS,
    }
    say(f"W1 on Django's defaults: {defaults:.0f} wf/s = {ratio:.0%} of tuned "
        f"({first:.0f}, {tuned:.0f} wf/s)")


def temporal(results: dict[str, Any], sizes: dict[str, int], log_dir: Path,
             target: str | None) -> None:
    """W1 on Temporal into ``results["temporal"]`` (or why it was not measured)."""
    from bench import temporal as on_temporal

    reason = on_temporal.available()
    if reason:
        say(f"Temporal not measured: {reason}")
        results["temporal"] = f"not measured: {reason}"
        return
    say("W1 on Temporal (bench/temporal.py)")
    results["temporal"] = on_temporal.measure_temporal(
        log_dir, latency_runs=sizes["temporal_latency"], runs=sizes["temporal_throughput"],
        target=target)


# -- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (about 2 minutes)")
    parser.add_argument("--keep-db", action="store_true", help="keep the beluga_bench database")
    parser.add_argument("--skip-baseline", action="store_true", help="measure only ours")
    parser.add_argument("--skip-django-tasks", action="store_true",
                        help="skip W1 on the django_tasks executor (db_worker processes)")
    parser.add_argument("--only", choices=ONLY, metavar="WORKLOAD", action="append",
                        help="measure only this workload (after the workers' warm-up; repeat "
                             "for several, in that order), print its figures and no table: "
                             + ", ".join(ONLY))
    parser.add_argument("--w5-rounds", type=int, metavar="N",
                        help="rounds of W5 (one fan-out run, then its yardstick); default 3")
    parser.add_argument("--count-statements", action="store_true",
                        help="the workers count their SQL statements (a Redis round trip each, "
                             "so times are slower): W5 prints them per run")
    parser.add_argument("--skip-temporal", action="store_true",
                        help="do not measure W1 on Temporal (measured when the temporal extra "
                             "is installed)")
    parser.add_argument("--temporal-target", metavar="HOST:PORT",
                        help="measure Temporal on this running server instead of a dev server "
                             "the bench starts")
    parser.add_argument("--django-defaults", action="store_true",
                        help="also measure W1 throughput with workers on Django's default "
                             "settings (CONN_MAX_AGE=0, no health checks, DEBUG=True, Celery's "
                             "own connection handling), between two passes on the tuned ones")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.w5_rounds:
        sizes["w5_rounds"] = args.w5_rounds

    env = environment()
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    log_dir = REPO / "var" / "bench" / time.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)

    import redis

    redis_client = redis.Redis.from_url(REDIS_URL)
    redis_client.flushdb()
    load_before = load_average()
    say(f"load average {load_before}; sizes {sizes}")
    say(f"creating and migrating {DATABASE_URL}")
    prepare_database(env)

    import django

    django.setup()
    import beluga_project.celery  # noqa: F401 - the app the executor sends with

    procs = Processes({**env, "BENCH_COUNT_STATEMENTS": "1"} if args.count_statements else env,
                      log_dir)
    results: dict[str, Any] = {"sizes": sizes, "load_before": load_before,
                               "started": datetime.now().isoformat(timespec="seconds")}
    sampler = LoadSampler()
    try:
        bench_started = time.monotonic()
        procs.start(redis_client)
        bench = Bench(sizes, procs)
        bench.results = results
        bench.count_statements = args.count_statements
        if args.only:
            bench.warm_up()
            for workload in args.only:
                getattr(bench, workload)()
            results["elapsed_s"] = time.monotonic() - bench_started
            return 0
        bench.w1_latency()
        results["rss_before_mb"] = procs.rss_mb()
        done = 20 + sizes["w1_latency"]
        bench.w1_throughput_and_cpu()
        done += sizes["w1_throughput"]
        bench.w1_concurrency()  # not counted in `done`: the memory pass runs as before
        bench.w2()
        bench.w4()
        bench.w5()
        bench.w3()
        if not args.skip_baseline:
            bench.baseline_w1()
            bench.baseline_w3()
        bench.memory(done)
        bench.replay()
        bench.lists()
        if not args.skip_temporal:
            temporal(results, sizes, log_dir, args.temporal_target)
        if args.django_defaults:
            django_defaults(bench, procs, env, log_dir, redis_client)
        if not args.skip_django_tasks:  # last: it stops the Celery workers
            from bench.tasks_runtime import measure_w1

            results["django_tasks"] = measure_w1(bench, env, log_dir, REPO, WORKERS, say, pct,
                                                 summary)
        results["elapsed_s"] = time.monotonic() - bench_started
    finally:
        results["load_during"] = sampler.stop()
        procs.stop()
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            drop_database()
    results["load_after"] = load_average()
    try:
        import dbos  # noqa: F401
        results["dbos"] = "installed, not measured by this version of the bench"
    except ImportError:
        results["dbos"] = "not installed (optional column omitted)"
    out = REPO / "var" / "bench" / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print()
    during = results["load_during"]
    print(f"beluga_workflows benchmark ({'quick' if args.quick else 'full'}), "
          f"{os.cpu_count()} cores, 2 workers --pool {POOL} --concurrency {CONCURRENCY}, "
          f"{results['elapsed_s']:.0f} s; load average (1 min) "
          f"{load_before.split()[0]} before, {during['mean']:.2f} mean / {during['max']:.2f} max "
          f"during (the bench's own processes count); DBOS: {results['dbos']}")
    print(table(results, sizes))
    if "django_defaults" in results:
        d = results["django_defaults"]
        print(f"\nW1 throughput with workers on Django's default settings ({', '.join(f'{k}={v}' for k, v in d['settings'].items())}): "
              f"{d['w1_throughput']:.0f} wf/s = {d['ratio']:.0%} of the tuned settings' "
              f"{d['tuned_before']:.0f} / {d['tuned_after']:.0f} wf/s (measured before and after)")
    if "w1c" in results:
        print("\n" + w1c_text(results["w1c"], results["elapsed_s"]))
    if "django_tasks" in results:
        d, lat = results["django_tasks"], results["django_tasks"]["w1_latency_ms"]
        print(f"\nW1 on the django_tasks executor ({d['workers']} db_worker processes, ORM task "
              f"backend, poll {d['poll_interval_s']:g} s): latency median {lat['median']:.1f} ms / "
              f"p99 {lat['p99']:.1f} ms, throughput {d['w1_throughput']:.0f} wf/s; Celery: "
              f"median {results['w1_latency_ms']['median']:.1f} ms, {results['w1_throughput']:.0f} wf/s")
    print(f"\nfigures: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
