"""History, signal, cancel and query of one workflow."""

from __future__ import annotations

import pytest

from beluga_workflows.types import WorkflowStatus

from .conftest import ended, result_of, start, url, waiting_for_signal


@pytest.fixture
def waiting(staff) -> str:
    start(staff, "tests.api.approval", id="order-9", input={"total": 9})
    waiting_for_signal("order-9")
    return "order-9"


@pytest.fixture
def finished(staff) -> str:
    start(staff, "tests.api.echo", id="over", input="x")
    ended("over")
    return "over"


# -- history ----------------------------------------------------------------------------------------

def test_history_lists_the_events_in_order(staff, waiting):
    staff.post(url(waiting, "signal/"), {"name": "approval", "payload": "ok"}, format="json")
    result_of(waiting)
    response = staff.get(url(waiting, "history/"))
    assert response.status_code == 200
    body = response.json()
    assert body["workflow_id"] == waiting
    assert body["run_id"] == staff.get(url(waiting)).json()["run_id"]
    assert body["next"] is None
    events = body["results"]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "workflow_started"
    assert events[0]["input"] == {"total": 9}
    received = [e for e in events if e["type"] == "signal_received"]
    assert [(e["signal_name"], e["signal_payload"]) for e in received] == [("approval", "ok")]
    assert events[-1]["type"] == "workflow_completed"
    assert events[-1]["result"] == {"input": {"total": 9}, "approval": "ok"}


def test_history_pages_by_sequence_number(staff):
    start(staff, "tests.api.steps", id="many", input=7)
    assert result_of("many") == 7
    everything = staff.get(url("many", "history/"), {"limit": 1000}).json()["results"]
    seen, page = [], staff.get(url("many", "history/"), {"limit": 3}).json()
    while True:
        assert len(page["results"]) <= 3
        seen.extend(page["results"])
        if page["next"] is None:
            break
        page = staff.get(page["next"]).json()
    assert seen == everything
    assert everything[-1]["type"] == "workflow_completed"
    after = staff.get(url("many", "history/"), {"after": 5, "limit": 2}).json()
    assert [e["id"] for e in after["results"]] == [6, 7]


@pytest.mark.parametrize("params", [{"after": -1}, {"after": "x"}, {"limit": 0}])
def test_history_refuses_bad_parameters_with_400(staff, waiting, params):
    assert staff.get(url(waiting, "history/"), params).status_code == 400


def test_history_of_an_unknown_id_is_404(staff):
    assert staff.get(url("nobody", "history/")).status_code == 404


# -- signal -----------------------------------------------------------------------------------------

def test_signal_is_accepted_with_202_and_received(staff, waiting):
    response = staff.post(url(waiting, "signal/"),
                          {"name": "approval", "payload": {"by": "ann"}}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["workflow_id"] == waiting
    assert body["name"] == "approval"
    assert body["payload"] == {"by": "ann"}
    assert body["sender_id"] == "api:staff"
    assert isinstance(body["id"], int)
    assert result_of(waiting) == {"input": {"total": 9}, "approval": {"by": "ann"}}


def test_signal_without_payload_sends_null(staff, waiting):
    assert staff.post(url(waiting, "signal/"), {"name": "approval"},
                      format="json").status_code == 202
    assert result_of(waiting)["approval"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "name: This field is required."),
        ({"name": ""}, "name: This field may not be blank."),
        ({"name": "x" * 256}, "name: Ensure this field has no more than 255 characters."),
        ({"name": "   "}, "name: A signal name must not be blank nor hold NUL."),
        ({"name": "a\x00b"},
         "name: A signal name must not be blank nor hold NUL. Null characters are not allowed."),
        ({"name": 7}, "name: Not a valid string."),
    ],
)
def test_signal_refuses_bad_bodies_with_400(staff, waiting, body, message):
    response = staff.post(url(waiting, "signal/"), body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == message
    assert waiting_for_signal(waiting)


def test_signal_refuses_malformed_json(staff, waiting):
    response = staff.generic("POST", url(waiting, "signal/"), "{name:", content_type="application/json")
    assert response.status_code == 400


def test_signal_to_an_unknown_id_is_404(staff):
    response = staff.post(url("nobody", "signal/"), {"name": "approval"}, format="json")
    assert response.status_code == 404
    assert "no workflow with id 'nobody'" in response.json()["detail"]


def test_signal_to_an_ended_run_is_409(staff, finished):
    response = staff.post(url(finished, "signal/"), {"name": "approval"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "not_running"
    assert "has ended" in response.json()["detail"]


# -- cancel -----------------------------------------------------------------------------------------

def test_cancel_is_accepted_with_202_and_ends_the_run(staff, waiting):
    response = staff.post(url(waiting, "cancel/"))
    assert response.status_code == 202
    assert response.json()["id"] == waiting
    assert response.json()["cancel_requested"] is True
    assert ended(waiting).status is WorkflowStatus.CANCELED
    assert staff.get(url(waiting)).json()["status"] == "canceled"


def test_cancel_of_an_unknown_id_is_404(staff):
    assert staff.post(url("nobody", "cancel/")).status_code == 404


def test_cancel_of_an_ended_run_is_409(staff, finished):
    response = staff.post(url(finished, "cancel/"))
    assert response.status_code == 409
    assert response.json()["code"] == "not_running"


def test_cancel_twice_is_409_once_the_run_ended(staff, waiting):
    assert staff.post(url(waiting, "cancel/")).status_code == 202
    ended(waiting)
    assert staff.post(url(waiting, "cancel/")).status_code == 409


# -- query ------------------------------------------------------------------------------------------

def test_query_builtins_and_handlers(staff, waiting):
    assert staff.get(url(waiting, "query/status/")).json() == {"result": "running"}
    assert staff.get(url(waiting, "query/result/")).json() == {"result": None}
    assert staff.get(url(waiting, "query/stage/")).json() == {"result": "waiting"}
    history = staff.get(url(waiting, "query/history/")).json()["result"]
    assert history[0]["type"] == "workflow_started"


def test_query_of_an_ended_run(staff, finished):
    assert staff.get(url(finished, "query/result/")).json() == {"result": "x"}


def test_query_of_an_unknown_type_is_400(staff, waiting):
    response = staff.get(url(waiting, "query/nonsense/"))
    assert response.status_code == 400
    assert "unknown query type 'nonsense'" in response.json()["detail"]


def test_query_of_an_unknown_id_is_404(staff):
    assert staff.get(url("nobody", "query/status/")).status_code == 404


def test_unsupported_methods_are_405(staff, waiting):
    assert staff.delete(url(waiting)).status_code == 405
    assert staff.put(url(waiting, "history/")).status_code == 405
    assert staff.patch(url()).status_code == 405
