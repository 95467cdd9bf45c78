"""Cron schedules (API.md §10): the ``Cron`` declaration and its ticks, and firing them from the
``Schedule`` table on a virtual clock.

- ``Cron`` refuses bad expressions, unknown time zones, bad policies and non-JSON input when it
  is built (so at decoration time); 6-field expressions have a leading seconds field; daylight
  saving in Europe/Berlin: a daily 02:30 fires once on the spring-forward day (at 03:00 CEST)
  and once on the fall-back day (at the first 02:30).
- ``fire_schedules`` on the memory store and the django store (SQLite, PostgreSQL), the clock
  moved by the test: one run per tick with ids ``<schedule>@<tick>``; without catch-up the
  ticks missed while nothing fired are skipped, with it they are run late (at most 100 per
  call); overlap skip / allow / cancel_previous; pause and resume; trigger now; a type this
  process does not know is not fired; declared schedules are synced (created, changed, marked
  when removed from the code).
- Two threads firing the same 1-second schedule at once on PostgreSQL, 40 ticks: each tick
  starts exactly one run, and only the winner of a tick reports its next tick.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from beluga_workflows import Cron, InvalidInputError, Signal, WorkflowFilter, workflow
from beluga_workflows.engine import registry
from beluga_workflows.engine.clock import VirtualClock
from beluga_workflows.models import Schedule
from beluga_workflows.schedules import (
    InvalidScheduleError,
    create_schedule,
    delete_schedule,
    fire_schedules,
    get_schedule,
    pause_schedule,
    resume_schedule,
    scheduled_time,
    schedules_database,
    sync_declared_schedules,
    tick_workflow_id,
    trigger_schedule,
    update_schedule,
)
from beluga_workflows.testing import TimeSkippingExecutor

from .support import unique

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])

UTC = timezone.utc
START = datetime(2025, 6, 2, 12, 0, 0, tzinfo=UTC)
STORES = ["memory", "django-sqlite", pytest.param("django-postgres", marks=pytest.mark.postgres)]


@workflow(name="engine.schedules.echo")
def echo(ctx, value=None):
    return value


@workflow(name="engine.schedules.waits")
def waits(ctx, value=None):
    return ctx.receive_signal("go")


@pytest.fixture
def executor(store):
    """A time-skipping executor on the store under test; its virtual clock starts at ``START``."""
    instance = TimeSkippingExecutor(store=store, clock=VirtualClock(START))
    yield instance
    instance.close()


def at(executor, moment: datetime) -> datetime:
    executor.clock.advance_to(moment)
    return executor.clock.now()


def runs_of(executor, schedule_id: str) -> list[str]:
    states = executor.store.list(WorkflowFilter(workflow_id_prefix=f"{schedule_id}@"))
    return sorted(state.workflow_id for state in states)


def ids_for(schedule_id: str, *ticks: datetime) -> list[str]:
    return sorted(tick_workflow_id(schedule_id, tick) for tick in ticks)


# -- Cron: declaration and ticks -----------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"expression": "61 * * * *"}, "bad cron expression '61 * * * *': bad minute"),
    ({"expression": "* * *"}, "it has 3 field(s)"),
    ({"expression": "0 0 30 2 *"}, "bad day-of-month"),
    ({"expression": "@reboot"}, "unknown cron alias '@reboot'"),
    ({"expression": ""}, "must not be empty"),
    ({"expression": 5}, "must be a string"),
    ({"expression": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"expression": "0 3 * * *", "timezone": ""}, "time zone name"),
    ({"expression": "0 3 * * *", "overlap": "never"}, "overlap must be one of"),
    ({"expression": "0 3 * * *", "catch_up": "yes"}, "catch_up must be True or False"),
    ({"expression": "0 3 * * *", "input": object()}, "schedule input is not JSON-serialisable"),
])
@pytest.mark.parametrize("store", ["memory"], indirect=True)
def test_bad_declarations_are_refused_at_decoration_time(store, kwargs, message):
    with pytest.raises(InvalidInputError) as caught:
        @workflow(name=unique("engine.schedules.bad"), schedule=Cron(**kwargs))
        def never(ctx):  # pragma: no cover - never registered
            return None
    assert message in str(caught.value)


@pytest.mark.parametrize("store", ["memory"], indirect=True)
def test_a_schedule_must_be_a_cron_or_a_list_of_them(store):
    for bad in ("0 3 * * *", 42, [Cron("0 3 * * *"), "0 4 * * *"]):
        with pytest.raises(InvalidInputError, match="schedule must be a Cron or a list"):
            workflow(name=unique("engine.schedules.bad"), schedule=bad)


def test_expressions_are_normalised_and_six_fields_lead_with_seconds():
    assert Cron("  0   3 * *   * ").expression == "0 3 * * *"
    assert Cron("@daily").expression == "0 0 * * *"
    every_second = Cron("*/1 * * * * *")
    assert every_second.ticks(START, START + timedelta(seconds=3)) == [
        START + timedelta(seconds=n) for n in (1, 2, 3)]
    thirty = Cron("30 0 * * * *")  # second 30 of minute 0 of every hour
    assert thirty.next_after(START) == START + timedelta(seconds=30)
    assert Cron("0 3 * * *").latest_at(START) == START.replace(hour=3)
    assert Cron("0 12 * * *").latest_at(START) == START  # at or before


def test_a_daily_0230_in_berlin_fires_once_on_both_dst_days():
    cron = Cron("30 2 * * *", timezone="Europe/Berlin")
    spring = cron.ticks(datetime(2025, 3, 29, 12, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
    # 02:30 does not exist on March 30: it fires once, at 03:00 CEST (01:00 UTC).
    assert spring == [datetime(2025, 3, 30, 1, 0, tzinfo=UTC),
                      datetime(2025, 3, 31, 0, 30, tzinfo=UTC)]
    autumn = cron.ticks(datetime(2025, 10, 25, 12, tzinfo=UTC), datetime(2025, 10, 28, tzinfo=UTC))
    # 02:30 happens twice on October 26 (CEST, then CET): it fires once, at the first.
    assert autumn == [datetime(2025, 10, 26, 0, 30, tzinfo=UTC),
                      datetime(2025, 10, 27, 1, 30, tzinfo=UTC)]
    # An hourly schedule does fire in both 02:xx hours: the wall clock passes each.
    hourly = Cron("30 * * * *", timezone="Europe/Berlin").ticks(
        datetime(2025, 10, 26, 0, 0, tzinfo=UTC), datetime(2025, 10, 26, 2, 0, tzinfo=UTC))
    assert hourly == [datetime(2025, 10, 26, 0, 30, tzinfo=UTC),
                      datetime(2025, 10, 26, 1, 30, tzinfo=UTC)]


def test_scheduled_time_reads_the_tick_back_from_a_run_id():
    tick = datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    assert scheduled_time(tick_workflow_id("nightly", tick)) == tick
    assert scheduled_time("nightly@now-20250330T010203.000042Z") == tick.replace(
        minute=2, second=3, microsecond=42)
    assert scheduled_time("order-42") is None


# -- firing on a virtual clock ----------------------------------------------------------------------

@pytest.mark.parametrize("store", STORES, indirect=True)
def test_each_tick_starts_one_run_and_fires_again_only_at_the_next(executor):
    sid = unique("every-minute")
    row = create_schedule(executor, sid, workflow_type="engine.schedules.echo",
                          cron="* * * * *", input={"n": 1})
    first = START + timedelta(minutes=1)
    assert row.next_fire_at == first and row.version == 0
    assert fire_schedules(executor, at(executor, first - timedelta(seconds=1))) == []
    started = fire_schedules(executor, at(executor, first + timedelta(seconds=2)))
    assert started == [f"{sid}@20250602T120100Z"]
    assert fire_schedules(executor, at(executor, first + timedelta(seconds=30))) == []  # once
    row = get_schedule(executor.store, sid)
    assert (row.next_fire_at, row.last_fire_at) == (first + timedelta(minutes=1), first)
    assert (row.last_workflow_id, row.last_outcome) == (started[0], "started")
    executor.run_until_idle()
    assert executor.get_handle(started[0]).result() == {"n": 1}


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_without_catch_up_the_ticks_missed_in_an_outage_are_skipped(executor):
    sid = unique("no-catch-up")
    create_schedule(executor, sid, workflow_type="engine.schedules.echo", cron="* * * * *")
    # Nothing fired for 10 minutes: the latest tick (30 s ago) runs, the 9 before it do not.
    now = at(executor, START + timedelta(minutes=10, seconds=30))
    assert fire_schedules(executor, now) == [f"{sid}@20250602T121000Z"]
    row = get_schedule(executor.store, sid)
    assert row.next_fire_at == START + timedelta(minutes=11)
    assert "9 missed tick(s) before it skipped" in row.last_note
    # Nothing for 3 hours: the latest tick is past the grace too, so nothing runs at all.
    now = at(executor, START + timedelta(hours=3, minutes=10, seconds=30))
    assert fire_schedules(executor, now, grace=timedelta(seconds=10)) == []
    row = get_schedule(executor.store, sid)
    assert row.last_outcome == "missed" and "catch_up is off" in row.last_note
    assert row.next_fire_at == START + timedelta(hours=3, minutes=11)
    assert len(runs_of(executor, sid)) == 1


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_with_catch_up_the_missed_ticks_run_late_100_per_call(executor):
    sid = unique("catch-up")
    create_schedule(executor, sid, workflow_type="engine.schedules.echo", cron="*/1 * * * * *",
                    catch_up=True, overlap="allow")
    now = at(executor, START + timedelta(seconds=130))
    first = fire_schedules(executor, now)
    assert len(first) == 100 and first[0] == f"{sid}@20250602T120001Z"
    assert len(fire_schedules(executor, now)) == 30
    assert fire_schedules(executor, now) == []
    expected = ids_for(sid, *(START + timedelta(seconds=n) for n in range(1, 131)))
    assert runs_of(executor, sid) == expected


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_the_berlin_dst_days_fire_once_each_when_fired_from_the_table(executor):
    sid = unique("berlin")
    executor.clock = VirtualClock(datetime(2025, 3, 29, 12, tzinfo=UTC))
    create_schedule(executor, sid, workflow_type="engine.schedules.echo", cron="30 2 * * *",
                    timezone="Europe/Berlin", overlap="allow")
    started = []

    def sweep_until(end: datetime) -> None:
        # Sweeps every 30 minutes, and one right after each tick.
        while executor.clock.now() < end:
            due = get_schedule(executor.store, sid).next_fire_at
            step = min(executor.clock.now() + timedelta(minutes=30), due + timedelta(seconds=1))
            started.extend(fire_schedules(executor, at(executor, step), ids=[sid]))

    sweep_until(datetime(2025, 4, 1, tzinfo=UTC))
    executor.clock = VirtualClock(datetime(2025, 10, 25, 12, tzinfo=UTC))
    resume_schedule(executor, pause_schedule(executor, sid).pk)  # re-timed from the new "now"
    sweep_until(datetime(2025, 10, 28, tzinfo=UTC))
    assert started == [f"{sid}@20250330T010000Z", f"{sid}@20250331T003000Z",
                       f"{sid}@20251026T003000Z", f"{sid}@20251027T013000Z"]


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_overlap_skip_allow_and_cancel_previous(executor):
    skip, allow, cancel = unique("skip"), unique("allow"), unique("cancel")
    for sid, overlap in ((skip, "skip"), (allow, "allow"), (cancel, "cancel_previous")):
        create_schedule(executor, sid, workflow_type="engine.schedules.waits", cron="* * * * *",
                        overlap=overlap)
    ids = [skip, allow, cancel]
    minute = timedelta(minutes=1)
    fire_schedules(executor, at(executor, START + minute), ids=ids)
    executor.run_until_idle()  # each first run now waits for its signal
    fire_schedules(executor, at(executor, START + 2 * minute), ids=ids)
    executor.run_until_idle()
    assert runs_of(executor, skip) == [f"{skip}@20250602T120100Z"]
    row = get_schedule(executor.store, skip)
    assert row.last_outcome == "skipped"
    assert row.last_note == f"the previous run {skip}@20250602T120100Z is still open"
    assert len(runs_of(executor, allow)) == 2
    first, second = runs_of(executor, cancel)
    assert executor.store.load(first).status.value == "canceled"
    assert executor.store.load(second).is_open
    assert f"canceled the previous run {first}" in get_schedule(executor.store, cancel).last_note
    # Once the open run ends, "skip" starts the next tick's run again.
    executor.signal(f"{skip}@20250602T120100Z", Signal("go", 1))
    executor.run_until_idle()
    fire_schedules(executor, at(executor, START + 3 * minute), ids=ids)
    assert runs_of(executor, skip) == ids_for(skip, START + minute, START + 3 * minute)


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_pause_stops_the_ticks_and_resume_goes_on_from_now_without_replaying(executor):
    sid = unique("paused")
    create_schedule(executor, sid, workflow_type="engine.schedules.echo", cron="* * * * *",
                    catch_up=True)
    row = pause_schedule(executor, sid)
    assert row.paused and row.next_fire_at is None
    assert fire_schedules(executor, at(executor, START + timedelta(minutes=5))) == []
    row = resume_schedule(executor, sid)
    assert not row.paused and row.next_fire_at == START + timedelta(minutes=6)
    assert fire_schedules(executor, at(executor, START + timedelta(minutes=6))) == [
        f"{sid}@20250602T120600Z"]  # catch-up does not replay the paused minutes


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_trigger_now_starts_a_run_without_moving_the_timetable(executor):
    sid = unique("trigger")
    row = create_schedule(executor, sid, workflow_type="engine.schedules.waits",
                          cron="0 3 * * *", paused=True)
    fired = trigger_schedule(executor, sid)
    assert fired.outcome == "started"
    assert fired.workflow_id == f"{sid}@now-20250602T120000.000000Z"
    assert scheduled_time(fired.workflow_id) == START
    executor.run_until_idle()
    after = get_schedule(executor.store, sid)
    assert (after.next_fire_at, after.paused, after.version) == (None, True, row.version)
    assert after.last_workflow_id == fired.workflow_id
    executor.clock.advance(1)
    again = trigger_schedule(executor, sid)  # overlap "skip": its run is still open
    assert (again.outcome, again.workflow_id) == ("skipped", fired.workflow_id)
    assert trigger_schedule(executor, sid, overlap="allow").outcome == "started"
    with pytest.raises(InvalidInputError, match="overlap must be one of"):
        trigger_schedule(executor, sid, overlap="sometimes")


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_a_schedule_of_a_type_this_process_does_not_know_is_not_fired_here(executor):
    table = Schedule.objects.using(schedules_database(executor.store))
    table.create(id="unknown-type", workflow_type="engine.schedules.nowhere",
                            cron="* * * * *", next_fire_at=START, created_at=START,
                            updated_at=START)
    assert fire_schedules(executor, at(executor, START + timedelta(seconds=1)),
                          ids=["unknown-type"]) == []
    row = table.get(pk="unknown-type")
    assert row.next_fire_at == START and row.version == 0  # left for a process that knows it
    assert "is not registered in this process" in row.last_note


@pytest.mark.parametrize("store", ["memory"], indirect=True)
def test_bad_fields_are_refused_naming_the_field(executor):
    good = {"workflow_type": "engine.schedules.echo", "cron": "0 3 * * *"}
    cases = [
        ("bad id!", good, "id", "a slug"),
        ("ok", {**good, "cron": "0 3 * *"}, "cron", "it has 4 field"),
        ("ok", {**good, "timezone": "Europe/Atlantis"}, "timezone", "unknown time zone"),
        ("ok", {**good, "workflow_type": "nope"}, "workflow_type", "unknown workflow type"),
        ("ok", {**good, "overlap": "both"}, "overlap", "overlap must be one of"),
    ]
    for sid, fields, field, message in cases:
        with pytest.raises(InvalidScheduleError, match=message) as caught:
            create_schedule(executor, sid, **fields)
        assert caught.value.field == field
    assert not Schedule.objects.exists()
    create_schedule(executor, "ok", **good)
    with pytest.raises(InvalidScheduleError, match="bad minute") as caught:
        update_schedule(executor, "ok", cron="99 * * * *")
    assert caught.value.field == "cron"
    assert update_schedule(executor, "ok", cron="0 4 * * *").next_fire_at == START.replace(
        hour=4) + timedelta(days=1)


# -- declared schedules ------------------------------------------------------------------------------

@pytest.fixture
def declare():
    """``declare(name, schedule)``: (re-)register a workflow with that schedule for this test."""
    functions = {}

    def declare_(name: str, schedule):
        if name not in functions:
            def scheduled(ctx, value=None):
                return value
            functions[name] = scheduled
        workflow(name=name, schedule=schedule)(functions[name])

    yield declare_
    with registry._lock:
        for name in functions:
            registry._workflows.pop(name, None)


@pytest.mark.parametrize("store", ["memory", "django-sqlite"], indirect=True)
def test_declared_schedules_are_synced_changed_and_marked_when_removed(executor, declare):
    name = unique("engine.schedules.declared")
    declare(name, [Cron("0 3 * * *", input={"a": 1}), Cron("0 4 * * *", timezone="Europe/Berlin")])
    now = executor.clock.now()
    assert sorted(sync_declared_schedules(executor.store, now).created) == [name, f"{name}#2"]
    first, second = get_schedule(executor.store, name), get_schedule(executor.store, f"{name}#2")
    assert first.declared and (first.cron, first.input) == ("0 3 * * *", {"a": 1})
    assert second.next_fire_at == datetime(2025, 6, 3, 2, 0, tzinfo=UTC)  # 04:00 CEST
    assert sync_declared_schedules(executor.store, now).updated == []  # nothing changed
    pause_schedule(executor, name)
    # The code changes one timetable: the row follows, and stays paused.
    declare(name, [Cron("30 3 * * *", input={"a": 1}), Cron("0 4 * * *", timezone="Europe/Berlin")])
    assert sync_declared_schedules(executor.store, now).updated == [name]
    first = get_schedule(executor.store, name)
    assert (first.cron, first.paused, first.next_fire_at) == ("30 3 * * *", True, None)
    # Edits of what the code owns are refused; pausing and resuming are not.
    with pytest.raises(InvalidInputError, match="is declared in code") as caught:
        update_schedule(executor, name, cron="0 5 * * *")
    assert caught.value.code == "conflict"
    assert update_schedule(executor, name, paused=False).next_fire_at is not None
    with pytest.raises(InvalidInputError, match="remove it there, or pause it"):
        delete_schedule(executor, name)
    slug = unique("declared")  # a declared id that is also a slug cannot be taken in the admin
    declare(slug, Cron("0 3 * * *"))
    with pytest.raises(InvalidScheduleError, match="taken by a schedule declared in code"):
        create_schedule(executor, slug, workflow_type=name, cron="* * * * *")
    # The second declaration is removed: its row is marked and stops firing, then may go.
    declare(name, Cron("30 3 * * *", input={"a": 1}))
    assert sync_declared_schedules(executor.store, now).undeclared == [f"{name}#2"]
    second = get_schedule(executor.store, f"{name}#2")
    assert second.undeclared_at == now and second.next_fire_at is None
    assert fire_schedules(executor, at(executor, START + timedelta(days=2)),
                          ids=[f"{name}#2"]) == []
    delete_schedule(executor, f"{name}#2")
    assert not Schedule.objects.filter(pk=f"{name}#2").exists()


@pytest.mark.parametrize("store", ["django-sqlite"], indirect=True)
def test_the_sweep_syncs_and_fires_declared_schedules(executor, declare):
    name = unique("engine.schedules.swept")
    declare(name, Cron("*/10 * * * * *", input="tick"))
    assert fire_schedules(executor, executor.clock.now()) == []  # synced: due in 10 s
    started = fire_schedules(executor, at(executor, START + timedelta(seconds=10)))
    assert started == [f"{name}@20250602T120010Z"]
    executor.run_until_idle()
    assert executor.get_handle(started[0]).result() == "tick"


# -- concurrency ---------------------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.parametrize("store", ["django-postgres"], indirect=True)
def test_two_threads_firing_at_once_start_exactly_one_run_per_tick(executor):
    from django.db import connections

    sid = unique("race")
    create_schedule(executor, sid, workflow_type="engine.schedules.echo", cron="*/1 * * * * *",
                    overlap="allow")
    ticks = 40
    barrier = threading.Barrier(2)
    started: list[list[str]] = [[], []]
    advanced: list[tuple[str, datetime]] = []
    errors: list[BaseException] = []

    def sweeper(n: int) -> None:
        try:
            for _ in range(ticks):
                barrier.wait(timeout=30)  # both threads fire the same tick at the same moment
                if n == 0:
                    executor.clock.advance(1)
                barrier.wait(timeout=30)
                for _ in range(2):  # and each tries twice
                    started[n] += fire_schedules(executor, executor.clock.now(), ids=[sid],
                                                 on_next=lambda s, t: advanced.append((s, t)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweeper, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    everything = started[0] + started[1]
    expected = ids_for(sid, *(START + timedelta(seconds=n) for n in range(1, ticks + 1)))
    assert sorted(everything) == expected  # every tick once: no duplicate, no gap
    assert started[0] and started[1], "both threads should have won some ticks"
    assert sorted(t for _, t in advanced) == [START + timedelta(seconds=n)
                                              for n in range(2, ticks + 2)]
    assert runs_of(executor, sid) == expected
    assert get_schedule(executor.store, sid).version == ticks


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_a_tick_whose_run_is_already_open_is_taken_as_started(executor):
    from beluga_workflows import WorkflowOptions

    sid = unique("already")
    create_schedule(executor, sid, workflow_type="engine.schedules.waits", cron="* * * * *")
    tick = START + timedelta(minutes=1)
    executor.execute("engine.schedules.waits", WorkflowOptions(id=tick_workflow_id(sid, tick)))
    assert fire_schedules(executor, at(executor, tick), ids=[sid]) == [tick_workflow_id(sid, tick)]
    row = get_schedule(executor.store, sid)
    assert row.last_note == "its run was already started"
    assert row.next_fire_at == tick + timedelta(minutes=1)
    assert runs_of(executor, sid) == [tick_workflow_id(sid, tick)]


# -- the runtimes' sweeps ----------------------------------------------------------------------------

@pytest.mark.parametrize("store", ["memory", "django-sqlite"], indirect=True)
def test_the_local_runtime_fires_a_1_second_schedule_at_its_sweeps(make_local):
    import time

    executor = make_local(sweep_interval=0.1)
    sid = unique("local")
    create_schedule(executor, sid, workflow_type="engine.schedules.echo", cron="*/1 * * * * *",
                    overlap="allow", input="tick")
    time.sleep(3.5)
    pause_schedule(executor, sid)
    ids = runs_of(executor, sid)
    assert 2 <= len(ids) <= 5, ids
    ticks = [scheduled_time(i) for i in ids]
    assert all(b - a == timedelta(seconds=1) for a, b in zip(ticks, ticks[1:], strict=False))
    for workflow_id in ids:
        assert executor.get_handle(workflow_id).result(timeout=10) == "tick"
