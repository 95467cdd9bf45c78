"""Where W1c's extra cost goes: the SQL statements and transactions of one W1 run and of one W1c
run (W1 declared with ``Concurrency(1000)``), counted and timed in this process.

Run ``python bench/statements.py`` (PostgreSQL and Redis up, as for ``bin/bench``). It creates and
migrates a database of its own (``beluga_bench_sql``), then for each variant starts runs here
(``execute``: the client's part) and advances each here (``executor.run``: what a worker does;
its Celery message goes to a queue no worker reads, deleted at the end), the two variants
alternating run by run, with ``connection.execute_wrapper`` counting and timing every statement
and ``commit`` counted and timed too (a write outside a transaction block commits on its own:
counted as an autocommit write). The PostgreSQL store's own one-statement operations (create,
claim, checkpoint), sent through psycopg past Django's wrappers, are counted in
``PostgresStatements._execute``. A libpq protocol trace of 20 more runs per variant counts the
round trips, ``BEGIN`` and ``COMMIT`` included; ``--cprofile N`` profiles N more. The start of
a W1c run is also measured with ``--open`` W1c runs holding slots already (a start reads the
numbers in use to pick the lowest free one).

Prints, per variant and per phase (start / run), the statements by kind, commits, the time in
statements and commits (round trips included), and the wall time; then the difference.
The figures describe the store's code of the tree it runs in; it writes nothing but its own
database (dropped at the end) and a Redis queue no worker reads (deleted at the end).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import run as bench_run  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_SQL_DATABASE_URL",
                              "postgres://postgres@127.0.0.1:5432/beluga_bench_sql")
QUEUE = "beluga-bench-sql"  # no worker consumes it


def kind_of(sql: str) -> str:
    """``INSERT beluga_workflows_concurrencyslot``, ``SAVEPOINT``... of a statement."""
    text = sql.lstrip().upper()
    word = text.split(None, 1)[0] if text else "?"
    if word in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return "SAVEPOINT/RELEASE" if word != "ROLLBACK" else "ROLLBACK TO SAVEPOINT"
    tables = re.findall(r'(?:FROM|INTO|UPDATE|JOIN)\s+"?([a-z_0-9]+)"?', sql, re.IGNORECASE)
    main = tables[0] if tables else "?"
    short = main.replace("beluga_workflows_", "")
    if word == "WITH":
        word = "WITH (CTE)"
    return f"{word} {short}"


class Phase:
    """What one phase (a start, a run) cost: statements by kind, commits, their times."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.kind_ms: Counter[str] = Counter()
        self.statements = 0
        self.statement_ms = 0.0
        self.commits = 0
        self.commit_ms = 0.0
        # Writes outside a transaction block: each commits on its own (a WAL flush each).
        self.autocommit_writes = 0
        self.wall_ms: list[float] = []


class Recorder:
    """An ``execute_wrapper`` and a ``commit`` wrapper of the default connection that count
    into ``self.phase`` while one is set."""

    def __init__(self, connection) -> None:
        self.phase: Phase | None = None
        original = connection.commit

        def commit() -> None:
            started = time.perf_counter()
            try:
                original()
            finally:
                if self.phase is not None:
                    self.phase.commits += 1
                    self.phase.commit_ms += (time.perf_counter() - started) * 1000

        connection.commit = commit

        # The PostgreSQL store's hot statements go through psycopg directly, past Django's
        # execute wrappers: count those in PostgresStatements._execute, named by their caller.
        from beluga_workflows.stores.django import postgres

        raw_execute = postgres.PostgresStatements._execute
        recorder = self

        def _execute(statements, cursor, text, params):
            frame, name = sys._getframe(1), "?"
            while frame is not None:
                if frame.f_code.co_name not in ("_fetch", "_fetch_all", "_execute", "_cursor",
                                                "__enter__", "__exit__", "inner", "_run"):
                    name = frame.f_code.co_name
                    break
                frame = frame.f_back
            recorder.record(f"one statement: PostgresStatements.{name}", connection,
                            lambda: raw_execute(statements, cursor, text, params), write=name
                            not in ("load", "history", "contents", "pending"))

        postgres.PostgresStatements._execute = _execute

    def record(self, kind: str, connection, call, *, write: bool):
        started = time.perf_counter()
        try:
            return call()
        finally:
            if self.phase is not None:
                ms = (time.perf_counter() - started) * 1000
                self.phase.kinds[kind] += 1
                self.phase.kind_ms[kind] += ms
                self.phase.statements += 1
                self.phase.statement_ms += ms
                if write and not connection.in_atomic_block:
                    self.phase.autocommit_writes += 1

    def __call__(self, execute, sql, params, many, context):
        kind = kind_of(sql)
        return self.record(kind, context["connection"],
                           lambda: execute(sql, params, many, context),
                           write=not kind.startswith(("SELECT", "SAVEPOINT", "RELEASE")))

    def timed(self, phase: Phase, call) -> None:
        self.phase = phase
        started = time.perf_counter()
        try:
            call()
        finally:
            phase.wall_ms.append((time.perf_counter() - started) * 1000)
            self.phase = None


def report(name: str, n: int, phases: dict[str, Phase]) -> None:
    print(f"\n{name}: per run (statements and commits: mean of {n} runs; wall: median)")
    for label, c in phases.items():
        print(f"  {label}: {c.statements / n:.1f} statements ({c.statement_ms / n:.2f} ms), "
              f"{c.commits / n:.1f} commits ({c.commit_ms / n:.2f} ms) + "
              f"{c.autocommit_writes / n:.1f} autocommit writes, wall "
              f"{statistics.median(c.wall_ms):.2f} ms")
        for kind, count in sorted(c.kinds.items()):
            print(f"      {count / n:5.1f} x {kind:<44} {c.kind_ms[kind] / count:6.3f} ms each")


def round_trips(connection, n: int, start, advance) -> None:
    """The client/server round trips of ``n`` starts and runs of each variant, from libpq's
    protocol trace of the connection (a simple ``Query`` or an extended-protocol ``Sync`` ends
    each): these include the ``BEGIN`` psycopg sends before a transaction's first statement and
    the ``COMMIT``, which no execute wrapper sees."""
    import tempfile

    raw = connection.connection  # the psycopg connection
    print(f"\nround trips per run (libpq trace of {n} runs per variant):")
    totals = {}
    for name, workflow_type in (("W1", "bench.w1"), ("W1c", "bench.w1c")):
        for phase in ("start", "run"):
            with tempfile.NamedTemporaryFile("w+", suffix=".trace") as trace:
                for k in range(n):
                    workflow_id = f"{name}-rt-{k:05d}"
                    if phase == "start":
                        raw.pgconn.trace(trace.fileno())
                        start(workflow_type, workflow_id)()
                        raw.pgconn.untrace()
                        advance(workflow_id)()
                    else:
                        start(workflow_type, workflow_id)()
                        raw.pgconn.trace(trace.fileno())
                        advance(workflow_id)()
                        raw.pgconn.untrace()
                trace.seek(0)
                kinds: Counter[str] = Counter()
                for line in trace:
                    parts = line.split("\t")
                    if len(parts) > 3 and parts[1] == "F" and parts[3].split()[0] in (
                            "Query", "Sync"):
                        word = parts[3].split()[0]
                        text = "(extended: parse/bind/execute)"
                        if word == "Query" and len(parts) > 4:
                            text = parts[4].strip().strip('"').split()[0].upper()
                        kinds[text] += 1
            total = sum(kinds.values())
            totals[name, phase] = total
            detail = ", ".join(f"{v / n:.1f} {k}" for k, v in sorted(kinds.items()))
            print(f"  {name} {phase}: {total / n:.1f} ({detail})")
    for phase in ("start", "run"):
        print(f"  W1c - W1, {phase}: {(totals['W1c', phase] - totals['W1', phase]) / n:+.1f}")


def cprofile(executor, n: int, start, advance) -> None:
    """cProfile of ``n`` starts and runs of each variant: beluga_workflows' functions (and the
    ORM's entry points) by cumulative time per run, W1 and W1c side by side."""
    import cProfile
    import pstats

    stats: dict[tuple[str, str], pstats.Stats] = {}
    for name, workflow_type in (("W1", "bench.w1"), ("W1c", "bench.w1c")):
        profiles = {"start": cProfile.Profile(), "run": cProfile.Profile()}
        for k in range(n):
            workflow_id = f"{name}-p-{k:05d}"
            profiles["start"].runcall(start(workflow_type, workflow_id))
            profiles["run"].runcall(advance(workflow_id))
        for phase, profile in profiles.items():
            stats[name, phase] = pstats.Stats(profile)
    for phase in ("start", "run"):
        rows: dict[str, list[float]] = {}
        for i, name in enumerate(("W1", "W1c")):
            for (file, line, func), (_, calls, _, cum, _) in stats[name, phase].stats.items():
                if "beluga_workflows" not in file and not (
                        "django/db" in file and func in ("execute", "commit", "__exit__",
                                                         "_insert", "delete", "bulk_create",
                                                         "_fetch_all", "exists", "count")):
                    continue
                where = f"{file.split('site-packages/')[-1].split('/work/main/')[-1]}:{line} {func}"
                rows.setdefault(where, [0.0, 0.0, 0.0, 0.0])
                rows[where][i] = cum * 1000 / n
                rows[where][2 + i] = calls / n
        print(f"\ncProfile, {phase}: ms per run cumulative (calls per run), W1 -> W1c, the "
              f"30 largest W1c figures (profiling slows everything down)")
        for where, (a, b, ca, cb) in sorted(rows.items(), key=lambda kv: -kv[1][1])[:30]:
            print(f"  {a:7.2f} ({ca:4.1f}) -> {b:7.2f} ({cb:4.1f})  {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="runs per variant (default 100)")
    parser.add_argument("--open", type=int, default=900,
                        help="W1c runs holding slots for the last measurement (default 900)")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N",
                        help="also profile N more runs of each variant with cProfile and print "
                             "the functions of beluga_workflows by cumulative time, per phase")
    args = parser.parse_args()

    bench_run.DATABASE_URL = DATABASE_URL
    env = bench_run.environment()
    env.update({"DATABASE_URL": DATABASE_URL, "BENCH_QUEUE": QUEUE})
    os.environ.update(env)
    bench_run.prepare_database(env)

    import django

    django.setup()
    from django.db import connection

    import beluga_project.celery  # noqa: F401
    from beluga_workflows import WorkflowOptions, get_executor
    from beluga_workflows.models import ConcurrencySlot

    executor = get_executor()

    def start(workflow_type: str, workflow_id: str):
        return lambda: executor.execute(workflow_type, WorkflowOptions(id=workflow_id, input=10))

    def advance(workflow_id: str):
        return lambda: executor.run(workflow_id)

    try:
        connection.ensure_connection()
        counter = Recorder(connection)
        results: dict[str, dict[str, Phase]] = {}
        with connection.execute_wrapper(counter):
            for name, workflow_type in (("W1", "bench.w1"), ("W1c", "bench.w1c")):
                for k in range(20):  # warm-up
                    start(workflow_type, f"{name}-warm-{k}")()
                    advance(f"{name}-warm-{k}")()
            # Alternating runs of the two variants, so drift of the machine hits both.
            for name in ("W1", "W1c"):
                results[name] = {"start (client: execute)": Phase(),
                                 "run (worker: 10 steps and the end)": Phase()}
            for k in range(args.n):
                for name, workflow_type in (("W1", "bench.w1"), ("W1c", "bench.w1c")):
                    workflow_id = f"{name}-m-{k:05d}"
                    started, ran = results[name].values()
                    counter.timed(started, start(workflow_type, workflow_id))
                    counter.timed(ran, advance(workflow_id))
                    state = executor.store.load(workflow_id, with_history=False)
                    assert state.status.value == "completed", (workflow_id, state.error)
            assert ConcurrencySlot.objects.count() == 0
            for name in ("W1", "W1c"):
                report(name, args.n, results[name])
            for label in results["W1"]:
                a, b = results["W1"][label], results["W1c"][label]
                wa, wb = statistics.median(a.wall_ms), statistics.median(b.wall_ms)
                print(f"\nW1c - W1, {label}: {(b.statements - a.statements) / args.n:+.1f} "
                      f"statements ({(b.statement_ms - a.statement_ms) / args.n:+.2f} ms), "
                      f"{(b.commits - a.commits) / args.n:+.1f} commits "
                      f"({(b.commit_ms - a.commit_ms) / args.n:+.2f} ms), "
                      f"{(b.autocommit_writes - a.autocommit_writes) / args.n:+.1f} autocommit "
                      f"writes; wall {wb - wa:+.2f} ms "
                      f"({wa:.2f} -> {wb:.2f} ms)")
                for kind in sorted(set(a.kinds) | set(b.kinds)):
                    d = (b.kinds[kind] - a.kinds[kind]) / args.n
                    if d:
                        print(f"      {d:+5.1f} x {kind}")

            round_trips(connection, 20, start, advance)
            if args.cprofile:
                cprofile(executor, args.cprofile, start, advance)

            # A W1c start while --open W1c runs (started, never advanced) hold slots.
            if args.open:
                for k in range(args.open):
                    start("bench.w1c", f"W1c-open-{k:05d}")()
                assert ConcurrencySlot.objects.count() == args.open
                opened = {"start with slots in use": Phase()}
                for k in range(50):
                    workflow_id = f"W1c-o-{k:05d}"
                    counter.timed(opened["start with slots in use"],
                                  start("bench.w1c", workflow_id))
                    advance(workflow_id)()
                report(f"W1c with {args.open} slots in use", 50, opened)
    finally:
        import redis

        redis.Redis.from_url(bench_run.REDIS_URL).delete(QUEUE)
        from django.db import connections

        connections.close_all()
        bench_run.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
