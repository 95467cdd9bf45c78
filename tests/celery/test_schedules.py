"""Cron schedules done for real: PostgreSQL, a Redis broker, 2 Celery workers and 2 beat processes.

- A 1-second schedule (6-field cron) with two beat processes sweeping (each every second, the
  cluster's ``RECOVER_INTERVAL``) for 10 s: every tick starts exactly one run (one run id per
  workflow id, no tick twice) and no tick is skipped; pausing it stops the runs at once.
- Catch-up: every process (beats and workers) killed (``kill -9``) for 5 s while two 1-second
  schedules run;
  after the restart the one with ``catch_up=True`` has run every tick of the outage (late), the
  other has skipped them and gone on from the restart.

The runs record themselves in Redis (``workflows.tick_mark``), with the path of the
beluga_workflows package the worker imported: this repository's.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from beluga_workflows.schedules import (
    create_schedule,
    get_schedule,
    pause_schedule,
    scheduled_time,
)

from . import workflows  # noqa: F401 - registers the test workflows
from .conftest import PREFIX, REPO, wait_for

pytestmark = [pytest.mark.celery, pytest.mark.postgres]

EVERY_SECOND = "* * * * * *"


class Beats:
    """Several ``celery beat`` processes (the conftest's ``Cluster`` starts one), each with its
    own schedule file, as separate hosts would run them."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.procs: list = []

    def start(self, count: int) -> None:
        for n in range(count):
            schedule = self.cluster.log_dir / f"beat-{n}-{uuid.uuid4().hex[:6]}"
            self.procs.append(self.cluster._spawn(
                ["beat", "-s", str(schedule), "--max-interval", "1", "--loglevel", "WARNING"],
                f"beat-{n}.log"))

    def stop(self) -> None:
        from .conftest import _kill_group, _reap

        for proc in self.procs:
            _kill_group(proc, 9)
        for proc in self.procs:
            _reap(proc)
        self.procs = []


@pytest.fixture
def beats(cluster):
    started = Beats(cluster)
    yield started
    started.stop()


def records(cluster, schedule_id: str) -> list[dict]:
    key = f"{PREFIX}:ticks:{schedule_id}"  # workflows.ticks_key, as the workers spell it
    return [json.loads(e) for e in cluster.redis.lrange(key, 0, -1)]


def ticks_of(ids) -> list[datetime]:
    return sorted(scheduled_time(workflow_id) for workflow_id in ids)


def runs_of(cluster, schedule_id: str) -> list[str]:
    from beluga_workflows import WorkflowFilter

    return sorted(s.workflow_id for s in cluster.store.list(
        WorkflowFilter(workflow_id_prefix=f"{schedule_id}@")))


def gaps(ticks: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive ticks more than one second apart."""
    return [(a, b) for a, b in zip(ticks, ticks[1:], strict=False) if b - a > timedelta(seconds=1)]


def check_one_run_per_tick(cluster, schedule_id: str) -> list[datetime]:
    """Every run of the schedule ended, ran its step once, and no tick has two runs; the ticks."""
    ids = runs_of(cluster, schedule_id)
    wait_for(lambda: all(not cluster.store.load(i, with_history=False).is_open for i in ids), 60,
             lambda: f"the runs of {schedule_id} to end\n{cluster.log_tail()}")
    entries = records(cluster, schedule_id)
    by_id: dict[str, set[str]] = {}
    for entry in entries:
        by_id.setdefault(entry["wf"], set()).add(entry["run"])
    assert sorted(by_id) == ids, "a run that did not record itself, or a record of no run"
    doubled = {wf: runs for wf, runs in by_id.items() if len(runs) > 1}
    assert not doubled, f"ticks started twice: {doubled}"
    assert len(entries) == len(ids), "a step ran twice"
    packages = {entry["package"] for entry in entries}
    assert packages == {str(REPO / "beluga_workflows" / "__init__.py")}, packages
    return ticks_of(ids)


def test_a_1_second_schedule_with_two_beats_starts_one_run_per_tick_and_pause_stops_it(
        cluster, beats):
    cluster.start_workers(2)
    sid = f"every-second-{uuid.uuid4().hex[:6]}"
    create_schedule(cluster.executor, sid, workflow_type="celery_tests.ticked",
                    cron=EVERY_SECOND, overlap="allow", input={"schedule": sid})
    began = time.monotonic()
    beats.start(2)
    wait_for(lambda: runs_of(cluster, sid), 30, lambda: f"a first run\n{cluster.log_tail()}")
    first_at = time.monotonic()
    time.sleep(10)
    paused = pause_schedule(cluster.executor, sid)
    paused_at = datetime.now(timezone.utc)
    time.sleep(3)
    ticks = check_one_run_per_tick(cluster, sid)
    print(f"{len(ticks)} ticks from {ticks[0]:%H:%M:%S} to {ticks[-1]:%H:%M:%S}; first run "
          f"{first_at - began:.1f} s after the beats started; gaps: {gaps(ticks)}")
    assert 9 <= len(ticks) <= 13, ticks
    assert gaps(ticks) == [], "ticks were skipped"
    # Paused: no tick after the pause (one that fired just before it may land within 1 s).
    assert paused.paused and ticks[-1] <= paused_at + timedelta(seconds=1)
    assert get_schedule(cluster.store, sid).next_fire_at is None


def test_catch_up_runs_the_ticks_missed_while_everything_was_down_and_without_it_they_are_skipped(
        cluster, beats):
    cluster.configure(BELUGA_LEASE_SECONDS=5)  # the runs the kill cut off resume soon
    cluster.start_workers(2)
    suffix = uuid.uuid4().hex[:6]
    replayed, skipped = f"catch-up-{suffix}", f"no-catch-up-{suffix}"
    for sid, catch_up in ((replayed, True), (skipped, False)):
        create_schedule(cluster.executor, sid, workflow_type="celery_tests.ticked",
                        cron=EVERY_SECOND, overlap="allow", catch_up=catch_up,
                        input={"schedule": sid})
    beats.start(2)
    wait_for(lambda: len(runs_of(cluster, replayed)) >= 3 and runs_of(cluster, skipped), 30,
             lambda: f"the first runs\n{cluster.log_tail()}")
    # The outage: every beat and every worker gone (kill -9) for 5 s.
    beats.stop()
    cluster.kill_workers()
    down_from = datetime.now(timezone.utc)
    time.sleep(5)
    down_until = datetime.now(timezone.utc)
    cluster.start_workers(2)
    beats.start(2)
    time.sleep(4)
    for sid in (replayed, skipped):
        pause_schedule(cluster.executor, sid)

    caught_up = check_one_run_per_tick(cluster, replayed)
    assert gaps(caught_up) == [], "catch_up=True left ticks out"
    outage = [t for t in caught_up if down_from + timedelta(seconds=1) < t < down_until]
    assert len(outage) >= 3, caught_up
    late = {e["wf"]: e["t"] for e in records(cluster, replayed)}
    for tick in outage:  # those ran late, after the restart
        workflow_id = f"{replayed}@{tick:%Y%m%dT%H%M%S}Z"
        assert late[workflow_id] >= down_until.timestamp(), workflow_id

    went_on = check_one_run_per_tick(cluster, skipped)
    missing = [t for t in caught_up if down_from + timedelta(seconds=1) < t < down_until
               and t not in went_on]
    assert len(missing) >= 3, (went_on, down_from, down_until)
    assert [t for t in went_on if down_from + timedelta(seconds=1) < t < down_until - timedelta(
        seconds=1)] == [], "catch_up=False ran ticks of the outage"
    assert went_on[-1] >= down_until, "the schedule did not go on after the restart"
    print(f"catch-up: {len(caught_up)} ticks, {len(outage)} of the outage run late; "
          f"without: {len(went_on)} ticks, {len(missing)} of the outage skipped; "
          f"outage {down_from:%H:%M:%S}-{down_until:%H:%M:%S}")

