"""``/api/events/``: send an event (202 with what it did), list events, one event's outcome."""

from __future__ import annotations

import pytest

from beluga_workflows.executor import get_executor

from . import event_flows  # noqa: F401 - registers the event-driven workflows
from .conftest import ended, start, wait_until

pytestmark = pytest.mark.django_db

EVENTS = "/api/events/"


def send(client, **body):
    return client.post(EVENTS, body, format="json")


def started_and_ended(workflow_id: str):
    """The run an event's fan-out starts (the fan-out runs after the answer), once it has ended."""
    store = get_executor().store
    wait_until(lambda: store.load(workflow_id, with_history=False), what=f"{workflow_id} to start")
    return ended(workflow_id)


def fanned_out(client, event_id: str) -> dict:
    return wait_until(lambda: (b := client.get(f"{EVENTS}{event_id}/").json())["fanned_out"] and b,
                      what=f"event {event_id!r} to be fanned out")


def test_an_event_starts_its_trigger_once_and_a_resent_id_is_a_duplicate(staff):
    response = send(staff, name="tests/placed", data={"order_id": "o-1"}, id="placed-o-1")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["event_id"] == "placed-o-1" and body["duplicate"] is False
    (run_id,) = body["started"]
    assert started_and_ended(run_id).result == {"order": "o-1"}

    again = send(staff, name="tests/placed", data={"order_id": "o-1"}, id="placed-o-1").json()
    assert again["duplicate"] is True and again["started"] == []

    detail = fanned_out(staff, "placed-o-1")
    assert detail["name"] == "tests/placed" and detail["data"] == {"order_id": "o-1"}
    assert detail["outcome"]["started"] == [run_id]
    listed = staff.get(EVENTS).json()
    assert listed["count"] == 1 and [e["id"] for e in listed["results"]] == ["placed-o-1"]


def test_an_event_wakes_the_run_waiting_for_it_and_says_so(staff):
    start(staff, "tests.api.await_paid", id="order-7", input="o-7")
    store = get_executor().store
    # Sent once the run waits: sent earlier, the run finds it itself and nothing is woken.
    wait_until(lambda: (s := store.load("order-7", with_history=False)) is not None
               and s.wait_kind == "event" and not s.lease_owner,
               what="order-7 to wait for its payment")
    body = send(staff, name="tests/paid", data={"order_id": "o-7", "amount": 3}).json()
    assert ended("order-7").result == {"order_id": "o-7", "amount": 3}
    detail = fanned_out(staff, body["event_id"])
    assert detail["outcome"]["woken"] == ["order-7"]


def test_the_list_filters_by_name_newest_first_and_pages(staff):
    for n in range(3):
        send(staff, name="tests/noise", data={"n": n}, id=f"noise-{n}")
    send(staff, name="tests/other", id="other-1")
    page = staff.get(EVENTS, {"name": "tests/noise", "limit": 2}).json()
    assert page["count"] == 3 and [e["id"] for e in page["results"]] == ["noise-2", "noise-1"]
    assert page["next"] and staff.get(page["next"]).json()["results"][0]["id"] == "noise-0"


@pytest.mark.parametrize(("body", "message"), [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"name": "bad\x00name"}, "name"),
    ({"name": "tests/x", "data": [1, 2]}, "object"),
    ({"name": "tests/x", "data": "text"}, "object"),
    ({"name": "tests/x", "id": ""}, "id"),
    ({"name": "tests/x", "payload": {}}, "unknown field(s): payload"),
])
def test_bad_bodies_are_refused_and_store_nothing(staff, body, message):
    response = send(staff, **body)
    assert response.status_code == 400, response.content
    assert message in str(response.json())
    assert staff.get(EVENTS).json()["count"] == 0


def test_an_unknown_event_is_404(staff):
    assert staff.get(f"{EVENTS}no-such-event/").status_code == 404


def test_sending_needs_the_write_permission(plain, anonymous):
    assert send(plain, name="tests/placed").status_code == 403
    assert send(anonymous, name="tests/placed").status_code == 401
    assert plain.get(EVENTS).status_code == 200
