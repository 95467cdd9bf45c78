"""The engine's behaviour on the django_tasks runtime with real ``db_worker`` processes, on
PostgreSQL and on SQLite: signals, timers, retries, failures, cancel, timeout, kill -9 of the
workers in the middle of 200 ten-step runs, and timers that came due while every worker was down.
"""

from __future__ import annotations

import random
import time

import pytest

from beluga_workflows import WorkflowOptions
from beluga_workflows.engine.types import EventType

from . import workflows  # noqa: F401 - registers the test workflows in this process too
from .conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]


def _status(cluster, workflow_id: str) -> str:
    return cluster.store.load(workflow_id, with_history=False).status.value


def test_signals_timers_retries_failures_cancel_and_timeout(tasks_cluster):
    c = tasks_cluster
    # Wake-ups further than 1 s away are left to the sweep (a task chain, no beat process).
    c.configure(BELUGA_TEST_DEFER_LIMIT=1)
    c.start_workers(2)
    ex = c.executor
    steps = ex.execute("celery_tests.steps", WorkflowOptions(id="steps", input={"steps": 3}))
    signals = ex.execute("celery_tests.three_signals", WorkflowOptions(id="signals"))
    near = ex.execute("celery_tests.sleeper", WorkflowOptions(id="near", input={"seconds": 0.5}))
    far = ex.execute("celery_tests.sleeper", WorkflowOptions(id="far", input={"seconds": 3}))
    retried = ex.execute("dt_tests.retried", WorkflowOptions(id="retried", input={"fail": 2}))
    failed = ex.execute("dt_tests.fails", WorkflowOptions(id="failed"))
    canceled = ex.execute("dt_tests.waits_forever", WorkflowOptions(id="canceled"))
    timed = ex.execute("dt_tests.waits_forever", WorkflowOptions(id="timed", timeout=2))
    started = time.monotonic()

    for k in range(3):
        signals.signal("go", {"k": k})
    wait_for(lambda: c.store.load("canceled", with_history=False).wait_kind == "signal", 30,
             "the run to wait for its signal")
    canceled.cancel()

    assert len(steps.result(timeout=30)) == 3
    assert signals.result(timeout=30) == [{"k": 0}, {"k": 1}, {"k": 2}]
    assert near.result(timeout=30) == "woke"
    assert far.result(timeout=30) == "woke"
    assert time.monotonic() - started >= 3
    assert retried.result(timeout=30) == 3
    for handle, status in [(failed, "failed"), (canceled, "canceled"), (timed, "timed_out")]:
        wait_for(lambda h=handle: _status(c, h.id) != "running", 30, f"{handle.id} to end")
        assert _status(c, handle.id) == status
    assert c.store.load("failed").error["type"] == "ValueError"
    history = [e.type for e in c.store.load("far").history]
    assert EventType.TIMER_STARTED in history and EventType.TIMER_FIRED in history
    # The sweep runs as a task of its own; about one is waiting at any time.
    assert 1 <= c.task_rows(task_path="beluga_workflows.jobs.sweep_workflows", status="READY") <= 3


def test_kill_9_of_the_workers_during_200_ten_step_runs_loses_nothing_and_repeats_no_recorded_step(
        tasks_cluster):
    c = tasks_cluster
    rng = random.Random()
    c.start_workers(2)
    ids = c.start("celery_tests.steps", [{"steps": 10, "pause": 0.01}] * 200, id_prefix="kill")
    kills = 0
    deadline = time.monotonic() + 150
    while c.count("running") > 0 and kills < 4 and time.monotonic() < deadline:
        time.sleep(rng.uniform(1.0, 3.0))
        if c.count("running") == 0:
            break
        c.kill_workers()
        kills += 1
        time.sleep(rng.uniform(0, 0.5))
        c.start_workers(2)
    took = c.wait_ended(200, timeout=180)
    print(f"{kills} kill -9 rounds of both db_workers ({c.kind}); the rest took {took:.1f} s")
    assert kills >= 1
    repeated = c.check_steps_ran_once(ids, 10, faulty=c.killed_groups)
    print(f"steps in flight in a killed worker, run again: {len(repeated)}")


def test_timers_due_while_every_worker_was_down_fire_after_they_restart(tasks_cluster):
    c = tasks_cluster
    c.start_workers(2)
    ids = c.start("celery_tests.sleeper", [{"seconds": 2}] * 5, id_prefix="down")

    def all_asleep():
        states = [c.store.load(i, with_history=False) for i in ids]
        return all(s.wait_kind == "timer" and not s.lease_owner for s in states)

    wait_for(all_asleep, 60, "the runs to suspend on their timers")
    c.kill_workers()
    # Drop the wake-up tasks still queued: only the store's due times (and the waiting sweep
    # task) can bring the runs back.
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.using(c.alias).filter(
        task_path="beluga_workflows.jobs.run_workflow").delete()
    wake_at = max(c.store.load(i, with_history=False).wake_at for i in ids)
    while c.executor.clock.now() < wake_at:
        time.sleep(0.1)
    time.sleep(3)  # the sweep chain's next sweep is overdue too: it recovers everything due
    assert c.count("running") == 5
    restarted = time.monotonic()
    c.start_workers(2)
    c.wait_ended(5, timeout=60)
    took = time.monotonic() - restarted
    print(f"timers due while all db_workers were down fired {took:.1f} s after the restart")
    assert took < 20  # not left for the sweep's 30 s grace
    for workflow_id in ids:
        assert c.store.load(workflow_id, with_history=False).result == "woke"
