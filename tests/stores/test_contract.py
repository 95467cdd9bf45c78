"""The store contract, run against every backend through the ``store`` fixture.

Each test states one promise of ``beluga_workflows.stores.base.WorkflowStore`` (the memory store is
the reference) and checks it by doing it; the concurrency tests race real threads, each with its
own database connection for the django store.

A store documented as lacking compare-and-set (``supports_compare_and_set = False``: ``inngest``)
cannot keep the concurrency promises across processes. Its concurrency tests first assert that
documented limitation by doing it (``check_compare_and_set``: a write based on a stale read wins),
then race the threads of this one process, which such a store must still keep apart.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connections

from beluga_workflows.errors import (
    ConflictError,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from beluga_workflows.stores.base import RunEnd, WorkflowStore
from beluga_workflows.types import (
    EventType,
    HistoryEvent,
    Signal,
    WorkflowFilter,
    WorkflowState,
    WorkflowStatus,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
LEASE = timedelta(seconds=30)
ODD_IDS = ["ünïcødé-订单-🚀", "orders/2024/123", "with inner spaces", "x" * 255]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_run(workflow_id: str = "wf-1", *, created: datetime = T0, workflow_type: str = "tests.flow",
            **fields) -> WorkflowState:
    """A just-started run as ``executor.execute`` builds it."""
    fields.setdefault("input", {"n": 1})
    return WorkflowState(
        workflow_id=workflow_id, run_id=uuid.uuid4().hex, workflow_type=workflow_type,
        created_at=created, updated_at=created, wake_at=created,
        history=[HistoryEvent(id=1, type=EventType.WORKFLOW_STARTED, timestamp=created,
                              activity_name=workflow_type, input=fields["input"])],
        **fields,
    )


def ended_run(workflow_id: str, status: WorkflowStatus = WorkflowStatus.COMPLETED, **kw):
    state = new_run(workflow_id, **kw)
    state.status = status
    state.result = {"done": workflow_id}
    state.ended_at = state.updated_at
    state.wake_at = None
    return state


def event(seq: int, type: EventType = EventType.SIDE_EFFECT_RECORDED, *, when: datetime | None = None,
          **fields) -> HistoryEvent:
    return HistoryEvent(id=seq, type=type, timestamp=when or at(seq), op=seq, **fields)


def comparable(state: WorkflowState) -> dict:
    """A state's content without what the store assigns (version, inbox ids)."""
    data = state.to_dict()
    data.pop("version")
    for signal in data["signals"]:
        signal.pop("id")
    return data


def claimed(store, workflow_id: str = "wf-1", owner: str = "w1", now: datetime = T0):
    state = store.claim(workflow_id, owner, now + LEASE, now)
    assert state is not None, "the run should have been free to claim"
    return state


def in_threads(count: int, target) -> list:
    """Run ``target(i)`` in ``count`` threads started together; their results, or re-raise."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)
        finally:
            connections.close_all()  # each thread has its own database connection

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


# -- save / load / list / delete (the public contract) ----------------------------------------------

def test_load_of_a_missing_id_is_none(store):
    assert store.load("nope") is None
    assert store.load("nope", with_history=False) is None
    assert store.history("nope") == []


def test_save_then_load_round_trips_every_field(store):
    state = new_run(
        "wf-rt", input={"order": [1, 2.5, "trois", None, True], "nested": {"é": "ü"}},
        deadline=at(3600), queue="priority", wait_kind="signal", wait_name="approval",
        wait_until=at(60), cancel_requested=True, wake_seq=3,
        lease_owner="host:1:abc", lease_expires_at=at(30), parent_id="orders/7",
    )
    state.wake_at = at(60)
    state.history += [
        event(2, EventType.ACTIVITY_STARTED, activity_name="charge", input={"total": 42}, attempt=1),
        event(3, EventType.ACTIVITY_FAILED, activity_name="charge", attempt=1, duration=0.25,
              error={"type": "ValueError", "message": "boom", "traceback": "Traceback..."},
              fire_at=at(10)),
        event(4, EventType.SIGNAL_RECEIVED, signal_name="approval", signal_payload=["ok", 1]),
    ]
    state.signals = [Signal("approval", {"by": "ann"}, sent_at=at(5), sender_id="admin"),
                     Signal("approval", None, sent_at=at(6))]
    store.save(state)

    loaded = store.load("wf-rt")
    assert comparable(loaded) == comparable(state)
    assert loaded.version >= 1
    assert loaded.created_at.tzinfo is not None and loaded.history[0].timestamp.tzinfo is not None
    ids = [s.id for s in loaded.signals]  # the inbox numbers saved signals, in order
    assert None not in ids and ids == sorted(set(ids))
    assert store.load("wf-rt", with_history=False).history == []


def test_save_overwrites_the_run_and_bumps_its_version(store):
    first = new_run("wf-ow")
    first.history.append(event(2))
    first.signals = [Signal("a", 1, sent_at=T0)]
    store.save(first)
    v1 = store.load("wf-ow").version

    second = ended_run("wf-ow", WorkflowStatus.FAILED)
    second.error = {"type": "E", "message": "m", "traceback": ""}
    store.save(second)

    loaded = store.load("wf-ow")
    assert comparable(loaded) == comparable(second)
    assert loaded.run_id == second.run_id and len(loaded.history) == 1 and loaded.signals == []
    assert loaded.version > v1
    assert len(store.list()) == 1


def test_delete_removes_every_trace_and_a_missing_id_is_fine(store):
    store.save(new_run("wf-del"))
    store.add_signal("wf-del", Signal("s", 1), T0)
    store.delete("wf-del")
    store.delete("wf-del")
    store.delete("never-existed")
    assert store.load("wf-del") is None
    assert store.history("wf-del") == []
    assert store.list() == []
    store.create(new_run("wf-del"))  # the id is free again
    assert store.load("wf-del").signals == []


def test_list_is_newest_first_by_status_with_limit_and_offset(store):
    for i in range(6):
        state = new_run(f"wf-{i}", created=at(i))
        if i % 2:
            state.status = WorkflowStatus.COMPLETED
        store.save(state)

    assert [s.workflow_id for s in store.list()] == [f"wf-{i}" for i in (5, 4, 3, 2, 1, 0)]
    done = store.list(WorkflowFilter(status="completed", limit=2))
    assert [s.workflow_id for s in done] == ["wf-5", "wf-3"]
    assert all(s.status is WorkflowStatus.COMPLETED for s in done)
    assert [s.workflow_id for s in store.list(WorkflowFilter(limit=2, offset=3))] == ["wf-2", "wf-1"]
    assert [s.workflow_id for s in store.list(WorkflowFilter(offset=4))] == ["wf-1", "wf-0"]
    assert store.list(WorkflowFilter(status="failed")) == []
    assert all(s.history == [] for s in store.list())


def test_list_count_and_count_by_status_filter_by_type(store):
    store.save(new_run("a1", workflow_type="orders.process", created=at(1)))
    store.save(new_run("a2", workflow_type="orders.process", created=at(2)))
    store.save(ended_run("b1", workflow_type="reports.weekly", created=at(3)))

    orders = store.list(WorkflowFilter(workflow_type="orders.process"))
    assert [s.workflow_id for s in orders] == ["a2", "a1"]
    assert store.count() == 3
    assert store.count(WorkflowFilter(workflow_type="orders.process", limit=1)) == 2
    assert store.count(WorkflowFilter(status="completed")) == 1
    assert store.count_by_status() == {
        "running": 2, "completed": 1, "failed": 0, "canceled": 0, "timed_out": 0,
    }


def test_list_and_count_by_id_prefix_are_case_sensitive(store):
    for i, workflow_id in enumerate(["order-1", "order-2", "Order-3", "orders/9", "ord", "invoice-1",
                                     "order%_x", "orderz\U0010ffff"]):
        store.save(new_run(workflow_id, created=at(i)))

    def ids(prefix, **kw):
        return [s.workflow_id for s in store.list(WorkflowFilter(workflow_id_prefix=prefix, **kw))]

    assert ids("order") == ["orderz\U0010ffff", "order%_x", "orders/9", "order-2", "order-1"]
    assert ids("order-") == ["order-2", "order-1"]
    assert ids("Order") == ["Order-3"]
    assert ids("order%") == ["order%_x"]  # LIKE wildcards are plain text here
    assert ids("orderz\U0010ffff") == ["orderz\U0010ffff"]
    assert ids("order-1") == ["order-1"]  # an exact id is its own prefix
    assert ids("order", limit=1, offset=1) == ["order%_x"]
    assert ids("nothing") == []
    assert store.count(WorkflowFilter(workflow_id_prefix="order")) == 5


def test_list_by_wait_kind_shows_open_runs_suspended_so(store):
    for workflow_id, kind in (("h1", "human"), ("h2", "human"), ("t1", "timer")):
        store.create(new_run(workflow_id))
        state = claimed(store, workflow_id)
        store.suspend(workflow_id, state.run_id, "w1", seen_wake_seq=state.wake_seq, wake_at=None,
                      wait_kind=kind, wait_name="x", wait_until=None)
    state = claimed(store, "h2")
    store.append("h2", state.run_id, "w1", [], lease_until=at(30),
                 end=RunEnd(WorkflowStatus.COMPLETED))
    waiting = store.list(WorkflowFilter(wait_kind="human"))
    assert [s.workflow_id for s in waiting] == ["h1"]
    assert store.count(WorkflowFilter(wait_kind="human")) == 1
    assert store.count(WorkflowFilter(wait_kind="timer", status="running")) == 1


def test_list_by_parent_shows_its_children_and_counts_them(store):
    store.create(new_run("p1"))
    store.create(new_run("p1/2", parent_id="p1", created=at(1)))
    store.create(new_run("p1/3", parent_id="p1", created=at(2)))
    store.create(new_run("p2/1", parent_id="p2"))
    store.create(new_run("lonely"))

    children = store.list(WorkflowFilter(parent_id="p1"))
    assert [s.workflow_id for s in children] == ["p1/3", "p1/2"]  # newest first
    assert all(s.parent_id == "p1" for s in children)
    assert store.load("lonely").parent_id == ""
    assert store.count(WorkflowFilter(parent_id="p1")) == 2
    assert [s.workflow_id for s in store.list(WorkflowFilter(parent_id="p1", limit=1,
                                                             offset=1))] == ["p1/2"]
    assert store.count(WorkflowFilter(parent_id="p1", status="running")) == 2
    assert store.count(WorkflowFilter(parent_id="p1", workflow_id_prefix="p1/3")) == 1
    assert store.count_children(["p1", "p2", "lonely", "p1/2", "missing"]) == {"p1": 2, "p2": 1}
    assert store.count_children([]) == {}

    store.delete("p1/2")  # a deleted child is no longer one of its parent's
    ended = claimed(store, "p1/3")
    store.append("p1/3", ended.run_id, "w1", [], lease_until=at(30),
                 end=RunEnd(WorkflowStatus.COMPLETED))
    store.create(new_run("p1/3", created=at(3)))  # its id reused by a run that is nobody's child
    assert store.count_children(["p1"]) == {}
    assert store.list(WorkflowFilter(parent_id="p1")) == []


def test_continue_as_new_replaces_the_leased_run_in_one_write(store):
    state = new_run("wf-can", queue="q", parent_id="p")
    state.history.append(event(2))
    store.create(state)
    store.add_signal("wf-can", Signal("a", 1, sent_at=at(1)), at(1))
    store.add_signal("wf-can", Signal("b", 2, sent_at=at(2)), at(2))
    leased = claimed(store, "wf-can")
    for name in (f"beluga.activity/{leased.run_id}/3", f"beluga.child/{leased.run_id}/4"):
        store.add_signal("wf-can", Signal(name, {"late": True}, sent_at=at(2)), at(2))
    following = new_run("wf-can", created=at(3), input={"n": 2}, queue="q", parent_id="p")
    with pytest.raises(ConflictError):
        store.continue_as_new("wf-can", leased.run_id, "someone-else", following)
    with pytest.raises(ConflictError):
        store.continue_as_new("wf-can", "another-run", "w1", following)
    assert store.load("wf-can").run_id == leased.run_id  # a refusal changes nothing

    store.continue_as_new("wf-can", leased.run_id, "w1", following)
    now = store.load("wf-can")
    assert (now.run_id, now.input, now.is_open, now.lease_owner) == (
        following.run_id, {"n": 2}, True, "")
    assert [e.type for e in now.history] == [EventType.WORKFLOW_STARTED]
    # The old run's own outcomes (of its started activities and children) are left behind.
    assert [(s.name, s.payload) for s in now.signals] == [("a", 1), ("b", 2)]
    assert now.parent_id == "p" and now.queue == "q"
    assert store.count() == 1 and "wf-can" in store.due(at(3), 10)
    with pytest.raises(ConflictError):  # the old run is gone: its lease with it
        store.continue_as_new("wf-can", leased.run_id, "w1", following)
    taken = claimed(store, "wf-can", now=at(4))
    store.append("wf-can", taken.run_id, "w1", [], lease_until=at(60),
                 consume_signal=taken.signals[0].id)
    assert [s.name for s in store.load("wf-can").signals] == ["b"]
    assert store.add_signal("wf-can", Signal("c", 3), at(5)).id is not None


def test_a_cancel_that_races_continue_as_new_is_the_next_runs(store):
    store.create(new_run("wf-can-cancel"))
    leased = claimed(store, "wf-can-cancel")
    store.request_cancel("wf-can-cancel", at(1))  # after the worker last looked
    store.continue_as_new("wf-can-cancel", leased.run_id, "w1",
                          new_run("wf-can-cancel", created=at(2)))
    now = store.load("wf-can-cancel", with_history=False)
    assert now.run_id != leased.run_id and now.cancel_requested
    assert now.wake_seq >= 1


def test_history_after_and_limit(store):
    state = new_run("wf-h")
    state.history += [event(i) for i in range(2, 8)]
    store.save(state)
    assert [e.id for e in store.history("wf-h")] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.id for e in store.history("wf-h", after=3)] == [4, 5, 6, 7]
    assert [e.id for e in store.history("wf-h", after=3, limit=2)] == [4, 5]
    assert store.history("wf-h", after=7) == []
    assert store.history("wf-h", after=2, limit=1)[0].to_dict() == state.history[2].to_dict()


@pytest.mark.parametrize("workflow_id", ODD_IDS)
def test_odd_ids_work_everywhere(store, workflow_id):
    store.create(new_run(workflow_id))
    accepted = store.add_signal(workflow_id, Signal("go", {"id": workflow_id}), T0)
    state = claimed(store, workflow_id)
    assert state.workflow_id == workflow_id and [s.id for s in state.signals] == [accepted.id]
    store.append(workflow_id, state.run_id, "w1", [event(2)], lease_until=at(30),
                 end=RunEnd(WorkflowStatus.COMPLETED, workflow_id))
    assert store.load(workflow_id).result == workflow_id
    assert [s.workflow_id for s in store.list()] == [workflow_id]
    assert [e.id for e in store.history(workflow_id)] == [1, 2]
    store.delete(workflow_id)
    assert store.load(workflow_id) is None


# -- create / claim ---------------------------------------------------------------------------------

def test_create_refuses_a_second_open_run_but_replaces_an_ended_one(store):
    first = new_run("wf-c")
    store.create(first)
    with pytest.raises(WorkflowAlreadyExistsError):
        store.create(new_run("wf-c"))
    assert store.load("wf-c").run_id == first.run_id

    owner_state = claimed(store, "wf-c")
    store.add_signal("wf-c", Signal("late", 1), T0)
    store.append("wf-c", owner_state.run_id, "w1", [event(2)], lease_until=at(30),
                 end=RunEnd(WorkflowStatus.COMPLETED, "r"))
    second = new_run("wf-c", created=at(100))
    store.create(second)
    loaded = store.load("wf-c")
    assert loaded.run_id == second.run_id and loaded.is_open
    assert [e.id for e in loaded.history] == [1] and loaded.signals == []
    assert len(store.list()) == 1


def test_claim_gives_the_run_to_one_worker_until_its_lease_expires(store):
    store.create(new_run("wf-l"))
    store.add_signal("wf-l", Signal("s", "p"), T0)
    first = store.claim("wf-l", "w1", at(30), T0)
    assert first.lease_owner == "w1" and first.lease_expires_at == at(30)
    assert [e.type for e in first.history] == [EventType.WORKFLOW_STARTED]
    assert [s.payload for s in first.signals] == ["p"]

    assert store.claim("wf-l", "w2", at(40), at(10)) is None
    assert store.claim("wf-l", "w2", at(59), at(29)) is None
    second = store.claim("wf-l", "w2", at(60), at(30))  # expired: another worker takes over
    assert second is not None and second.lease_owner == "w2"
    with pytest.raises(ConflictError):
        store.append("wf-l", first.run_id, "w1", [event(2)], lease_until=at(90))
    assert store.claim("missing", "w1", at(30), T0) is None


def test_claim_of_an_ended_run_is_none(store):
    store.save(ended_run("wf-e"))
    assert store.claim("wf-e", "w1", at(30), T0) is None


def test_renew_and_refresh_only_for_the_lease_holder(store):
    store.create(new_run("wf-r"))
    state = claimed(store, "wf-r")
    assert store.renew("wf-r", state.run_id, "w1", at(90)) is True
    assert store.load("wf-r").lease_expires_at == at(90)
    assert store.claim("wf-r", "w2", at(100), at(60)) is None  # the renewed lease still holds
    assert store.renew("wf-r", state.run_id, "w2", at(120)) is False
    assert store.renew("wf-r", "other-run", "w1", at(120)) is False
    store.add_signal("wf-r", Signal("s", 7), at(1))
    fresh = store.refresh("wf-r", state.run_id, "w1")
    assert fresh.wake_seq == state.wake_seq + 1 and [s.payload for s in fresh.signals] == [7]
    assert fresh.history == []
    with pytest.raises(ConflictError):
        store.refresh("wf-r", state.run_id, "w2")


# -- append -----------------------------------------------------------------------------------------

def test_append_adds_events_and_extends_the_lease(store):
    store.create(new_run("wf-a"))
    state = claimed(store, "wf-a")
    control = store.append("wf-a", state.run_id, "w1", [event(2), event(3)], lease_until=at(45))
    assert control.is_open and control.cancel_requested is False
    assert control.wake_seq == state.wake_seq and control.history == []
    loaded = store.load("wf-a")
    assert [e.id for e in loaded.history] == [1, 2, 3]
    assert loaded.lease_expires_at == at(45) and loaded.updated_at == at(3)
    assert loaded.version > state.version
    store.append("wf-a", state.run_id, "w1", [], lease_until=at(50))  # lease only
    assert store.load("wf-a").lease_expires_at == at(50)


def test_append_by_a_worker_without_the_lease_writes_nothing(store):
    store.create(new_run("wf-f"))
    state = claimed(store, "wf-f")
    store.add_signal("wf-f", Signal("s", 1), T0)
    before = store.load("wf-f")
    signal_id = before.signals[0].id
    for owner, run_id in (("intruder", state.run_id), ("w1", "another-run"), ("", state.run_id)):
        with pytest.raises(ConflictError):
            store.append("wf-f", run_id, owner, [event(2)], lease_until=at(99),
                         consume_signal=signal_id, end=RunEnd(WorkflowStatus.COMPLETED, "x"))
    after = store.load("wf-f")
    assert comparable(after) == comparable(before) and after.version == before.version


def test_append_never_rewrites_or_skips_history(store):
    store.create(new_run("wf-g"))
    state = claimed(store, "wf-g")
    store.append("wf-g", state.run_id, "w1", [event(2)], lease_until=at(30))
    for seq in (1, 2, 4):
        with pytest.raises(ConflictError):
            store.append("wf-g", state.run_id, "w1", [event(seq, activity_name="dup")],
                         lease_until=at(31))
    history = store.history("wf-g")
    assert [e.id for e in history] == [1, 2] and all(e.activity_name != "dup" for e in history)


def test_append_with_end_ends_the_run_and_releases_it(store):
    store.create(new_run("wf-end"))
    state = claimed(store, "wf-end")
    store.suspend("wf-end", state.run_id, "w1", seen_wake_seq=state.wake_seq, wake_at=at(5),
                  wait_kind="timer", wait_name="sleep", wait_until=at(5))
    state = claimed(store, "wf-end", now=at(5))
    control = store.append(
        "wf-end", state.run_id, "w1",
        [event(2, EventType.WORKFLOW_COMPLETED, when=at(7), result={"ok": True})],
        lease_until=at(40), end=RunEnd(WorkflowStatus.COMPLETED, {"ok": True}),
    )
    assert control.status is WorkflowStatus.COMPLETED and control.result == {"ok": True}
    loaded = store.load("wf-end")
    assert loaded.status is WorkflowStatus.COMPLETED and loaded.result == {"ok": True}
    assert loaded.error is None and loaded.ended_at == at(7) and loaded.updated_at == at(7)
    assert loaded.lease_owner == "" and loaded.lease_expires_at is None
    assert loaded.wake_at is None and (loaded.wait_kind, loaded.wait_name) == ("", "")
    assert loaded.wait_until is None
    assert [e.type for e in loaded.history][-1] is EventType.WORKFLOW_COMPLETED
    assert store.claim("wf-end", "w2", at(100), at(60)) is None
    assert store.due(at(1000)) == []
    with pytest.raises(ConflictError):
        store.append("wf-end", state.run_id, "w1", [event(3)], lease_until=at(50))


def test_append_can_end_a_run_failed_without_events(store):
    store.create(new_run("wf-nf"))
    state = claimed(store, "wf-nf")
    error = {"type": "RuntimeError", "message": "no", "traceback": "tb"}
    store.append("wf-nf", state.run_id, "w1", [], lease_until=at(30),
                 end=RunEnd(WorkflowStatus.FAILED, None, error))
    loaded = store.load("wf-nf")
    assert loaded.status is WorkflowStatus.FAILED and loaded.error == error
    assert loaded.ended_at == loaded.updated_at == T0


# -- signals, cancel, suspend -----------------------------------------------------------------------

def test_signals_are_kept_in_fifo_order_and_consumed_exactly_once(store):
    store.create(new_run("wf-s"))
    sent = [store.add_signal("wf-s", Signal(name, i, sender_id="test"), at(i))
            for i, name in enumerate(["a", "b", "a", "c", "a"])]
    assert [s.id for s in sent] == sorted(s.id for s in sent) and len({s.id for s in sent}) == 5
    assert all(s.sent_at == at(i) for i, s in enumerate(sent))
    state = claimed(store, "wf-s")
    assert [(s.name, s.payload, s.sender_id) for s in state.signals] == [
        ("a", 0, "test"), ("b", 1, "test"), ("a", 2, "test"), ("c", 3, "test"), ("a", 4, "test")]
    assert state.wake_seq == 5

    first_a = next(s for s in state.signals if s.name == "a")
    store.append("wf-s", state.run_id, "w1",
                 [event(2, EventType.SIGNAL_RECEIVED, signal_name="a", signal_payload=0)],
                 lease_until=at(30), consume_signal=first_a.id)
    left = store.load("wf-s").signals
    assert [s.payload for s in left] == [1, 2, 3, 4]
    assert [s.id for s in left] == [s.id for s in sent[1:]]
    # Consuming the same id again changes nothing in the inbox.
    store.append("wf-s", state.run_id, "w1", [event(3)], lease_until=at(30),
                 consume_signal=first_a.id)
    assert [s.payload for s in store.load("wf-s").signals] == [1, 2, 3, 4]


def test_a_signal_keeps_its_own_sent_at(store):
    store.create(new_run("wf-t"))
    accepted = store.add_signal("wf-t", Signal("s", sent_at=at(-50)), at(1))
    assert accepted.sent_at == at(-50)
    assert store.load("wf-t").signals[0].sent_at == at(-50)


def test_signal_and_cancel_of_a_missing_or_ended_run_are_refused(store):
    with pytest.raises(WorkflowNotFoundError):
        store.add_signal("ghost", Signal("s"), T0)
    with pytest.raises(WorkflowNotFoundError):
        store.request_cancel("ghost", T0)
    store.save(ended_run("done"))
    with pytest.raises(WorkflowNotRunningError):
        store.add_signal("done", Signal("s"), T0)
    with pytest.raises(WorkflowNotRunningError):
        store.request_cancel("done", T0)
    assert store.load("done").signals == [] and store.load("done").cancel_requested is False
    assert store.load("ghost") is None


def test_a_signal_bumps_wake_seq_and_makes_the_run_due_now(store):
    store.create(new_run("wf-w"))
    state = claimed(store, "wf-w")
    store.suspend("wf-w", state.run_id, "w1", seen_wake_seq=state.wake_seq, wake_at=at(3600),
                  wait_kind="signal", wait_name="go", wait_until=at(3600))
    assert store.due(at(60)) == []
    store.add_signal("wf-w", Signal("go"), at(60))
    loaded = store.load("wf-w")
    assert loaded.wake_seq == state.wake_seq + 1 and loaded.wake_at == at(60)
    assert loaded.updated_at == at(60)
    store.add_signal("wf-w", Signal("go"), at(90))  # an earlier wake-up is kept
    assert store.load("wf-w").wake_at == at(60)
    assert store.due(at(60)) == ["wf-w"]


def test_request_cancel_flags_the_run_and_wakes_it(store):
    store.create(new_run("wf-x"))
    state = claimed(store, "wf-x")
    store.suspend("wf-x", state.run_id, "w1", seen_wake_seq=state.wake_seq, wake_at=None,
                  wait_kind="signal", wait_name="never", wait_until=None)
    returned = store.request_cancel("wf-x", at(20))
    assert returned.cancel_requested and returned.wake_seq == state.wake_seq + 1
    assert returned.wake_at == at(20) and returned.workflow_id == "wf-x"
    state = claimed(store, "wf-x", now=at(20))
    assert state.cancel_requested
    control = store.append("wf-x", state.run_id, "w1", [event(2)], lease_until=at(50))
    assert control.cancel_requested


def test_checkpoint_appends_like_append_and_answers_only_whether_cancel_was_requested(store):
    store.create(new_run("wf-cp"))
    sent = [store.add_signal("wf-cp", Signal(f"s/{i}", i), at(1)) for i in range(3)]
    state = claimed(store, "wf-cp", now=at(2))
    assert store.checkpoint("wf-cp", state.run_id, "w1", [event(2), event(3)], lease_until=at(40),
                            consume_signals=(sent[0].id, sent[2].id)) is False
    loaded = store.load("wf-cp")
    assert [e.id for e in loaded.history] == [1, 2, 3] and loaded.lease_expires_at == at(40)
    assert [s.payload for s in loaded.signals] == [1] and loaded.version > state.version
    store.request_cancel("wf-cp", at(5))
    assert store.checkpoint("wf-cp", state.run_id, "w1", [event(4)], lease_until=at(41)) is True
    before = store.load("wf-cp")
    for owner, run_id, events in (("intruder", state.run_id, [event(5)]),
                                  ("w1", "another-run", [event(5)]),
                                  ("w1", state.run_id, [event(3, activity_name="dup")])):
        with pytest.raises(ConflictError):
            store.checkpoint("wf-cp", run_id, owner, events, lease_until=at(99))
    after = store.load("wf-cp")
    assert comparable(after) == comparable(before) and after.version == before.version


def test_one_append_consumes_several_signals(store):
    store.create(new_run("wf-m"))
    sent = [store.add_signal("wf-m", Signal(f"out/{i}", i), at(1)) for i in range(5)]
    state = claimed(store, "wf-m", now=at(2))
    control = store.append("wf-m", state.run_id, "w1", [event(2), event(3)], lease_until=at(30),
                           consume_signal=sent[0].id, consume_signals=(sent[2].id, sent[4].id))
    assert control.signals == [] or [s.payload for s in control.signals] == [1, 3]
    loaded = store.load("wf-m")
    assert [s.payload for s in loaded.signals] == [1, 3]
    assert [e.id for e in loaded.history] == [1, 2, 3]


def test_append_and_suspend_consumes_signals_and_suspends_only_if_none_came_since(store):
    store.create(new_run("wf-ms"))
    sent = [store.add_signal("wf-ms", Signal(f"out/{i}", i), at(1)) for i in range(3)]
    state = claimed(store, "wf-ms", now=at(2))
    store.add_signal("wf-ms", Signal("late", 9), at(3))  # after the claim: refuses the release
    _, suspended = store.append_and_suspend(
        "wf-ms", state.run_id, "w1", [event(2)], lease_until=at(30),
        seen_wake_seq=state.wake_seq, wake_at=at(100), wait_kind="parallel", wait_name="x",
        wait_until=at(100), consume_signals=(sent[0].id, sent[1].id))
    assert suspended is False
    kept = store.load("wf-ms")
    assert [s.payload for s in kept.signals] == [2, 9] and kept.lease_owner == "w1"
    fresh = store.refresh("wf-ms", state.run_id, "w1")
    _, suspended = store.append_and_suspend(
        "wf-ms", state.run_id, "w1", [event(3)], lease_until=at(30),
        seen_wake_seq=fresh.wake_seq, wake_at=at(100), wait_kind="parallel", wait_name="x",
        wait_until=at(100), consume_signals=tuple(s.id for s in fresh.signals))
    assert suspended is True
    released = store.load("wf-ms")
    assert released.signals == [] and released.lease_owner == ""
    assert [e.id for e in released.history] == [1, 2, 3]


def test_deliver_signal_files_it_and_says_when_no_wake_up_is_needed(store):
    reads = type(store).deliver_signal is not WorkflowStore.deliver_signal  # else always False
    store.create(new_run("wf-d", created=at(10)))  # due at 10
    state = claimed(store, "wf-d", now=at(10))
    store.suspend("wf-d", state.run_id, "w1", seen_wake_seq=state.wake_seq, wake_at=at(500),
                  wait_kind="parallel", wait_name="x", wait_until=None)
    signal, covered = store.deliver_signal("wf-d", Signal("out/1", 1), at(11))
    assert covered is False  # suspended, not due: the sender must wake it
    loaded = store.load("wf-d")
    assert [s.id for s in loaded.signals] == [signal.id] and loaded.wake_at == at(11)
    # Due since 11 (that wake-up is on its way): a later signal needs none of its own.
    _, covered = store.deliver_signal("wf-d", Signal("out/2", 2), at(12))
    assert covered is reads
    state = claimed(store, "wf-d", now=at(13))
    assert [s.payload for s in state.signals] == [1, 2]
    _, covered = store.deliver_signal("wf-d", Signal("out/3", 3), at(14))
    assert covered is reads  # the lease holder sees it:
    assert store.suspend("wf-d", state.run_id, "w1", seen_wake_seq=state.wake_seq,
                         wake_at=None, wait_kind="parallel", wait_name="x",
                         wait_until=None) is False
    assert [s.payload for s in store.refresh("wf-d", state.run_id, "w1").signals] == [1, 2, 3]
    # A lease that has expired promises nothing.
    _, covered = store.deliver_signal("wf-d", Signal("out/4", 4), at(14) + LEASE * 2)
    assert covered is False
    with pytest.raises(WorkflowNotFoundError):
        store.deliver_signal("wf-missing", Signal("out/1", 1), at(1))


def test_load_operation_narrows_the_history_and_the_inbox(store):
    store.create(new_run("wf-o"))
    state = claimed(store, "wf-o")
    events = [HistoryEvent(id=i, type=EventType.SIDE_EFFECT_RECORDED, timestamp=at(i),
                           op=2 if i % 2 else 3, result=i) for i in range(2, 7)]
    store.append("wf-o", state.run_id, "w1", events, lease_until=at(30))
    for name in ("out/2", "out/3", "out/2"):
        store.add_signal("wf-o", Signal(name, name), at(8))
    narrowed = store.load_operation("wf-o", 3, "out/2")
    assert (narrowed.run_id, narrowed.status) == (state.run_id, WorkflowStatus.RUNNING)
    assert [(e.id, e.op, e.result) for e in narrowed.history] == [(2, 3, 2), (4, 3, 4), (6, 3, 6)]
    assert [s.name for s in narrowed.signals] == ["out/2", "out/2"]
    assert store.load_operation("wf-o", 9, "none").history == []
    assert store.load_operation("wf-missing", 1, "x") is None


def test_suspend_releases_the_run_only_if_no_signal_came_since(store):
    store.create(new_run("wf-p"))
    state = claimed(store, "wf-p")
    seen = state.wake_seq
    store.add_signal("wf-p", Signal("go", 1), at(1))  # races the suspension below
    assert store.suspend("wf-p", state.run_id, "w1", seen_wake_seq=seen, wake_at=None,
                         wait_kind="signal", wait_name="go", wait_until=None) is False
    unchanged = store.load("wf-p")
    assert unchanged.lease_owner == "w1" and unchanged.wait_kind == ""

    fresh = store.refresh("wf-p", state.run_id, "w1")
    assert [s.payload for s in fresh.signals] == [1]
    store.append("wf-p", state.run_id, "w1",
                 [event(2, EventType.SIGNAL_RECEIVED, signal_name="go", signal_payload=1)],
                 lease_until=at(30), consume_signal=fresh.signals[0].id)
    assert store.suspend("wf-p", state.run_id, "w1", seen_wake_seq=fresh.wake_seq,
                         wake_at=at(500), wait_kind="signal", wait_name="go",
                         wait_until=at(500)) is True
    released = store.load("wf-p")
    assert released.lease_owner == "" and released.lease_expires_at is None
    assert (released.wake_at, released.wait_kind, released.wait_name, released.wait_until) == (
        at(500), "signal", "go", at(500))
    assert released.signals == []
    assert store.claim("wf-p", "w2", at(40), at(10)) is not None  # free again


def test_suspend_without_the_lease_is_a_conflict(store):
    store.create(new_run("wf-q"))
    state = claimed(store, "wf-q")
    for owner, seen in (("w2", state.wake_seq), ("w2", state.wake_seq + 1)):
        with pytest.raises(ConflictError):
            store.suspend("wf-q", state.run_id, owner, seen_wake_seq=seen, wake_at=None,
                          wait_kind="signal", wait_name="go", wait_until=None)
    assert store.load("wf-q").lease_owner == "w1"


def test_due_lists_free_runs_whose_wake_up_passed_oldest_first(store):
    def parked(workflow_id, wake_at):
        store.create(new_run(workflow_id))
        state = claimed(store, workflow_id)
        store.suspend(workflow_id, state.run_id, "w1", seen_wake_seq=state.wake_seq,
                      wake_at=wake_at, wait_kind="timer", wait_name="sleep", wait_until=wake_at)

    parked("late", at(50))
    parked("early", at(10))
    parked("future", at(500))
    parked("signal-wait", None)
    store.create(new_run("new", created=at(20)))          # wake_at = created: due at once
    store.create(new_run("leased", created=at(5)))
    claimed(store, "leased", owner="busy", now=at(5))     # lease until at(35)
    store.save(ended_run("ended"))

    assert store.due(at(30)) == ["early", "new"]
    assert store.due(at(60)) == ["leased", "early", "new", "late"]  # "leased" expired at 35
    assert store.due(at(60), limit=2) == ["leased", "early"]
    assert store.due(at(9)) == []


# -- concurrency, by doing it -----------------------------------------------------------------------

def check_compare_and_set(store) -> None:
    """For a store without compare-and-set, show its documented limitation (else nothing to do).

    Two processes' writers, played out step by step: one reads the run, another claims it, then
    the first writes what it read. With compare-and-set that write is refused; without it, it
    wins and the claim is silently undone -- the reason such a store is not for several workers.
    """
    if store.supports_compare_and_set:
        return
    from beluga_workflows.stores.go_document import decode_state

    workflow_id = f"stale-{uuid.uuid4().hex[:8]}"
    store.create(new_run(workflow_id))
    doc, revision = store._read(workflow_id)  # writer A reads
    assert store.claim(workflow_id, "B", at(30), T0) is not None  # writer B moves the run on
    stale, _ = decode_state(doc)
    assert store._write(workflow_id, doc, revision, stale) is True  # A's stale write wins
    assert store.load(workflow_id).lease_owner == ""  # B's claim is gone: last writer wins
    store.delete(workflow_id)


def test_concurrent_claims_have_exactly_one_winner(store):
    check_compare_and_set(store)
    for round_ in range(3):
        workflow_id = f"race-{round_}"
        store.create(new_run(workflow_id))
        results = in_threads(8, lambda i, wid=workflow_id: store.claim(wid, f"w{i}", at(30), T0))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert store.load(workflow_id).lease_owner == winners[0].lease_owner


def test_concurrent_creates_of_one_id_have_exactly_one_winner(store):
    check_compare_and_set(store)
    def start(i):
        try:
            store.create(new_run("same-id", input={"who": i}))
        except WorkflowAlreadyExistsError:
            return False
        return True

    assert sorted(in_threads(6, start)) == [False] * 5 + [True]
    assert len(store.load("same-id").history) == 1


def test_concurrent_signals_are_never_lost_nor_consumed_twice(store):
    """Senders race a worker that claims, consumes one signal per checkpoint and suspends."""
    check_compare_and_set(store)
    senders, per_sender = 4, 15
    total = senders * per_sender
    store.create(new_run("busy"))
    sending_done = threading.Event()
    nudge = threading.Event()
    received: list = []
    strandings: list = []

    def send(i: int) -> None:
        for n in range(per_sender):
            store.add_signal("busy", Signal("item", {"sender": i, "n": n}), at(1))
            nudge.set()

    def work() -> None:
        state = claimed(store, "busy")
        seen, pending, next_id = state.wake_seq, list(state.signals), state.history[-1].id + 1
        while True:
            for signal in pending:
                store.append("busy", state.run_id, "w1",
                             [event(next_id, EventType.SIGNAL_RECEIVED, signal_name="item",
                                    signal_payload=signal.payload)],
                             lease_until=at(30), consume_signal=signal.id)
                received.append(signal.payload)
                next_id += 1
            if len(received) >= total:
                return
            if store.suspend("busy", state.run_id, "w1", seen_wake_seq=seen, wake_at=None,
                             wait_kind="signal", wait_name="item", wait_until=None):
                # Released. Whatever is in the inbox now must have left the run due (the run
                # row is read after the inbox here), else that signal would be stranded.
                inbox = store.load("busy", with_history=False).signals
                if inbox and store.load("busy", with_history=False).wake_at is None:
                    strandings.append([s.id for s in inbox])
                nudge.wait(timeout=0.5)
                nudge.clear()
                state = claimed(store, "busy")
                seen, pending = state.wake_seq, list(state.signals)
            else:
                fresh = store.refresh("busy", state.run_id, "w1")
                seen, pending = fresh.wake_seq, list(fresh.signals)

    def body(i: int) -> None:
        if i == senders:
            work()
        else:
            send(i)
            if i == 0:
                sending_done.set()

    in_threads(senders + 1, body)
    assert strandings == []
    expected = Counter((i, n) for i in range(senders) for n in range(per_sender))
    assert Counter((p["sender"], p["n"]) for p in received) == expected
    final = store.load("busy")
    assert final.signals == []
    assert final.wake_seq == total
    consumed = [e.signal_payload for e in final.history if e.type is EventType.SIGNAL_RECEIVED]
    assert Counter((p["sender"], p["n"]) for p in consumed) == expected
    assert [e.id for e in final.history] == list(range(1, total + 2))
    # Per sender, FIFO: signals were consumed in the order each sender sent them.
    for i in range(senders):
        assert [p["n"] for p in consumed if p["sender"] == i] == list(range(per_sender))
