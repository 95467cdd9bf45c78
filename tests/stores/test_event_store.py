"""The events part of the store contract (``supports_events``), on the stores that keep events.

Each test states one promise of the "events" section of ``WorkflowStore`` and checks it by doing
it, on the memory store (the reference) and the django store on SQLite and PostgreSQL (where the
hot ones are single statements of their own, ``postgres_events.py``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from beluga_workflows.engine.events import Event, EventWait, empty_outcome
from beluga_workflows.errors import ConflictError, WorkflowAlreadyExistsError
from beluga_workflows.stores.base import RunEnd
from beluga_workflows.types import EventType, HistoryEvent, WorkflowFilter, WorkflowStatus

from ..conftest import make_store
from .test_contract import LEASE, T0, at, new_run


@pytest.fixture(params=["memory", "django-sqlite",
                        pytest.param("django-postgres", marks=pytest.mark.postgres)])
def store(request):
    """A fresh, empty store of each backend that keeps events."""
    instance = make_store(request.param, request)
    assert instance.supports_events
    yield instance
    instance.close()


def ev(event_id: str, name: str = "orders/placed", data: dict | None = None) -> Event:
    return Event(name, data or {}, event_id, T0)


def waiting_run(store, workflow_id: str, *waits_of):
    """A new run with event waits made by ``waits_of(workflow_id, run_id)`` each."""
    state = new_run(workflow_id)
    store.create_with_waits(state, [make(workflow_id, state.run_id) for make in waits_of])
    return state


def test_add_event_refuses_a_taken_id_and_keeps_the_first(store):
    assert store.add_event(ev("e-1", data={"v": 1}), at(1), skipped=[
        {"workflow_type": "t", "reason": "why"}]) is True
    assert store.add_event(ev("e-1", data={"v": 2}), at(2)) is False
    record = store.get_event("e-1")
    assert record.event == ev("e-1", data={"v": 1}) and record.received_at == at(1)
    assert record.fanned_out_at is None and record.triggers == []
    assert record.outcome == empty_outcome([{"workflow_type": "t", "reason": "why"}])
    assert store.get_event("e-2") is None and store.count_events() == 1


def test_list_events_newest_first_by_name_paged_and_counted(store):
    for n in range(5):
        store.add_event(ev(f"e-{n}", "a" if n % 2 else "b"), at(n))
    assert [r.event.id for r in store.list_events()] == ["e-4", "e-3", "e-2", "e-1", "e-0"]
    assert [r.event.id for r in store.list_events(name="b", limit=2, offset=1)] == ["e-2", "e-0"]
    assert [r.event.id for r in store.list_events(limit=0, offset=3)] == ["e-1", "e-0"]
    assert (store.count_events(), store.count_events(name="a"), store.count_events(name="z")) == (
        5, 2, 0)


def test_find_events_reads_since_a_time_after_a_cursor_and_never_drops_a_match(store):
    datas = [{"order_id": "o-1"}, {"order_id": "o-2"}, {"order_id": "o-1", "n": 2}, {"n": 2.0},
             {"order_id": 1}, {"order_id": "o-1"}]
    for n, data in enumerate(datas):
        store.add_event(ev(f"e-{n}", "paid", data), at(n))
    store.add_event(ev("other", "refunded", {"order_id": "o-1"}), at(3))
    found = store.find_events("paid", since=at(1), limit=10)
    assert [(e.id, when) for e, when in found] == [(f"e-{n}", at(n)) for n in range(1, 6)]
    page = store.find_events("paid", since=None, after=(at(2), "e-2"), limit=2)
    assert [e.id for e, _ in page] == ["e-3", "e-4"]
    # match may narrow the read, never drop an event with those values.
    narrowed = {e.id for e, _ in store.find_events("paid", since=None,
                                                   match=(("data.order_id", "o-1"),))}
    assert {"e-0", "e-2", "e-5"} <= narrowed
    numbers = {e.id for e, _ in store.find_events("paid", since=None, match=(("data.n", 2),))}
    assert {"e-2", "e-3"} <= numbers


def test_matching_waits_finds_waits_by_key_for_each_set_of_match_paths(store):
    waiting_run(store, "wf-a", lambda w, r: EventWait(w, r, 1, "paid", (("data.order_id", "o-1"),)))
    waiting_run(store, "wf-b", lambda w, r: EventWait(w, r, 1, "paid", (("data.order_id", "o-2"),)))
    waiting_run(store, "wf-c",
                lambda w, r: EventWait(w, r, 3, "paid", (("data.n", 2), ("data.kind", "gold"))))
    waiting_run(store, "wf-d", lambda w, r: EventWait(w, r, 1, "paid", where="event.data.n > 1"))
    waiting_run(store, "wf-e", lambda w, r: EventWait(w, r, 0, "refunded"),
                lambda w, r: EventWait(w, r, 2, "paid", (("data.order_id", "o-1"),)))
    event = ev("e-1", "paid", {"order_id": "o-1", "kind": "gold", "n": 2.0})
    found = {(w.workflow_id, w.op): w for w in store.matching_waits(event)}
    assert set(found) == {("wf-a", 1), ("wf-c", 3), ("wf-d", 1), ("wf-e", 2)}
    assert found[("wf-c", 3)].match == (("data.kind", "gold"), ("data.n", 2))
    assert found[("wf-d", 1)].where == "event.data.n > 1" and found[("wf-d", 1)].anchor is None
    assert store.matching_waits(ev("e-2", "paid", {"kind": "gold"})) == [
        found[("wf-d", 1)]]  # lacks the other waits' paths


def test_wake_runs_wakes_the_open_runs_of_those_run_ids_only(store):
    first, second = new_run("wf-1", queue="q"), new_run("wf-2")
    store.create(first)
    store.create(second)
    assert store.claim("wf-2", "me", at(0) + LEASE, at(0)) is not None
    store.append("wf-2", second.run_id, "me", [HistoryEvent(
        id=2, type=EventType.WORKFLOW_COMPLETED, timestamp=at(1))], lease_until=at(1) + LEASE,
        end=RunEnd(WorkflowStatus.COMPLETED))
    woken = store.wake_runs([("wf-1", first.run_id), ("wf-2", second.run_id),
                             ("wf-1", "another-run")], at(5))
    assert woken == {"wf-1": "q"}
    state = store.load("wf-1", with_history=False)
    assert state.wake_seq == 1 and state.wake_at == T0  # due already: its wake_at is kept
    assert store.load("wf-2", with_history=False).wake_seq == 0


def test_record_delivery_starts_the_run_once_and_refuses_an_open_id(store):
    store.add_event(ev("e-1"), at(0))
    state = new_run("t:e-1")
    cancel = EventWait("t:e-1", state.run_id, 0, "orders/cancelled")
    assert store.record_delivery("e-1", "t", state, waits=[cancel]) is True
    assert store.record_delivery("e-1", "t", new_run("t:e-1")) is False
    assert store.load("t:e-1").run_id == state.run_id
    assert store.matching_waits(ev("c", "orders/cancelled")) == [cancel]
    store.create(new_run("u:e-1"))
    with pytest.raises(WorkflowAlreadyExistsError):
        store.record_delivery("e-1", "u", new_run("u:e-1"))
    # Refused as a whole: no ledger row, so a later delivery (once the id is free) still starts.
    store.delete("u:e-1")
    assert store.record_delivery("e-1", "u", new_run("u:e-1")) is True
    assert store.count(WorkflowFilter()) == 2


def test_append_with_waits_is_fenced_and_changes_the_waits_in_the_same_write(store):
    state = waiting_run(store, "wf", lambda w, r: EventWait(w, r, 0, "halt"))
    run_id = state.run_id
    assert store.claim("wf", "me", at(0) + LEASE, at(0)) is not None
    wait = EventWait("wf", run_id, 2, "paid", (("data.k", 1),), "", at(1))
    started = HistoryEvent(id=2, type=EventType.EVENT_WAIT_STARTED, timestamp=at(1), op=2)
    control = store.append_with_waits("wf", run_id, "me", [started], lease_until=at(1) + LEASE,
                                      add_waits=[wait])
    assert control.is_open
    paid = ev("p", "paid", {"k": 1})
    assert store.matching_waits(paid) == [wait]
    with pytest.raises(ConflictError):  # another owner: nothing written
        store.append_with_waits("wf", run_id, "thief", [HistoryEvent(
            id=3, type=EventType.EVENT_RECEIVED, timestamp=at(2), op=2)],
            lease_until=at(2) + LEASE, drop_waits=(2,))
    assert store.matching_waits(paid) == [wait] and len(store.load("wf").history) == 2
    store.append_with_waits("wf", run_id, "me", [HistoryEvent(
        id=3, type=EventType.EVENT_RECEIVED, timestamp=at(2), op=2)], lease_until=at(2) + LEASE,
        drop_waits=(2,))
    assert store.matching_waits(paid) == [] and len(store.matching_waits(ev("h", "halt"))) == 1
    store.append_with_waits("wf", run_id, "me", [HistoryEvent(
        id=4, type=EventType.WORKFLOW_COMPLETED, timestamp=at(3))], lease_until=at(3) + LEASE,
        end=RunEnd(WorkflowStatus.COMPLETED))
    assert store.matching_waits(ev("h", "halt")) == []  # the run's end took all its waits
    assert store.load("wf", with_history=False).status is WorkflowStatus.COMPLETED


def test_deleting_or_replacing_a_run_drops_its_waits(store):
    waiting_run(store, "gone", lambda w, r: EventWait(w, r, 0, "halt"))
    store.delete("gone")
    assert store.matching_waits(ev("h", "halt")) == []


def test_record_outcome_merges_and_marks_the_event_fanned_out_once(store):
    store.add_event(ev("e-1"), at(0), skipped=[{"workflow_type": "t", "reason": "where false"}])
    store.add_event(ev("e-2"), at(1))
    assert store.unfanned_events(at(0)) == ["e-1"]
    assert store.unfanned_events(at(5), limit=1) == ["e-1"]
    store.record_outcome("e-1", {"started": ["a"], "woken": ["w"], "canceled": [], "skipped": []},
                         at(2))
    store.record_outcome("e-1", {"started": ["a", "b"], "woken": [], "canceled": ["c"],
                                 "skipped": [{"workflow_type": "u", "reason": "open"}]}, at(3))
    record = store.get_event("e-1")
    assert record.fanned_out_at == at(2)
    assert record.outcome == {"started": ["a", "b"], "woken": ["w"], "canceled": ["c"],
                              "skipped": [{"workflow_type": "t", "reason": "where false"},
                                          {"workflow_type": "u", "reason": "open"}]}
    assert store.unfanned_events(at(5)) == ["e-2"]
    store.record_outcome("missing", empty_outcome(), at(4))  # not an error
    assert store.unfanned_events(at(1) - timedelta(seconds=1)) == []
