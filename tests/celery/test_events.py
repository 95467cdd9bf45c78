"""Issue 12's "must show" for events, done for real: PostgreSQL, a Redis broker, Celery workers.

- Fan-out under kill -9: 300 events, each starting three workflows, while both worker processes
  are killed (and restarted) during the fan-out: every (event, workflow) pair has exactly one run.
- The wait race: 500 runs each wait for their own event, sent from 4 processes at random moments
  before each run started, between its start and its wait, and after it began waiting: every run
  receives its own event exactly once, and nobody else's.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from beluga_workflows import Event, EventType, WorkflowOptions
from beluga_workflows.engine.events import trigger_workflow_id

from . import workflows as test_workflows  # noqa: F401 - registers the triggered workflows
from .conftest import ALIAS, PREFIX, REPO, wait_for

pytestmark = [pytest.mark.celery, pytest.mark.postgres]

TRIGGERED = ["celery_tests.on_placed_a", "celery_tests.on_placed_b", "celery_tests.on_placed_c"]


def event_rows():
    from beluga_workflows import models

    return models.Event.objects.using(ALIAS)


def test_300_events_fanned_out_while_workers_are_killed_start_each_run_exactly_once(cluster, rng):
    from beluga_workflows import models

    # Short leases; lost run messages re-sent after 3 s, fan-outs left undone after 2 s.
    cluster.configure(BELUGA_LEASE_SECONDS=3, BELUGA_TEST_SWEEP_GRACE=3,
                      BELUGA_TEST_FAN_OUT_GRACE=2)
    cluster.start_beat()
    cluster.start_workers(2)
    started = time.monotonic()
    event_ids = [f"placed-{n:04d}" for n in range(300)]
    for event_id in event_ids:
        result = cluster.executor.send_event(Event("celery-tests/placed", {"n": event_id},
                                                   id=event_id))
        assert result.started == tuple(trigger_workflow_id(t, event_id) for t in TRIGGERED)
    sent = time.monotonic() - started
    kills = []
    for _ in range(2):
        time.sleep(rng.uniform(0.1, 0.6))
        fanned = event_rows().filter(fanned_out_at__isnull=False).count()
        groups = cluster.kill_workers()
        kills.append({"at": round(time.monotonic() - started, 2), "fanned_out": fanned,
                      "runs": cluster.count(), "groups": groups})
        time.sleep(rng.uniform(0.0, 0.5))
        cluster.start_workers(2)
    assert kills[0]["fanned_out"] < 300, f"the first kill came after the fan-out: {kills}"

    total = 3 * len(event_ids)
    wait_for(lambda: cluster.count("completed") == total
             and not event_rows().filter(fanned_out_at__isnull=True).exists(), 120,
             lambda: f"{total} runs to complete and every event to be fanned out: "
                     f"{cluster.describe_open()}\n{cluster.log_tail()}", interval=0.2)
    elapsed = time.monotonic() - started

    assert cluster.count() == total
    assert models.EventDelivery.objects.using(ALIAS).count() == total
    for event_id in event_ids:
        record = cluster.store.get_event(event_id)
        expected = [trigger_workflow_id(t, event_id) for t in TRIGGERED]
        assert sorted(record.outcome["started"]) == sorted(expected), record
        for workflow_id in expected:
            state = cluster.store.load(workflow_id, with_history=False)
            assert state.status.value == "completed" and state.result == event_id, state
            # Every run of this id that ever executed its first step: exactly this one.
            runs = cluster.redis.smembers(f"{PREFIX}:starts:{workflow_id}")
            assert runs == {state.run_id}, (workflow_id, runs, state.run_id)
    print(f"300 events x 3 triggered workflows: sent in {sent:.1f} s, all {total} runs completed "
          f"{elapsed:.1f} s after the first send; kills {kills}")


def test_500_runs_each_receive_their_own_event_exactly_once_however_the_sends_race(
        cluster, tmp_path, rng):
    from beluga_workflows import models

    cluster.start_beat()
    cluster.start_workers(2)
    ids = [f"race-{n:04d}" for n in range(500)]
    start_at, span = time.time() + 4.0, 8.0  # the senders' Django start-up fits in the lead
    starts = {workflow_id: start_at + rng.random() * span for workflow_id in ids}
    sends = {}
    for n, workflow_id in enumerate(ids):  # before the start, around it, well after it
        offset = [rng.uniform(-1.5, -0.01), rng.uniform(0.0, 0.06), rng.uniform(0.1, 2.0)][n % 3]
        sends[workflow_id] = starts[workflow_id] + offset
    senders = []
    for k in range(4):  # each sender process owns a quarter of the events
        schedule = tmp_path / f"sends-{k}.txt"
        schedule.write_text("".join(f"{wf} {sends[wf]!r}\n" for wf in ids[k::4]))
        senders.append(subprocess.Popen(
            [sys.executable, "-m", "tests.celery.clients", "paid", str(schedule)], cwd=REPO,
            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for at, workflow_id in sorted((at, wf) for wf, at in starts.items()):
        while (left := at - time.time()) > 0:
            time.sleep(min(left, 0.005))
        cluster.executor.execute("celery_tests.await_paid", WorkflowOptions(
            id=workflow_id, input={"data": {"order_id": workflow_id}}))
    for proc in senders:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    cluster.wait_ended(500, timeout=120)
    elapsed = time.time() - start_at

    timing = {"before the run started": 0, "before the run waited": 0, "while it waited": 0}
    for workflow_id in ids:
        state = cluster.store.load(workflow_id)
        assert state.status.value == "completed", (workflow_id, state.error)
        assert state.result == {"id": f"paid-{workflow_id}", "data": {"order_id": workflow_id}}
        received = [e for e in state.history if e.type is EventType.EVENT_RECEIVED]
        assert len(received) == 1, (workflow_id, received)
        record = cluster.store.get_event(f"paid-{workflow_id}")
        assert set(record.outcome["woken"]) <= {workflow_id}, record  # it woke nobody else
        (wait,) = [e for e in state.history if e.type is EventType.EVENT_WAIT_STARTED]
        if record.received_at < state.created_at:
            timing["before the run started"] += 1
        elif record.received_at < wait.timestamp:
            timing["before the run waited"] += 1
        else:
            timing["while it waited"] += 1
    assert models.EventWait.objects.using(ALIAS).count() == 0  # every wait ended with its run
    assert all(timing.values()), f"the sends did not cover every case: {timing}"
    print(f"500 runs x wait_for_event, events from 4 processes: all completed {elapsed:.1f} s "
          f"after the first start; events received {timing}")
