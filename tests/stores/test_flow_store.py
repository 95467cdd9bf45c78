"""The flow-control part of the store contract (``supports_flow_control``), raced with threads.

Each test states one promise of the "flow control" section of ``WorkflowStore`` and checks it by
doing it, on the memory store (the reference) and the django store on SQLite and PostgreSQL, where
the threads have connections of their own and really race: starts against one key's slots, takes
from one GCRA bucket, events into one batch. The stores without flow control refuse it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from beluga_workflows import Concurrency, WorkflowOptions, workflow
from beluga_workflows.engine.events import Event
from beluga_workflows.engine.flow import Admission, Gcra
from beluga_workflows.errors import RateLimitExceededError, StoreError
from beluga_workflows.stores.base import RunEnd
from beluga_workflows.types import EventType, HistoryEvent, WorkflowStatus

from ..conftest import make_store
from .test_contract import LEASE, T0, at, in_threads, new_run

BUCKET = ("tests.flow", "concurrency:0", "k")


@pytest.fixture(params=["memory", "django-sqlite",
                        pytest.param("django-postgres", marks=pytest.mark.postgres)])
def store(request):
    """A fresh, empty store of each backend that enforces flow control."""
    instance = make_store(request.param, request)
    assert instance.supports_flow_control
    yield instance
    instance.close()


def slots(limit: int, key: str = "k") -> Admission:
    return Admission("tests.flow", slots=(((BUCKET[0], BUCKET[1], key), limit),), order_at=T0)


def end(store, state, *, now=T0):
    """Claim and end ``state`` as the runner does for a run holding slots; the freed buckets."""
    store.claim(state.workflow_id, "w", now + LEASE, now)
    finish = RunEnd(WorkflowStatus.COMPLETED, None, release=True)
    store.append(state.workflow_id, state.run_id, "w",
                 [HistoryEvent(id=2, type=EventType.WORKFLOW_COMPLETED, timestamp=now)],
                 lease_until=now + LEASE, end=finish)
    return finish.freed


def usage(store, key: str = "k") -> tuple[int, int]:
    row = next((u for u in store.flow_usage() if u["key"] == key), None)
    return (row["in_use"], row["waiting"]) if row else (0, 0)


def test_racing_starts_never_take_more_slots_than_the_limit(store):
    states = [new_run(f"wf-{n}") for n in range(24)]

    def start(n: int) -> str:
        store.create_with_waits(states[n], [], admission=slots(3))
        return states[n].wait_kind

    kinds = in_threads(len(states), start)
    assert kinds.count("") == 3 and kinds.count("concurrency") == 21
    assert usage(store) == (3, 21)
    for state, kind in zip(states, kinds, strict=True):
        stored = store.load(state.workflow_id, with_history=False)
        assert stored.wait_kind == kind and stored.status is WorkflowStatus.RUNNING
        if kind:
            assert stored.wake_at is None
            assert stored.wait_name == 'concurrency "tests.flow" key "k" (3 of 3 in use)'


def test_an_end_frees_its_slot_in_its_write_and_promotion_hands_it_on_in_order(store):
    holder, first, second = new_run("holder"), new_run("first"), new_run("second")
    store.create_with_waits(holder, [], admission=slots(1))
    for n, state in enumerate((first, second)):
        admission = slots(1)
        admission.order_at = at(n)
        store.create_with_waits(state, [], admission=admission)
    assert store.promote([BUCKET], at(5)) == []  # full: nobody moves
    assert end(store, holder, now=at(10)) == [BUCKET]
    assert usage(store) == (0, 2)
    assert store.promote([BUCKET], at(10)) == [("first", "")]
    promoted = store.load("first", with_history=False)
    assert promoted.wait_kind == "" and promoted.wake_at == at(10) and promoted.wake_seq == 1
    assert store.load("second", with_history=False).wait_kind == "concurrency"
    assert usage(store) == (1, 1)


def test_racing_promotions_grant_each_free_slot_once(store):
    holders = [new_run(f"holder-{n}") for n in range(4)]
    waiters = [new_run(f"waiter-{n}") for n in range(12)]
    for state in holders + waiters:
        store.create_with_waits(state, [], admission=slots(4))
    for holder in holders:
        end(store, holder)
    promoted = in_threads(6, lambda n: store.promote([BUCKET], at(1)))
    granted = [workflow_id for batch in promoted for workflow_id, _ in batch]
    assert len(granted) == len(set(granted)) == 4
    assert usage(store) == (4, 8)


def test_the_sweep_frees_slots_of_runs_deleted_while_holding_them(store):
    holder, waiter = new_run("holder"), new_run("waiter")
    store.create_with_waits(holder, [], admission=slots(1))
    store.create_with_waits(waiter, [], admission=slots(1))
    store.delete("holder")
    assert store.release_orphans(at(1)) in ([BUCKET], [])  # django: the delete cascades
    assert BUCKET in store.waiting_buckets()
    assert store.promote(store.waiting_buckets(), at(1)) == [("waiter", "")]
    assert usage(store) == (1, 0)


def test_racing_throttled_starts_are_spaced_by_the_rate_and_none_is_lost(store):
    gate = Gcra(("tests.flow", "throttle", "k"), 2, 10.0)
    states = [new_run(f"thr-{n}") for n in range(10)]

    def start(n: int):
        store.create_with_waits(states[n], [], admission=Admission("tests.flow", throttle=gate))
        return states[n].wait_until

    starts = sorted(in_threads(len(states), start))
    assert [(s - T0).total_seconds() for s in starts] == [0, 0, 5, 10, 15, 20, 25, 30, 35, 40]


def test_racing_rate_limited_starts_admit_exactly_the_limit(store):
    gate = Gcra(("tests.flow", "rate_limit", "k"), 3, 3600.0)

    def start(n: int) -> bool:
        try:
            store.create_with_waits(new_run(f"rate-{n}"), [],
                                    admission=Admission("tests.flow", rate_limit=gate))
            return True
        except RateLimitExceededError as refused:
            assert refused.retry_at == T0 + timedelta(seconds=1200)
            return False

    admitted = in_threads(16, start)
    assert admitted.count(True) == 3
    assert sum(1 for n in range(16) if store.load(f"rate-{n}") is not None) == 3


def test_a_rate_limited_delivery_records_the_skip_once(store):
    gate = Gcra(("tests.flow", "rate_limit", "k"), 1, 3600.0)
    store.add_event(Event("e", {}, "e-1", T0), T0)
    store.add_event(Event("e", {}, "e-2", T0), T0)
    ok = store.record_delivery("e-1", "tests.flow", new_run("t:e-1"),
                               admission=Admission("tests.flow", rate_limit=gate))
    refused = store.record_delivery("e-2", "tests.flow", new_run("t:e-2"),
                                    admission=Admission("tests.flow", rate_limit=gate))
    assert (ok, refused) == (True, False)
    assert store.load("t:e-2") is None
    skipped = store.get_delivery("e-2", "tests.flow")
    assert skipped["outcome"] == "skipped" and "rate limit" in skipped["reason"]
    # A second fan-out decides nothing again.
    assert store.record_delivery("e-2", "tests.flow", new_run("t:e-2"),
                                 admission=Admission("tests.flow", rate_limit=gate)) is False
    assert store.get_delivery("e-1", "tests.flow")["outcome"] == "started"


def test_racing_events_into_a_batch_land_in_exactly_one_group_each(store):
    events = [Event("rows", {"n": n}, f"ev-{n}", T0 + timedelta(microseconds=n))
              for n in range(40)]
    for event in events:
        store.add_event(event, T0)

    def join(n: int) -> str:
        return store.group_event(events[n], T0, "tests.batch", "batch", "t", period=60.0,
                                 timeout=None, max_size=10)["group"]

    groups = in_threads(len(events), join)
    assert sorted(groups.count(g) for g in set(groups)) == [10, 10, 10, 10]
    due = store.due_groups(T0)  # all four are full: due at once
    assert sorted(len(g["events"]) for g in due) == [10, 10, 10, 10]
    assert sorted(e.id for g in due for e in g["events"]) == sorted(e.id for e in events)
    # Joining again is a read: the event stays where it is.
    assert store.group_event(events[0], T0, "tests.batch", "batch", "t", period=60.0,
                             timeout=None, max_size=10)["group"] == groups[0]


def test_a_group_fires_once_and_only_at_the_version_it_was_read(store):
    event = Event("edits", {"doc": 1}, "ed-1", T0)
    store.add_event(event, T0)
    store.group_event(event, T0, "tests.debounce", "debounce", "d", period=1.0, timeout=None,
                      max_size=0)
    assert store.due_groups(T0) == []
    (group,) = store.due_groups(at(1))
    stale = dict(group, version=group["version"] - 1)
    assert store.fire_group(stale, new_run("tests.debounce:ed-1")) is False
    assert store.fire_group(group, new_run("tests.debounce:ed-1")) is True
    assert store.fire_group(group, new_run("tests.debounce:ed-1")) is False
    assert store.due_groups(at(2)) == []
    assert store.get_delivery("ed-1", "tests.debounce")["outcome"] == "started"


@workflow(name="tests.flow_store.limited", concurrency=Concurrency(1))
def limited(ctx, _=None) -> None:
    return None


def test_a_store_without_flow_control_refuses_an_admission_and_stores_nothing():
    from beluga_workflows.testing import WorkflowEnvironment

    from .backends import make_document_store

    store, clean = make_document_store("dapr")
    try:
        assert not store.supports_flow_control
        with pytest.raises(StoreError, match="does not enforce flow control"):
            store.promote([BUCKET], T0)
        with WorkflowEnvironment(store=store) as env, pytest.raises(
                StoreError, match="dapr workflow store does not enforce flow control"):
            env.execute(limited, WorkflowOptions(id="refused"))
        assert store.load("refused") is None
    finally:
        clean()


def test_the_first_fan_out_merges_into_what_a_group_recorded_before_it(store):
    event = Event("rows", {}, "b-1", T0)
    store.add_event(event, T0)
    store.group_event(event, T0, "tests.batch", "batch", "t", period=1.0, timeout=None,
                      max_size=1)  # full at once: due now
    (group,) = store.due_groups(T0)
    assert store.fire_group(group, new_run("tests.batch:batch:g"))
    store.record_outcome("b-1", {"started": [], "woken": [], "canceled": [], "skipped": []},
                         at(1))
    assert store.get_event("b-1").outcome["started"] == ["tests.batch:batch:g"]
    skip = {"workflow_type": "tests.debounce", "reason": "debounce: a newer event"}
    store.add_event(Event("edits", {}, "d-1", T0), T0, skipped=[skip])
    store.record_outcome("d-1", {"started": [], "woken": [], "canceled": [], "skipped": [skip]},
                         at(1))
    assert store.get_event("d-1").outcome["skipped"] == [skip]
