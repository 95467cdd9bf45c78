"""Outages of the servers under running workflows: PostgreSQL crashed, Redis lost, twice each.

The servers are the test's own (``servers.py``), so crashing them disturbs nothing else: a
PostgreSQL cluster stopped with ``-m immediate`` (connections cut, crash recovery on start) and a
Redis killed and started empty (every queued Celery message lost). The runs survive both: steps
in flight re-run at most once, recorded steps never, and nothing is left stuck.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

import pytest

from beluga_workflows import StoreError

from . import workflows as test_workflows  # noqa: F401 - registers the test workflows
from .conftest import REPO, Cluster, _base_env, wait_for
from .servers import PrivatePostgres, PrivateRedis

pytestmark = [pytest.mark.celery, pytest.mark.postgres]

STEPS = 10
LEASE = 3
RUNS = int(os.environ.get("BELUGA_TEST_OUTAGE_RUNS", "200"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["prefork:1", "threads:4"])
def outage_cluster(request, redis_client, django_db_blocker, tmp_path):
    """A ``Cluster`` on a PostgreSQL and a Redis broker of its own (the ``outage`` alias), its
    workers a prefork pool of one or a pool of 4 threads each."""
    from django.db import connections

    database = connections.settings["outage"]
    postgres = PrivatePostgres(int(database["PORT"]))
    broker = PrivateRedis(free_port())
    try:
        subprocess.run([f"{postgres.bin}/createdb", "-h", "127.0.0.1", "-p", str(postgres.port),
                        "-U", "postgres", database["NAME"]], check=True, timeout=60,
                       capture_output=True)
        url = postgres.url(database["NAME"])
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                                 cwd=REPO, env=_base_env(url), capture_output=True, text=True,
                                 timeout=300)
        assert migrate.returncode == 0, f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}"
        with django_db_blocker.unblock():
            cluster = Cluster(url, redis_client, tmp_path, broker_url=broker.url, alias="outage",
                              pool=request.param)
            cluster.clean()
            cluster.postgres, cluster.broker = postgres, broker
            try:
                yield cluster
            finally:
                cluster.stop()
                print(cluster.log_tail(15))
                connections["outage"].close()
                cluster.app.close()
    finally:
        broker.close()
        postgres.close()


def completed(cluster) -> int:
    """Completed runs, or -1 while the database is down (the predicate then just waits)."""
    try:
        return cluster.count("completed")
    except StoreError:
        return -1


def test_postgres_crashes_and_redis_losing_its_queue_twice_each_lose_no_run(outage_cluster):
    cluster = outage_cluster
    cluster.configure(BELUGA_LEASE_SECONDS=LEASE, BELUGA_TEST_SWEEP_GRACE=LEASE)
    cluster.start_beat()
    cluster.start_workers(2)
    started = time.monotonic()
    ids = cluster.start("celery_tests.steps", [{"steps": STEPS, "pause": 0.02}] * RUNS,
                        id_prefix="outage")
    outages = []
    for n, (what, restart) in enumerate([("postgres", cluster.postgres.restart),
                                         ("postgres", cluster.postgres.restart),
                                         ("redis", cluster.broker.restart),
                                         ("redis", cluster.broker.restart)]):
        # Each outage hits running work: a few more runs complete in between.
        target = (n + 1) * RUNS // 10
        wait_for(lambda t=target: completed(cluster) >= t, 120,
                 lambda t=target, k=n + 1: f"{t} runs to complete before outage {k}: "
                                           f"{cluster.describe_open()}\n{cluster.log_tail()}",
                 interval=0.05)
        at = time.monotonic()
        restart()
        outages.append(f"{what} at {at - started:.1f} s (down {time.monotonic() - at:.1f} s)")
    # The test process's own connection to the crashed server is stale: drop it.
    from django.db import connections

    with contextlib.suppress(Exception):
        connections["outage"].close()
    recovered_from = time.monotonic()
    wait_for(lambda: completed(cluster) == RUNS, 300,
             lambda: f"all {RUNS} runs to complete: {cluster.describe_open()}\n"
                     f"{cluster.log_tail()}", interval=0.2)
    recovery = time.monotonic() - recovered_from
    total = time.monotonic() - started

    faulty = {proc.pid for proc in cluster.workers}
    repeated = cluster.check_steps_ran_once(ids, STEPS, faulty=faulty)
    assert cluster.count("running") == 0
    assert cluster.store.due(cluster.executor.clock.now(), 10) == []
    print(f"outages: {RUNS} workflows x {STEPS} steps in {total:.1f} s; {'; '.join(outages)}; "
          f"all done {recovery:.1f} s after the last; steps run twice: {len(repeated)} "
          f"{repeated}")
