"""Faults across hosts: Celery workers on three test hosts (network namespaces), one cut off.

Each host is a namespace with a veth link of its own (``hosts.TestHosts``) running one Celery
worker that reaches PostgreSQL and Redis over that link. While the workflows run, one host's link
goes down for longer than the lease: the other hosts resume its runs once its leases expire, and
when its link comes back its stale worker writes nothing (every append is fenced on the lease).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from beluga_workflows import WorkflowFilter

from . import workflows as test_workflows  # noqa: F401 - registers the test workflows
from .conftest import wait_for
from .hosts import TestHosts, netns_available

# Each test on workers of one process per run in flight (prefork of one) and on workers of a
# pool of 4 threads (4 runs in flight per process: what bin/bench measures, README "Workers").
pytestmark = [pytest.mark.celery, pytest.mark.postgres,
              pytest.mark.parametrize("cluster", ["prefork:1", "threads:4"], indirect=True)]

STEPS = 10
LEASE = 3
RUNS = int(os.environ.get("BELUGA_TEST_PARTITION_RUNS", "300"))


@contextlib.contextmanager
def stopping(cluster):
    """Stop the workers before their hosts go away (they would only log lost connections)."""
    try:
        yield
    finally:
        cluster.stop()


def pool_pids(worker_pid: int) -> set[int]:
    """The pids of a Celery worker's process group (its main process and pool children)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == worker_pid:
                    pids.add(int(entry.name))
            except ProcessLookupError:
                continue
    return pids


def leased_by(cluster, pids: set[int]) -> list[str]:
    """Ids of the open runs whose lease is held by one of ``pids`` (owner "host:pid:token")."""
    return [s.workflow_id for s in cluster.store.list(WorkflowFilter(status="running"))
            if s.lease_owner and int(s.lease_owner.split(":")[-2]) in pids]


def test_a_host_cut_off_longer_than_its_leases_loses_its_runs_and_writes_nothing_on_return(
        cluster):
    reason = netns_available()
    if reason:
        pytest.fail(f"{reason}: the multi-host tests make network namespaces (run as root)")
    cluster.configure(BELUGA_LEASE_SECONDS=LEASE, BELUGA_TEST_SWEEP_GRACE=LEASE)
    with TestHosts(3) as hosts, stopping(cluster):
        workers = [cluster.start_workers(1, host=host)[0] for host in hosts.hosts]
        cluster.start_beat()
        started = time.monotonic()
        ids = cluster.start("celery_tests.steps", [{"steps": STEPS, "pause": 0.01}] * RUNS,
                            id_prefix="part")
        victim = workers[0].pid
        pids = pool_pids(victim)
        # Cut the host while it holds a run, early enough that most work is still ahead.
        held = wait_for(lambda: leased_by(cluster, pids), 60, "host 0 to hold a run's lease",
                        interval=0.01)
        done_at_cut = cluster.count("completed")
        hosts.cut(0)
        cut_at = time.monotonic()
        # The others take its runs over once the leases run out (nothing can renew them now).
        wait_for(lambda: not leased_by(cluster, pids), 30 + 3 * LEASE,
                 lambda: f"the runs host 0 held ({held}) to be taken over: "
                         f"{cluster.describe_open()}", interval=0.1)
        taken_over = time.monotonic() - cut_at
        progressed = wait_for(
            lambda: (n := cluster.count("completed")) > done_at_cut + 20 and n, 60,
            "the other hosts to complete runs while host 0 is cut off")
        # Keep it cut well past its leases, then let it come back with its stale activation.
        wait_for(lambda: time.monotonic() - cut_at >= 3 * LEASE, 4 * LEASE, "the cut to last")
        hosts.heal(0)
        cut_for = time.monotonic() - cut_at
        cluster.wait_ended(RUNS, timeout=300)
        total = time.monotonic() - started
        assert workers[0].poll() is None, "the cut-off worker died instead of recovering"

        # The cut-off worker's in-flight step may land its side effect after the others recorded
        # the step (late); its own append of the outcome is fenced off by the lease.
        repeated = cluster.check_steps_ran_once(ids, STEPS, faulty={victim}, late=True)
        for workflow_id, step in repeated:
            runs = cluster.effects(workflow_id, step)
            recorded = [r for r in runs if r[0] != victim]
            assert len(recorded) == 1, f"{workflow_id} step {step} ran on two live hosts: {runs}"
        assert cluster.count("running") == 0
        assert cluster.store.due(cluster.executor.clock.now(), 10) == []
        assert done_at_cut < RUNS, "the cut came too late to hit running workflows"
    print(f"partition: {RUNS} workflows x {STEPS} steps on 3 hosts in {total:.1f} s; host 0 cut "
          f"for {cut_for:.1f} s holding {held}; its runs taken over after {taken_over:.1f} s "
          f"(lease {LEASE} s); {progressed} completed by then; steps run twice: {repeated}")
