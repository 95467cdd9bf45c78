"""Flow control (API.md §9) done for real: PostgreSQL, a Redis broker, 4 Celery worker processes.

- Concurrency: 200 runs over 10 keys, at most 2 per key: the activities' recorded enter/leave times
  never have 3 runs of a key inside at once, different keys do run side by side, all complete
  and no slot or waiter row is left; the same while every worker is killed (``kill -9``) twice.
- Throttle: 50 runs at 5 per second start over at least 9 s, never ahead of the throttle's pace.
- Rate limit: 3 users x 5 events, 1 per hour per user: one run per user, the other events
  skipped with the reason (in the send's result and the event's stored outcome).
- Debounce: bursts of events give one run each with the newest event (by ``ts``); a burst
  longer than the timeout fires at the timeout.
- Batch: 95 events in batches of 10: 10 runs, every event in exactly one.
- Priority: a run 600 s ahead starts before the backlog that waited before it.

The activities record in Redis with ``time.time()`` (all processes are on this host, so the
clocks agree); every wait has a deadline.

The events' stored outcomes of the debounce and batch tests are checked last, and a mismatch is
reported as an expected failure (xfail) for now: a known bug of the PostgreSQL store, see
``check_stored_outcomes``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta

import pytest

from beluga_workflows import (
    Event,
    RateLimitExceededError,
    WorkflowFilter,
    WorkflowOptions,
)
from beluga_workflows.engine.events import trigger_workflow_id

from . import workflows as test_workflows  # noqa: F401 - registers the test workflows
from .conftest import ALIAS, PREFIX, wait_for

pytestmark = [pytest.mark.celery, pytest.mark.postgres]

WORKERS = 4
LIMITED = "celery_tests.flow_limited"
KEYS = [f"k-{n}" for n in range(10)]


# -- helpers ---------------------------------------------------------------------------------------

def flow_log(cluster, log: str) -> list[dict]:
    """The records the activities of one test wrote (``workflows.flow_log_key``), in order."""
    return [json.loads(e) for e in cluster.redis.lrange(f"{PREFIX}:flow:{log}", 0, -1)]


def table(name: str):
    from beluga_workflows import models

    return getattr(models, name).objects.using(ALIAS)


def most_inside(spans: list[tuple[float, float]]) -> tuple[int, float]:
    """The most spans ``(enter, leave)`` that hold one instant, and the first such instant.

    A leave at the very instant of an enter is counted first: the slot is freed after the
    activity's leave record and taken before the next one's enter record.
    """
    points = sorted([(enter, 1) for enter, _ in spans] + [(leave, -1) for _, leave in spans])
    inside = best = 0
    when = 0.0
    for at, step in points:
        inside += step
        if inside > best:
            best, when = inside, at
    return best, when


def activity_spans(entries: list[dict], killed_at: dict[int, float]
                   ) -> tuple[list[dict], list[dict]]:
    """Each ``flow_hold`` execution as ``{"wf", "key", "enter", "leave", "cut"}``.

    An execution whose process was killed mid-way never wrote its "leave": it is counted as
    inside until the moment its process group was killed (``killed_at``: when ``kill_workers``
    returned, the processes reaped), so its run's slot is taken to be in use until then at least
    (the slot is really held longer: until the run, re-run elsewhere, ends). Returns the spans
    and the executions that never left although their process was not killed (none expected).
    """
    left = {e["token"]: e for e in entries if e["at"] == "leave"}
    spans, unexplained = [], []
    for enter in (e for e in entries if e["at"] == "enter"):
        leave = left.get(enter["token"])
        if leave is not None:
            spans.append({"wf": enter["wf"], "key": enter["key"], "enter": enter["t"],
                          "leave": leave["t"], "cut": False})
        elif enter["pgid"] in killed_at:
            spans.append({"wf": enter["wf"], "key": enter["key"], "enter": enter["t"],
                          "leave": killed_at[enter["pgid"]], "cut": True})
        else:
            unexplained.append(enter)
    return spans, unexplained


class Starter:
    """Start runs from several threads at once (each with its own database connection), as
    several web processes would, while the test watches (and kills) the workers."""

    def __init__(self, cluster, workflow_type: str, inputs: list, id_prefix: str,
                 threads: int = 4) -> None:
        self.ids = [f"{id_prefix}-{n:04d}" for n in range(len(inputs))]
        self.errors: list[BaseException] = []
        self.began = time.monotonic()
        self.took: float | None = None
        work = list(zip(self.ids, inputs, strict=True))
        self.threads = [threading.Thread(target=self._start, daemon=True,
                                         args=(cluster, workflow_type, work[k::threads]))
                        for k in range(threads)]
        for thread in self.threads:
            thread.start()

    def _start(self, cluster, workflow_type: str, work: list) -> None:
        from django.db import connections

        try:
            for workflow_id, data in work:
                cluster.executor.execute(workflow_type, WorkflowOptions(id=workflow_id, input=data))
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.errors.append(exc)
        finally:
            connections.close_all()
            self.took = time.monotonic() - self.began

    def join(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(deadline - time.monotonic(), 0))
        assert not any(t.is_alive() for t in self.threads), f"the starts took over {timeout} s"
        assert not self.errors, self.errors
        return self.ids


def start_limited(cluster, rng, log: str, count: int = 200) -> Starter:
    """``count`` runs of ``flow_limited``, holding 50-150 ms each, their keys in clumps of 5 (so
    that without the limit the 4 workers would often run 3 or 4 runs of one key at once)."""
    keys = []
    while len(keys) < count:
        order = list(KEYS)
        rng.shuffle(order)
        keys += [key for key in order for _ in range(5)]
    inputs = [{"log": log, "key": key, "hold": round(rng.uniform(0.05, 0.15), 3)}
              for key in keys[:count]]
    return Starter(cluster, LIMITED, inputs, log)


def check_waiting_runs(cluster, limit: int) -> None:
    """While the runs start, those over the limit wait: ``running``, holding no worker, and
    saying what they wait for."""
    waiting = wait_for(lambda: cluster.store.list(WorkflowFilter(
        status="running", wait_kind="concurrency", workflow_type=LIMITED, limit=20)), 30,
        "a run waiting for a slot", interval=0.02)
    for state in waiting:
        assert not state.lease_owner, state  # no worker holds it
        assert re.fullmatch(rf'concurrency "{LIMITED}" key "k-\d" \(\d of {limit} in use\)',
                            state.wait_name), state.wait_name


def sample_usage(cluster, usage: dict) -> None:
    """The store's view of the slots (``flow_usage``): never over the limit; the most waiters."""
    for bucket in cluster.store.flow_usage(LIMITED):
        usage["most_waiting"] = max(usage["most_waiting"], bucket["waiting"])
        if bucket["in_use"] > bucket["limit"]:
            usage["over"].append(bucket)


def wait_all_ended(cluster, total: int, timeout: float, usage: dict) -> None:
    """``cluster.wait_ended``, sampling ``flow_usage`` meanwhile."""
    def ended() -> bool:
        sample_usage(cluster, usage)
        return cluster.count("running") == 0 and cluster.count() == total

    wait_for(ended, timeout, lambda: f"all {total} runs to end: {cluster.describe_open()}\n"
                                     f"{cluster.log_tail()}", interval=0.1)


def check_limit_held(spans: list[dict], limit: int) -> int:
    """No key ever had more than ``limit`` runs inside; returns the most inside across keys."""
    for key in KEYS:
        mine = [(s["enter"], s["leave"]) for s in spans if s["key"] == key]
        inside, when = most_inside(mine)
        assert inside <= limit, (
            f"key {key}: {inside} runs inside at {when:.3f}: "
            f"{[s for s in spans if s['key'] == key and s['enter'] <= when <= s['leave']]}")
    return most_inside([(s["enter"], s["leave"]) for s in spans])[0]


def check_all_completed(cluster, ids: list[str], spans: list[dict]) -> None:
    finished = {s["wf"] for s in spans if not s["cut"]}
    for workflow_id in ids:
        state = cluster.store.load(workflow_id, with_history=False)
        assert state.status.value == "completed", (workflow_id, state.error)
        assert state.result == state.input["key"]
        assert workflow_id in finished, f"{workflow_id} completed without its activity leaving"


def check_stored_outcomes(cluster, expected: dict[str, tuple[list[str], list[str]]]) -> None:
    """Each event's stored outcome: the runs it started and the reasons it was skipped, each
    once (grouped events are decided before their fan-out runs, and a group may fire before
    the fan-out of one of its events: the outcomes are merged, never overwritten)."""
    wrong = []
    for event_id, (started, reasons) in expected.items():
        outcome = cluster.store.get_event(event_id).outcome
        if outcome["started"] != started or [s["reason"] for s in outcome["skipped"]] != reasons:
            wrong.append(f"{event_id}: {outcome} (expected started={started}, skipped={reasons})")
    assert not wrong, f"{len(wrong)} of {len(expected)} stored outcomes are wrong: {wrong[:2]}"


def slot_rows() -> tuple[int, int]:
    return table("ConcurrencySlot").count(), table("ConcurrencyWaiter").count()


# -- concurrency -----------------------------------------------------------------------------------

def test_200_runs_over_10_keys_never_have_more_than_2_of_a_key_inside_at_once(cluster, rng):
    cluster.start_beat()
    cluster.start_workers(WORKERS)
    started = time.monotonic()
    starter = start_limited(cluster, rng, "limit")
    check_waiting_runs(cluster, 2)
    usage = {"most_waiting": 0, "over": []}
    wait_all_ended(cluster, 200, 180, usage)
    took = time.monotonic() - started
    ids = starter.join(10)

    spans, unexplained = activity_spans(flow_log(cluster, "limit"), {})
    assert unexplained == []
    assert len(spans) == 200 and {s["wf"] for s in spans} == set(ids)  # each ran once
    across = check_limit_held(spans, 2)
    # Without a limit across keys, the 4 workers ran runs of different keys side by side.
    assert across > 2, f"at most {across} runs were ever inside at once, across all keys"
    check_all_completed(cluster, ids, spans)
    assert usage["over"] == [], usage["over"]
    assert usage["most_waiting"] >= 3, "the limit was hardly ever reached: the test proved little"
    # Every slot was freed in the write that ended its run; every waiter was promoted.
    assert slot_rows() == (0, 0)
    assert cluster.store.flow_usage() == []
    print(f"concurrency 2 per key, 200 runs over 10 keys on {WORKERS} workers: {took:.1f} s; "
          f"(starts {starter.took:.1f} s from 4 threads); up to {across} inside at once across "
          f"keys; up to {usage['most_waiting']} waiting on a key")


def test_the_limit_holds_while_every_worker_is_killed_twice_and_every_run_completes(cluster, rng):
    # Short leases; lost messages (prefetched by a killed worker) re-sent after 3 s.
    cluster.configure(BELUGA_LEASE_SECONDS=3, BELUGA_TEST_SWEEP_GRACE=3)
    cluster.start_beat()
    cluster.start_workers(WORKERS)
    started = time.monotonic()
    starter = start_limited(cluster, rng, "crash")
    check_waiting_runs(cluster, 2)
    usage = {"most_waiting": 0, "over": []}
    killed_at: dict[int, float] = {}
    kills = []
    for threshold in (rng.randint(30, 60), rng.randint(100, 130)):
        wait_for(lambda t=threshold: sample_usage(cluster, usage)
                 or cluster.count("completed") >= t, 120,
                 lambda t=threshold: f"{t} runs to complete: {cluster.describe_open()}\n"
                         f"{cluster.log_tail()}", interval=0.05)
        done = cluster.count("completed")
        groups = cluster.kill_workers()
        at = time.time()
        killed_at.update(dict.fromkeys(groups, at))
        kills.append({"at": round(time.monotonic() - started, 1), "completed": done})
        time.sleep(rng.uniform(0.0, 0.5))
        cluster.start_workers(WORKERS)
    wait_all_ended(cluster, 200, 240, usage)
    took = time.monotonic() - started
    ids = starter.join(10)
    assert kills[-1]["completed"] < 200, f"the kills came too late: {kills}"

    spans, unexplained = activity_spans(flow_log(cluster, "crash"), killed_at)
    # An execution that never left was in a worker that was killed.
    assert unexplained == [], unexplained
    cut = [s for s in spans if s["cut"]]
    assert cut, "no kill landed while an activity was inside: the test proved nothing"
    across = check_limit_held(spans, 2)
    assert across > 2
    check_all_completed(cluster, ids, spans)
    assert usage["over"] == [], usage["over"]
    # Every run ended (the killed ones re-run after their leases expired), freeing its slots.
    before_sweep = slot_rows()
    cluster.executor.sweep()
    assert slot_rows() == (0, 0)
    assert before_sweep == (0, 0), f"slots/waiters left by ended runs until the sweep: {before_sweep}"
    assert cluster.store.flow_usage() == []
    print(f"concurrency 2 per key, 200 runs, all {WORKERS} workers killed twice: {took:.1f} s; "
          f"(starts {starter.took:.1f} s); kills {kills}; {len(cut)} activities cut off; up to "
          f"{across} inside across keys; up to {usage['most_waiting']} waiting on a key")


# -- throttle --------------------------------------------------------------------------------------

def test_a_throttle_of_5_per_second_starts_50_runs_over_9_seconds_and_drops_none(cluster):
    cluster.start_beat()
    cluster.start_workers(WORKERS)
    t0 = time.time()
    ids = cluster.start("celery_tests.flow_throttled", [{"log": "thr", "key": "acct-1"}] * 50,
                        id_prefix="thr")
    last = cluster.store.load(ids[-1], with_history=False)
    assert last.status.value == "running" and last.wait_kind == "throttle", last
    assert 'throttle "celery_tests.flow_throttled" key "acct-1" (5 per 1s)' in last.wait_name
    assert last.wake_at.timestamp() >= t0 + 9.0 - 0.005  # its start is delayed, not dropped
    cluster.wait_ended(50, timeout=60)

    starts = [e for e in flow_log(cluster, "thr") if e["at"] == "start"]
    assert sorted(e["wf"] for e in starts) == sorted(ids)  # each started once, none dropped
    assert cluster.count("completed") == 50
    times = sorted(e["t"] for e in starts)
    # A burst of 5 at once, then one every 0.2 s: the k-th start no earlier than 0.2 (k - 4) s
    # after the first run was started.
    for k, at in enumerate(times):
        assert at >= t0 + 0.2 * max(0, k - 4) - 0.005, (k, at - t0)
    assert times[-1] - t0 >= 9.0
    assert times[-1] - t0 < 13.0, "the throttled runs started far later than their pace"
    print(f"throttle 5/s, 50 runs: started over {times[-1] - times[0]:.2f} s "
          f"(last {times[-1] - t0:.2f} s after the first execute)")


# -- rate limit ------------------------------------------------------------------------------------

def test_a_rate_limit_of_1_per_hour_per_user_starts_one_run_per_user_and_skips_the_rest(cluster):
    from beluga_workflows import models

    rated = "celery_tests.flow_rated"
    cluster.start_beat()
    cluster.start_workers(WORKERS)
    users = ["u-a", "u-b", "u-c"]
    results = {user: [] for user in users}
    for n in range(5):
        for user in users:
            results[user].append(cluster.executor.send_event(Event(
                "celery-tests/flow-ping", {"user": user, "n": n}, id=f"ping-{user}-{n}")))

    for user in users:
        first, *rest = results[user]
        assert first.started == (trigger_workflow_id(rated, first.event_id),) and not first.skipped
        for result in rest:
            assert result.started == () and result.deferred == ()
            (skip,) = result.skipped
            assert skip["workflow_type"] == rated
            assert skip["reason"].startswith(f'rate limit "{rated}" key "{user}" (1 per 1h) '
                                             f"reached"), skip
    wait_for(lambda: not models.Event.objects.using(ALIAS).filter(fanned_out_at__isnull=True)
             .exists() and cluster.count("completed") == 3, 60,
             lambda: f"the 15 events to be fanned out and 3 runs to complete: "
                     f"{cluster.describe_open()}\n{cluster.log_tail()}", interval=0.1)

    runs = cluster.store.list(WorkflowFilter(workflow_type=rated))
    assert sorted(r.workflow_id for r in runs) == sorted(
        trigger_workflow_id(rated, f"ping-{user}-0") for user in users)
    assert all(r.status.value == "completed" and r.result == r.input["id"] for r in runs)
    for user in users:
        first, *rest = results[user]
        record = cluster.store.get_event(first.event_id)
        assert record.outcome["started"] == [trigger_workflow_id(rated, first.event_id)]
        assert record.outcome["skipped"] == []
        for result in rest:
            record = cluster.store.get_event(result.event_id)
            assert record.outcome["started"] == [], record.outcome
            assert record.outcome["skipped"] == list(result.skipped), record.outcome

    # The same limit on runs started by execute: the second start of a key raises, stores nothing.
    calls = "celery_tests.flow_rated_calls"
    cluster.executor.execute(calls, WorkflowOptions(id="call-a-0", input={"user": "u-a"}))
    with pytest.raises(RateLimitExceededError, match=f'rate limit "{calls}" key "u-a"') as refused:
        cluster.executor.execute(calls, WorkflowOptions(id="call-a-1", input={"user": "u-a"}))
    first = cluster.store.load("call-a-0", with_history=False)
    assert refused.value.retry_at == first.created_at + timedelta(hours=1)
    assert cluster.store.load("call-a-1") is None
    cluster.executor.execute(calls, WorkflowOptions(id="call-b-0", input={"user": "u-b"}))
    cluster.wait_ended(5, timeout=60)
    assert cluster.count("completed", workflow_type=calls) == 2


# -- debounce --------------------------------------------------------------------------------------

def test_a_debounce_starts_one_run_per_burst_with_its_newest_event_and_caps_a_long_burst(cluster):
    from beluga_workflows import models

    debounced = "celery_tests.flow_debounced"
    cluster.start_beat()
    cluster.start_workers(WORKERS)
    # Three bursts of a doc (4 events 0.3 s apart, 2.4 s between bursts); in the second, the last
    # event sent carries an older ts. Meanwhile another doc gets an event every 0.4 s for 4.8 s.
    plan = []
    for burst, begin in enumerate((0.0, 3.3, 6.6)):
        plan += [(begin + 0.3 * i, "doc-short", f"s{burst}-{i}", burst == 1 and i == 3)
                 for i in range(4)]
    plan += [(0.1 + 0.4 * i, "doc-long", f"l-{i:02d}", False) for i in range(13)]
    plan.sort()
    sent: dict[str, dict] = {}
    origin = time.monotonic() + 0.2
    for at, doc, rev, older in plan:
        while (left := origin + at - time.monotonic()) > 0:
            time.sleep(min(left, 0.01))
        ts = cluster.executor.clock.now() - timedelta(seconds=10) if older else None
        result = cluster.executor.send_event(Event("celery-tests/flow-edit",
                                                   {"doc": doc, "rev": rev}, id=f"edit-{rev}",
                                                   ts=ts))
        sent[rev] = {"result": result, "sent": time.monotonic() - origin, "older": older}
    # The sender kept to the plan (else the bursts' gaps would not be what the test says).
    late = {rev: round(sent[rev]["sent"] - at, 2) for at, _, rev, _ in plan
            if sent[rev]["sent"] - at > 0.25}
    assert not late, f"the sender lagged behind its plan: {late}"

    bursts = [[f"s{b}-{i}" for i in range(4)] for b in range(3)]
    long_burst = [f"l-{i:02d}" for i in range(13)]
    older = "s1-3"
    newest = {0: "s0-3", 1: "s1-2", 2: "s2-3"}  # by ts: the older event is not the newest
    for rev, s in sent.items():
        result = s["result"]
        assert result.started == ()
        if rev == older:
            (skip,) = result.skipped
            assert skip["workflow_type"] == debounced and "newer" in skip["reason"], skip
            assert result.deferred == ()
        else:
            assert result.skipped == () and [d["workflow_type"] for d in result.deferred] == [
                debounced], result

    def settled() -> bool:  # 5 runs done, no group left to fire, every event fanned out
        return (cluster.count("completed", workflow_type=debounced) >= 5
                and not models.EventGroup.objects.using(ALIAS).exists()
                and not models.Event.objects.using(ALIAS).filter(fanned_out_at__isnull=True)
                .exists())

    wait_for(settled, 30, lambda: f"the debounced runs: {cluster.describe_open()}\n"
                                  f"{cluster.log_tail()}", interval=0.1)
    cluster.wait_ended(5, timeout=30)
    runs = cluster.store.list(WorkflowFilter(workflow_type=debounced))
    short = sorted((r for r in runs if r.input["data"]["doc"] == "doc-short"),
                   key=lambda r: r.created_at)
    long = sorted((r for r in runs if r.input["data"]["doc"] == "doc-long"),
                  key=lambda r: r.created_at)

    # One run per burst, with the burst's newest event (by ts), not the older one sent last.
    assert len(short) == 3, [(r.workflow_id, r.created_at) for r in short]
    for burst, run in enumerate(short):
        rev = newest[burst]
        assert run.workflow_id == trigger_workflow_id(debounced, f"edit-{rev}")
        assert run.status.value == "completed" and run.result == {"id": f"edit-{rev}", "rev": rev}
        last_received = max(cluster.store.get_event(f"edit-{r}").received_at
                            for r in bursts[burst])
        assert run.created_at >= last_received + timedelta(seconds=1) - timedelta(milliseconds=5)
    assert cluster.store.load(trigger_workflow_id(debounced, f"edit-{older}")) is None
    # What each event's stored outcome says (checked last: see ``check_stored_outcomes``).
    expected_outcomes = {f"edit-{older}": (
        [], ["debounce: event 'edit-s1-2' of the same burst is newer (its ts is later)"])}
    for b, burst in enumerate(bursts):
        kept = [rev for rev in burst if rev != older]
        for rev, newer in zip(kept[:-1], kept[1:], strict=True):  # superseded by the next one
            expected_outcomes[f"edit-{rev}"] = (
                [], [f"debounce: superseded by the newer event 'edit-{newer}'"])
        expected_outcomes[f"edit-{newest[b]}"] = (
            [trigger_workflow_id(debounced, f"edit-{newest[b]}")], [])

    # The long burst never paused for 1 s: its first run started at the 3 s timeout, with the
    # newest event received by then; the rest of the burst made a second run, with its last event.
    assert len(long) == 2, [(r.workflow_id, r.input["data"]) for r in long]
    first_received = cluster.store.get_event("edit-l-00").received_at
    waited = (long[0].created_at - first_received).total_seconds()
    assert 3.0 - 0.005 <= waited <= 4.0, f"the long burst's first run came {waited:.2f} s in"
    before = [rev for rev in long_burst
              if cluster.store.get_event(f"edit-{rev}").received_at
              < first_received + timedelta(seconds=3)]
    assert long[0].input["id"] == f"edit-{before[-1]}"
    assert long[1].input["id"] == f"edit-{long_burst[-1]}"
    assert all(r.status.value == "completed" for r in long)
    print(f"debounce: 3 bursts -> {len(short)} runs; a 4.8 s burst -> first run {waited:.2f} s "
          f"after its first event (timeout 3 s), {len(long)} runs in all")
    check_stored_outcomes(cluster, expected_outcomes)


# -- batch -----------------------------------------------------------------------------------------

def test_95_events_in_batches_of_10_make_10_runs_with_every_event_in_exactly_one(cluster):
    from beluga_workflows import models

    batched = "celery_tests.flow_batched"
    cluster.start_beat()
    cluster.start_workers(WORKERS)
    event_ids = [f"row-{n:03d}" for n in range(95)]
    sent_at = []
    for n, event_id in enumerate(event_ids):
        result = cluster.executor.send_event(Event("celery-tests/flow-row",
                                                   {"table": "orders", "n": n}, id=event_id))
        sent_at.append(time.monotonic())
        assert result.started == () and result.skipped == (), result
        assert [d["workflow_type"] for d in result.deferred] == [batched], result
    # Each batch of 10 filled well within its 1 s timeout (else it would fire short).
    slowest = max(sent_at[k + 9] - sent_at[k] for k in range(0, 90, 10))
    assert slowest < 0.8, f"the sender took {slowest:.2f} s for 10 events"

    wait_for(lambda: cluster.count("completed", workflow_type=batched) >= 10
             and not models.EventGroup.objects.using(ALIAS).exists()
             and not models.Event.objects.using(ALIAS).filter(fanned_out_at__isnull=True).exists(),
             30, lambda: f"the 10 batches: {cluster.describe_open()}\n{cluster.log_tail()}",
             interval=0.1)
    cluster.wait_ended(10, timeout=30)

    runs = sorted(cluster.store.list(WorkflowFilter(workflow_type=batched)),
                  key=lambda r: r.created_at)
    assert [len(r.input) for r in runs] == [10] * 9 + [5]
    for k, run in enumerate(runs):
        assert run.workflow_id.startswith(f"{batched}:batch:")
        assert run.status.value == "completed"
        assert run.result == [e["id"] for e in run.input] == event_ids[10 * k:10 * k + 10]
    check_stored_outcomes(cluster, {event_id: ([run.workflow_id], [])
                                    for run in runs for event_id in run.result})


# -- priority --------------------------------------------------------------------------------------

def test_a_run_600_seconds_ahead_starts_before_the_backlog_that_waited_longer(cluster):
    queued = "celery_tests.flow_queued"
    release = f"{PREFIX}:flow:release"
    cluster.start_beat()
    cluster.start_workers(WORKERS)

    def start(workflow_id: str, priority: int | None = None, **data) -> str:
        return cluster.executor.execute(queued, WorkflowOptions(
            id=workflow_id, input={"log": "prio", "queue": "q", **data}, priority=priority)).id

    # The first run holds the only slot (inside its activity) until the test releases it.
    blocker = start("prio-blocker", until=release)
    wait_for(lambda: flow_log(cluster, "prio"), 30,
             lambda: f"the first run to start\n{cluster.log_tail()}")
    backlog = [start(f"prio-backlog-{n}") for n in range(5)]
    ahead_300 = start("prio-ahead-300", p=300)  # the workflow's priority expression
    ahead_600 = start("prio-ahead-600", priority=600, p=-600)  # the option overrides it

    for workflow_id in [*backlog, ahead_300, ahead_600]:
        state = cluster.store.load(workflow_id, with_history=False)
        assert state.status.value == "running" and not state.lease_owner, state
        assert state.wait_kind == "concurrency"
        assert state.wait_name == f'concurrency "{queued}" key "q" (1 of 1 in use)'
    assert cluster.store.flow_usage(queued) == [{
        "workflow_type": queued, "scope": "concurrency:0", "key": "q", "in_use": 1, "limit": 1,
        "waiting": 7}]
    assert [e["wf"] for e in flow_log(cluster, "prio")] == [blocker]  # nobody else got in

    cluster.redis.set(release, "1")
    cluster.wait_ended(8, timeout=60)
    starts = sorted(flow_log(cluster, "prio"), key=lambda e: e["t"])
    assert [e["wf"] for e in starts] == [blocker, ahead_600, ahead_300, *backlog]
    assert slot_rows() == (0, 0)
