"""POST /api/workflows/{id}/resume/ and /fork/: continue an ended run, or copy it from a step."""

from __future__ import annotations

import pytest

from beluga_workflows.executor import get_executor

from . import flows
from .conftest import ended, result_of, start, url, waiting_for_signal


@pytest.fixture
def broken_step_two(monkeypatch):
    """Step 2 of ``tests.api.three_steps`` fails until the test clears the flag."""
    monkeypatch.setitem(flows.STEP_TWO_FAILS, "on", True)
    return flows.STEP_TWO_FAILS


def calls(key: str) -> list[int]:
    return [flows.STEP_CALLS.get((key, n), 0) for n in (1, 2, 3)]


def snapshot() -> list[tuple]:
    """Every id's latest run as the store has it (a refused request must leave it so)."""
    return sorted((s.workflow_id, s.run_id, s.status.value, s.version, len(s.history))
                  for s in (get_executor().store.load(s.workflow_id)
                            for s in get_executor().store.list()))


def first_event_of_step(staff, workflow_id: str, op: int) -> int:
    events = staff.get(url(workflow_id, "history/")).json()["results"]
    return next(e["id"] for e in events if e["op"] == op)


def failed_run(staff, key: str) -> dict:
    """A run of three steps whose step 2 failed (the ``broken_step_two`` fixture must be on)."""
    run = start(staff, "tests.api.three_steps", id=key, input=key)
    assert ended(key).status.value == "failed"
    assert calls(key) == [1, 1, 0]
    return run


def completed_run(staff, key: str) -> dict:
    run = start(staff, "tests.api.three_steps", id=key, input=key)
    assert result_of(key) == ["step1", "step2", "step3"]
    return run


@pytest.fixture
def open_run(staff) -> str:
    start(staff, "tests.api.approval", id="waiting")
    waiting_for_signal("waiting")
    return "waiting"


# -- resume ---------------------------------------------------------------------------------------

def test_resume_runs_the_failed_step_again_and_not_the_one_before(staff, broken_step_two):
    failed = failed_run(staff, "api-resume")
    broken_step_two["on"] = False  # the fix is deployed
    response = staff.post(url("api-resume", "resume/"))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"] == "api-resume" and body["run_id"] != failed["run_id"]
    assert body["workflow_type"] == "tests.api.three_steps" and body["input"] == "api-resume"
    assert result_of("api-resume") == ["step1", "step2", "step3"]
    assert calls("api-resume") == [1, 2, 1]
    detail = staff.get(url("api-resume")).json()
    assert detail["run_id"] == body["run_id"] and detail["status"] == "completed"
    first = staff.get(url("api-resume", "history/")).json()["results"][0]
    assert first["type"] == "workflow_started"
    assert first["result"] == {"resumed_from": failed["run_id"]}


def test_resume_of_a_run_whose_id_holds_a_route_word(staff, broken_step_two):
    failed_run(staff, "orders/fork")
    broken_step_two["on"] = False
    response = staff.post(url("orders/fork", "resume/"))
    assert response.status_code == 202, response.content
    assert response.json()["id"] == "orders/fork"
    assert result_of("orders/fork") == ["step1", "step2", "step3"]


def test_resume_refuses_a_completed_an_open_and_an_unknown_run(staff, open_run):
    completed_run(staff, "done")
    before = snapshot()
    completed = staff.post(url("done", "resume/"))
    assert completed.status_code == 409
    assert completed.json()["code"] == "conflict"
    assert "completed" in completed.json()["detail"]
    running = staff.post(url(open_run, "resume/"))
    assert running.status_code == 409 and "running" in running.json()["detail"]
    missing = staff.post(url("nobody", "resume/"))
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert snapshot() == before


# -- fork -----------------------------------------------------------------------------------------

def test_fork_from_step_three_replays_the_steps_before_under_a_new_id(staff):
    source = completed_run(staff, "api-fork")
    third = first_event_of_step(staff, "api-fork", 3)
    response = staff.post(url("api-fork", "fork/"), {"from_event": third, "id": "api-fork/again"},
                          format="json")
    assert response.status_code == 201, response.content
    assert response["Location"] == url("api-fork/again")
    body = response.json()
    assert body["id"] == "api-fork/again" and body["input"] == "api-fork"
    assert result_of("api-fork/again") == ["step1", "step2", "step3"]
    assert calls("api-fork") == [1, 1, 2]  # only step 3 ran again
    first = staff.get(url("api-fork/again", "history/")).json()["results"][0]
    assert first["result"] == {"forked_from": {
        "workflow_id": "api-fork", "run_id": source["run_id"], "from_event": third}}
    unchanged = staff.get(url("api-fork")).json()
    assert (unchanged["run_id"], unchanged["status"]) == (source["run_id"], "completed")


def test_fork_without_a_body_starts_from_the_beginning_under_a_generated_id(staff,
                                                                           broken_step_two):
    failed_run(staff, "api-fork-all")
    broken_step_two["on"] = False
    response = staff.post(url("api-fork-all", "fork/"), {}, format="json")
    assert response.status_code == 201, response.content
    new_id = response.json()["id"]
    assert new_id.startswith("api-fork-all-fork-")
    assert response["Location"] == url(new_id)
    assert result_of(new_id) == ["step1", "step2", "step3"]
    assert calls("api-fork-all") == [2, 2, 1]
    assert staff.get(url("api-fork-all")).json()["status"] == "failed"  # the source stays


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"from_event": "3"}, "from_event", "A valid integer is required"),
    ({"from_event": 2.0}, "from_event", "A valid integer is required"),
    ({"from_event": True}, "from_event", "A valid integer is required"),
    ({"from_event": 1}, "from_event", "greater than or equal to 2"),
    ({"from_event": 99}, "from_event", "from 2 to"),
    ({"from_event": "inside step 2"}, "from_event", "inside step 2"),
    ({"id": ""}, "id", "may not be blank"),
    ({"id": " padded"}, "id", "must not start or end with whitespace"),
    ({"id": "x" * 256}, "id", "no more than 255 characters"),
    ({"id": 7}, "id", "Not a valid string"),
])
def test_a_bad_fork_body_is_a_400_naming_the_field_and_changes_nothing(staff, body, field,
                                                                       message):
    completed_run(staff, "src")
    if body.get("from_event") == "inside step 2":
        events = staff.get(url("src", "history/")).json()["results"]
        body = {"from_event": next(e["id"] for e in events if e["op"] == 2
                                   and e["type"] == "activity_completed")}
    before = snapshot()
    response = staff.post(url("src", "fork/"), body, format="json")
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["code"] == "invalid_input"
    assert answer["detail"].startswith(field) and message in answer["detail"]
    assert f"{field}: {field}" not in answer["detail"]
    assert list(answer["errors"]) == [field]
    assert snapshot() == before


def test_fork_refuses_an_open_run_an_open_target_and_an_unknown_run(staff, open_run):
    completed_run(staff, "src")
    before = snapshot()
    running = staff.post(url(open_run, "fork/"), {}, format="json")
    assert running.status_code == 409 and running.json()["code"] == "conflict"
    assert "still running" in running.json()["detail"]
    taken = staff.post(url("src", "fork/"), {"id": open_run}, format="json")
    assert taken.status_code == 409 and "open run" in taken.json()["detail"]
    missing = staff.post(url("nobody", "fork/"), {}, format="json")
    assert missing.status_code == 404
    assert snapshot() == before


def test_resume_and_fork_need_the_write_permission(plain, anonymous, staff, broken_step_two):
    failed_run(staff, "guarded")
    before = snapshot()
    for client in (plain, anonymous):
        assert client.post(url("guarded", "resume/")).status_code in (401, 403)
        assert client.post(url("guarded", "fork/"), {}, format="json").status_code in (401, 403)
    assert plain.post(url("guarded", "resume/")).status_code == 403
    assert snapshot() == before
