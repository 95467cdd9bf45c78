"""GET/POST /api/workflows/ and GET /api/workflows/{id}/."""

from __future__ import annotations

import pytest

from beluga_workflows.executor import get_executor
from beluga_workflows.types import WorkflowStatus

from .conftest import ended, result_of, start, url, waiting_for_signal

WORKFLOW_FIELDS = {
    "id", "run_id", "workflow_type", "status", "input", "result", "error", "created_at",
    "updated_at", "ended_at", "deadline", "duration", "cancel_requested", "parent_id", "waiting_for",
}


# -- start ------------------------------------------------------------------------------------------

def test_start_answers_201_with_the_workflow_and_its_location(staff):
    response = staff.post(url(), {"workflow_type": "tests.api.echo", "id": "order-1",
                                  "input": {"total": 42}, "timeout": 30}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == WORKFLOW_FIELDS
    assert body["id"] == "order-1"
    assert body["workflow_type"] == "tests.api.echo"
    assert body["input"] == {"total": 42}
    assert body["status"] in {"running", "completed"}
    assert body["deadline"] is not None
    assert response["Location"] == "/api/workflows/order-1/"
    assert result_of("order-1") == {"total": 42}


def test_start_without_id_generates_one(staff):
    body = start(staff, "tests.api.echo")
    assert body["id"].startswith("wf-")
    assert body["input"] is None
    assert result_of(body["id"]) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"workflow_type": "no.such.type"}, "unknown workflow type 'no.such.type'"),
        ({}, "workflow_type: This field is required."),
        ({"workflow_type": ""}, "workflow_type: This field may not be blank."),
        ({"workflow_type": 7.5, "id": ["x"]}, "id: Not a valid string."),
        ({"workflow_type": "tests.api.echo", "id": " padded"}, "must not start or end with whitespace"),
        ({"workflow_type": "tests.api.echo", "id": "line\nbreak"}, "control characters"),
        ({"workflow_type": "tests.api.echo", "id": "."}, "must not be '.' or '..'"),
        ({"workflow_type": "tests.api.echo", "id": ""}, "id: This field may not be blank."),
        ({"workflow_type": "tests.api.echo", "id": "x" * 256},
         "id: Ensure this field has no more than 255 characters."),
        ({"workflow_type": "tests.api.echo", "timeout": -1}, "must not be negative"),
        ({"workflow_type": "tests.api.echo", "timeout": 0}, "must be positive"),
        ({"workflow_type": "tests.api.echo", "timeout": "soon"}, "timeout: A valid number is required."),
    ],
)
def test_start_refuses_bad_bodies_with_400(staff, body, message):
    response = staff.post(url(), body, format="json")
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert "\n" not in response.json()["detail"]
    assert get_executor().store.list() == []  # a refused request changes nothing


def test_start_names_the_invalid_fields(staff):
    body = staff.post(url(), {"timeout": "soon"}, format="json").json()
    assert body["code"] == "invalid_input"
    assert set(body["errors"]) == {"workflow_type", "timeout"}


def test_start_refuses_a_body_that_is_not_an_object(staff):
    response = staff.post(url(), ["tests.api.echo"], format="json")
    assert response.status_code == 400
    assert "Expected a dictionary" in response.json()["detail"]


def test_start_refuses_malformed_json(staff):
    response = staff.generic("POST", url(), '{"workflow_type": ', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_start_refuses_non_json_constants(staff):
    response = staff.generic("POST", url(), '{"workflow_type": "tests.api.echo", "input": NaN}',
                             content_type="application/json")
    assert response.status_code == 400


def test_start_refuses_an_oversized_input(staff, workflow_backend):
    workflow_backend.BELUGA_WORKFLOWS = {**workflow_backend.BELUGA_WORKFLOWS,
                                         "MAX_PAYLOAD_BYTES": 100}
    response = staff.post(url(), {"workflow_type": "tests.api.echo", "input": "x" * 200},
                          format="json")
    assert response.status_code == 400
    assert "workflow input is too large" in response.json()["detail"]


def test_start_accepts_json_only(staff):
    response = staff.post(url(), {"workflow_type": "tests.api.echo"})  # multipart form
    assert response.status_code == 415


def test_start_of_an_open_id_is_409_and_changes_nothing(staff):
    first = start(staff, "tests.api.approval", id="order-2")
    response = staff.post(url(), {"workflow_type": "tests.api.echo", "id": "order-2"},
                          format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert "already has an open run" in response.json()["detail"]
    assert staff.get(url("order-2")).json()["run_id"] == first["run_id"]


def test_an_ended_id_may_start_again_as_a_new_run(staff):
    first = start(staff, "tests.api.echo", id="order-3", input=1)
    assert result_of("order-3") == 1
    second = start(staff, "tests.api.echo", id="order-3", input=2)
    assert second["run_id"] != first["run_id"]
    assert result_of("order-3") == 2


# -- detail -----------------------------------------------------------------------------------------

def test_detail_shows_a_completed_run(staff):
    start(staff, "tests.api.echo", id="done", input={"a": [1, 2]})
    ended("done")
    response = staff.get(url("done"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["result"] == {"a": [1, 2]}
    assert body["error"] is None
    assert body["ended_at"] is not None and body["duration"] >= 0
    assert body["waiting_for"] is None


def test_detail_shows_what_a_run_waits_for(staff):
    start(staff, "tests.api.approval", id="waits")
    waiting_for_signal("waits")
    body = staff.get(url("waits")).json()
    assert body["status"] == "running"
    assert body["waiting_for"] == {"kind": "signal", "name": "approval", "until": None}


def test_detail_shows_why_a_run_failed(staff):
    start(staff, "tests.api.fail", id="broken")
    assert ended("broken").status is WorkflowStatus.FAILED
    error = staff.get(url("broken")).json()["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == "boom"
    assert "Traceback" in error["traceback"]


@pytest.mark.parametrize("workflow_id", ["missing", "no/such/thing", "trailing ", "ütf-8 ✓"])
def test_detail_of_an_unknown_id_is_404(staff, workflow_id):
    response = staff.get(url(workflow_id))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# -- list -------------------------------------------------------------------------------------------

@pytest.fixture
def five_runs(staff) -> list[str]:
    ids = []
    for i in range(5):
        workflow_type = "tests.api.approval" if i % 2 else "tests.api.echo"
        ids.append(start(staff, workflow_type, id=f"run-{i}", input=i)["id"])
    for workflow_id in ids[::2]:
        ended(workflow_id)
    return ids


def test_list_is_newest_first_with_a_count(staff, five_runs):
    response = staff.get(url())
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 5
    assert body["next"] is None and body["previous"] is None
    assert [w["id"] for w in body["results"]] == five_runs[::-1]
    assert set(body["results"][0]) == WORKFLOW_FIELDS


def test_list_pages_with_limit_and_offset(staff, five_runs):
    first = staff.get(url(), {"limit": 2}).json()
    assert [w["id"] for w in first["results"]] == ["run-4", "run-3"]
    assert first["count"] == 5
    assert first["previous"] is None
    second = staff.get(first["next"]).json()
    assert [w["id"] for w in second["results"]] == ["run-2", "run-1"]
    assert second["previous"].endswith("/api/workflows/?limit=2")
    third = staff.get(second["next"]).json()
    assert [w["id"] for w in third["results"]] == ["run-0"]
    assert third["next"] is None
    assert "offset=2" in third["previous"]


def test_list_filters_by_status_and_type(staff, five_runs):
    completed = staff.get(url(), {"status": "completed"}).json()
    assert [w["id"] for w in completed["results"]] == ["run-4", "run-2", "run-0"]
    assert completed["count"] == 3
    waiting = staff.get(url(), {"status": "running", "workflow_type": "tests.api.approval"}).json()
    assert [w["id"] for w in waiting["results"]] == ["run-3", "run-1"]
    assert staff.get(url(), {"workflow_type": "nothing.like.it"}).json()["count"] == 0


def test_list_filters_by_parent_and_names_each_runs_parent(staff, five_runs):
    parent = start(staff, "tests.api.family", id="fam", input=2)
    result_of(parent["id"])
    children = staff.get(url(), {"parent_id": "fam"}).json()
    assert sorted(w["id"] for w in children["results"]) == ["fam/1", "fam/2"]
    assert children["count"] == 2
    assert {w["parent_id"] for w in children["results"]} == {"fam"}
    assert staff.get(url("fam")).json()["parent_id"] == ""
    assert staff.get(url(), {"parent_id": "run-1"}).json()["count"] == 0
    everything = staff.get(url(), {"parent_id": ""}).json()
    assert everything["count"] == 8  # empty: any run


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "sleeping"}, 'status: "sleeping" is not a valid choice.'),
        ({"limit": "ten"}, "limit: A valid integer is required."),
        ({"limit": ""}, "limit: A valid integer is required."),
        ({"offset": "1.0"}, "offset: A valid integer is required."),
        ({"limit": 0}, "limit: Ensure this value is greater than or equal to 1."),
        ({"limit": 100000}, "limit: Ensure this value is less than or equal to 500."),
        ({"offset": -1}, "offset: Ensure this value is greater than or equal to 0."),
        ({"parent_id": "a\x00b"}, "parent_id: Null characters are not allowed."),
    ],
)
def test_list_refuses_bad_parameters_with_400(staff, params, message):
    response = staff.get(url(), params)
    assert response.status_code == 400
    assert response.json()["detail"] == message
