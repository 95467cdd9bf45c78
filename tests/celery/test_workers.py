"""Issue 3's "must show", done for real: PostgreSQL, a Redis broker, Celery worker processes.

"2 workers" here means 2 worker processes, each ``celery worker --pool prefork --concurrency 1``
(a main process and one pool process that runs the workflows), in a process group of its own so
``kill -9`` of the group kills both, as a crashed machine would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from beluga_workflows import WorkflowFilter
from beluga_workflows.types import EventType

from . import workflows as test_workflows  # noqa: F401 - registers the test workflows
from .conftest import QUEUE, REPO, wait_for

# Each test on workers of one process per run in flight (prefork of one) and on workers of a
# pool of 4 threads (4 runs in flight per process: what bin/bench measures, README "Workers").
pytestmark = [pytest.mark.celery, pytest.mark.postgres,
              pytest.mark.parametrize("cluster", ["prefork:1", "threads:4"], indirect=True)]

STEPS = 10


def recorded_tokens(cluster, workflow_id: str) -> list[str]:
    state = cluster.store.load(workflow_id)
    return [e.result["token"] for e in state.history if e.type is EventType.ACTIVITY_COMPLETED]


def test_200_workflows_of_10_activities_run_exactly_once_on_2_workers(cluster):
    cluster.start_beat()
    cluster.start_workers(2)
    started = time.monotonic()
    ids = cluster.start("celery_tests.steps", [{"steps": STEPS}] * 200, id_prefix="ten")
    elapsed = cluster.wait_ended(200, timeout=240)
    total = time.monotonic() - started
    print(f"200 workflows x {STEPS} activities on 2 worker processes: {total:.1f} s "
          f"(all ended {elapsed:.1f} s after the last start)")

    assert cluster.count("completed") == 200
    for workflow_id in ids:
        state = cluster.store.load(workflow_id)
        assert state.result == recorded_tokens(cluster, workflow_id)
        for i in range(STEPS):
            runs = cluster.effects(workflow_id, i)
            assert len(runs) == 1, f"{workflow_id} step {i} ran {len(runs)} times: {runs}"
            assert runs[0][2] == state.result[i]


def test_kill_9_of_every_worker_at_random_moments_loses_nothing_and_repeats_no_recorded_step(
        cluster, rng):
    # Short leases, and lost messages (prefetched by a killed worker) re-sent after 3 s.
    cluster.configure(BELUGA_LEASE_SECONDS=3, BELUGA_TEST_SWEEP_GRACE=3)
    cluster.start_beat()
    cluster.start_workers(2)
    started = time.monotonic()
    # As long a run per process whatever the pool: a pool of N threads has N runs in flight.
    ids = cluster.start("celery_tests.steps",
                        [{"steps": STEPS, "pause": 0.01 * cluster.concurrency}] * 200,
                        id_prefix="crash")
    kills = []
    for _ in range(3):
        time.sleep(rng.uniform(0.5, 3.0))
        done = cluster.count("completed")
        groups = cluster.kill_workers()
        kills.append({"at": round(time.monotonic() - started, 1), "completed": done,
                      "groups": groups})
        time.sleep(rng.uniform(0.0, 1.0))
        cluster.start_workers(2)
    cluster.wait_ended(200, timeout=300)
    total = time.monotonic() - started
    assert kills[-1]["completed"] < 200, "the kills came too late to hit running workflows"

    repeated = cluster.check_steps_ran_once(ids, STEPS, faulty=cluster.killed_groups)
    # At most one step in flight per run being advanced: per process, one per pool slot.
    assert len(repeated) <= 2 * cluster.concurrency * len(kills)
    # Nothing stuck: no open run, no lease held, nothing due for the sweep.
    assert cluster.count("running") == 0
    assert cluster.store.due(cluster.executor.clock.now(), 10) == []
    print(f"crash test: 200 workflows x {STEPS} activities in {total:.1f} s; kills {kills}; "
          f"steps that ran twice (in flight at a kill): {len(repeated)} {repeated}")


def test_500_workflows_get_their_3_signals_in_order_from_racing_sender_processes(cluster, tmp_path):
    cluster.start_beat()
    cluster.start_workers(2)
    started = time.monotonic()
    ids = cluster.start("celery_tests.three_signals", [None] * 500, id_prefix="sig")
    senders = []
    for n in range(4):  # each sender owns a quarter of the workflows, so order per id is defined
        ids_file = tmp_path / f"ids-{n}.txt"
        ids_file.write_text("\n".join(ids[n::4]))
        senders.append(subprocess.Popen(
            [sys.executable, "-m", "tests.celery.clients", "signal", str(ids_file), f"seed-{n}"],
            cwd=REPO, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        ))
    for proc in senders:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out
    sent = time.monotonic() - started
    cluster.wait_ended(500, timeout=300)
    total = time.monotonic() - started

    assert cluster.count("completed") == 500
    for workflow_id in ids:
        state = cluster.store.load(workflow_id, with_history=False)
        assert state.result == [{"wf": workflow_id, "k": k} for k in range(3)], (workflow_id, state)
        assert state.signals == []  # every signal consumed, none left over
    print(f"500 workflows x 3 signals from 4 processes: signals sent in {sent:.1f} s, "
          f"all completed in {total:.1f} s")


def test_two_workers_handed_the_same_run_at_once_one_advances_it_the_other_backs_off(cluster):
    from beluga_workflows import WorkflowOptions
    from beluga_workflows.executor import WorkflowExecutor

    class Unscheduled(WorkflowExecutor):
        def schedule(self, workflow_id, *, at=None, queue=None):
            pass  # the test hands the runs out itself

    creator = Unscheduled(store=cluster.store)
    ids = [creator.execute("celery_tests.steps", WorkflowOptions(
        id=f"same-{n}", input={"steps": 1, "pause": 0.5})).id for n in range(5)]

    # Two processes call executor.run(id) at the same instants, id after id.
    start_at = time.time() + 3
    racers = [subprocess.Popen([sys.executable, "-m", "tests.celery.clients", "run",
                                str(start_at), *ids],
                               cwd=REPO, env=cluster.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reports = []
    for proc in racers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports += [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    for workflow_id in ids:
        mine = [r for r in reports if r["workflow_id"] == workflow_id]
        assert sorted(r["claimed"] for r in mine) == [False, True], mine
        winner = next(r for r in mine if r["claimed"])
        assert winner["status"] == "completed"
        assert len(cluster.effects(workflow_id, 0)) == 1

    # The same through Celery: every run sent twice at once to 2 idle worker processes.
    more = [creator.execute("celery_tests.steps", WorkflowOptions(
        id=f"twice-{n}", input={"steps": 2, "pause": 0.05})).id for n in range(20)]
    cluster.start_workers(2)
    for workflow_id in more:
        cluster.executor.schedule(workflow_id)
        cluster.executor.schedule(workflow_id)
    cluster.wait_ended(25, timeout=120)
    for workflow_id in more:
        assert cluster.store.load(workflow_id, with_history=False).status.value == "completed"
        assert [len(cluster.effects(workflow_id, i)) for i in range(2)] == [1, 1]


def test_a_1_second_sleep_across_300_workflows_holds_no_worker(cluster):
    cluster.start_beat()
    cluster.start_workers(2)
    started = time.monotonic()
    ids = cluster.start("celery_tests.sleeper", [{"seconds": 1}] * 300, id_prefix="nap")
    starting = time.monotonic() - started
    most_asleep = 0

    def all_ended():
        nonlocal most_asleep
        asleep = cluster.count("running", wait_kind="timer")
        most_asleep = max(most_asleep, asleep)
        return cluster.count("running") == 0

    wait_for(all_ended, 120, lambda: f"300 sleepers to wake\n{cluster.log_tail()}", interval=0.1)
    total = time.monotonic() - started
    print(f"300 workflows sleeping 1 s on 2 worker processes: all done in {total:.1f} s "
          f"(starting them took {starting:.1f} s); up to {most_asleep} asleep at once")
    assert cluster.count("completed") == 300
    # Holding a worker per sleep would take 300 x 1 s / 2 processes = 150 s.
    assert total < 60
    assert most_asleep > 2, "the sleeps never overlapped: they held the workers"
    for workflow_id in ids[:20]:
        types = [e.type for e in cluster.store.load(workflow_id).history]
        assert EventType.TIMER_STARTED in types and EventType.TIMER_FIRED in types


def test_a_timer_due_while_every_worker_was_down_fires_after_they_restart(cluster):
    # No beat: only the sweep a worker runs when it starts can bring the runs back.
    cluster.start_workers(2)
    ids = cluster.start("celery_tests.sleeper", [{"seconds": 2}] * 5, id_prefix="down")

    def all_asleep():  # suspended on the timer, and no worker holds the run
        states = [cluster.store.load(i, with_history=False) for i in ids]
        return all(s.wait_kind == "timer" and not s.lease_owner for s in states)

    wait_for(all_asleep, 60, "the runs to suspend on their timers")
    cluster.kill_workers()
    # The countdown hints died with the workers (unacknowledged); drop anything still queued too,
    # so nothing but the store's due times can wake the runs.
    cluster.redis.delete(QUEUE)
    wake_at = max(cluster.store.load(i, with_history=False).wake_at for i in ids)
    while cluster.executor.clock.now() < wake_at:
        time.sleep(0.1)
    time.sleep(1)
    assert cluster.count("running") == 5  # due, but nobody is there to fire the timers
    assert cluster.store.due(cluster.executor.clock.now(), 10) != []

    restarted = time.monotonic()
    cluster.start_workers(2)
    cluster.wait_ended(5, timeout=60)
    print(f"timers due while all workers were down fired {time.monotonic() - restarted:.1f} s "
          f"after the restart")
    assert cluster.count("completed") == 5
    for workflow_id in ids:
        assert cluster.store.load(workflow_id, with_history=False).result == "woke"


def test_the_sweep_alone_ends_sleeps_longer_than_the_countdown_limit(cluster):
    # Workers that never send a countdown (limit 0.1 s): a 2 s sleep ends through the store's due
    # time and the periodic sweep (beat every second), not through the broker.
    cluster.configure(BELUGA_TEST_COUNTDOWN_LIMIT=0.1)
    cluster.start_beat()
    cluster.start_workers(2)
    started = time.monotonic()
    cluster.start("celery_tests.sleeper", [{"seconds": 2}] * 10, id_prefix="long")
    cluster.wait_ended(10, timeout=60)
    took = time.monotonic() - started
    assert cluster.count("completed") == 10
    assert took >= 2
    assert cluster.store.list(WorkflowFilter(status="running")) == []
