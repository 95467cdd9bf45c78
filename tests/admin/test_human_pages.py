"""The admin's human-task pages: pending requests listed, answered (approve / reject / modify)."""

from __future__ import annotations

import pytest

from beluga_workflows import WorkflowOptions, WorkflowStatus

from .conftest import ended, waiting
from .support import url

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return response.content.decode()


@pytest.fixture
def review(executor):
    executor.execute("admin_tests.review", WorkflowOptions(
        id="refund-7", input={"title": "Refund order 7?", "order": {"order": 7, "amount": "19.90"}}))
    return waiting(executor, "refund-7", kind="human")


def test_pending_tasks_are_listed_with_their_request(executor, operator_client, review):
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="not-a-task"))
    response = operator_client.get(url("human_tasks"))
    assert response.status_code == 200
    [row] = response.context["rows"]
    assert row["task"].title == "Refund order 7?" and row["task"].workflow_id == "refund-7"
    page = text(response)
    assert "Refund order 7?" in page and "A customer asks for a refund." in page
    assert "&quot;amount&quot;: &quot;19.90&quot;" in page
    for choice in ("approve", "reject", "modify"):
        assert f'{url("answer", "refund-7")}?decision={choice}' in page
    assert "not-a-task" not in page
    listing = text(operator_client.get(url("changelist")))
    assert "Human tasks (1)" in listing and "a person (human task)" in listing


def test_run_page_shows_the_request_and_an_answer_button(executor, operator_client, review):
    page = text(operator_client.get(url("change", "refund-7")))
    assert 'id="human-task"' in page and "Waiting for a person: Refund order 7?" in page
    assert url("answer", "refund-7") in page


@pytest.mark.parametrize("data,answer", [
    ({"decision": "approve", "feedback": "fine"},
     {"decision": "approve", "feedback": "fine", "modified": None}),
    ({"decision": "reject", "feedback": "fraud", "modified": ""},
     {"decision": "reject", "feedback": "fraud", "modified": None}),
    ({"decision": "modify", "feedback": "less", "modified": '{"order": 7, "amount": "9.90"}'},
     {"decision": "modify", "feedback": "less", "modified": {"order": 7, "amount": "9.90"}}),
])
def test_answer_resumes_the_workflow(executor, operator_client, review, data, answer):
    form = operator_client.get(url("answer", "refund-7") + f"?decision={data['decision']}")
    assert form.status_code == 200
    initial = form.context["form"].initial
    assert initial["decision"] == data["decision"]
    assert initial["modified"] == {"order": 7, "amount": "19.90"}  # modify starts from the data
    response = operator_client.post(url("answer", "refund-7"),
                                    {"request_id": initial["request_id"], **data}, follow=True)
    assert response.redirect_chain[0][0] == url("human_tasks")
    assert f"Answered “refund-7”: {data['decision']}" in text(response)
    state = ended(executor, "refund-7")
    assert state.status is WorkflowStatus.COMPLETED and state.result == {"answer": answer}
    assert response.context["rows"] == []


@pytest.mark.parametrize("data,field,message", [
    ({"decision": "modify", "modified": ""}, "modified", "Give the modified data"),
    ({"decision": "modify", "modified": "{broken"}, "modified", "Invalid JSON"),
    ({"decision": "maybe"}, "decision", "Select a valid choice"),
    ({}, "decision", "This field is required"),
])
def test_invalid_answer_shows_the_error_and_changes_nothing(executor, operator_client, review,
                                                            data, field, message):
    request_id = review.wait_name
    before = executor.store.load("refund-7")
    response = operator_client.post(url("answer", "refund-7"), {"request_id": request_id, **data})
    assert response.status_code == 200
    assert any(message in e for e in response.context["form"].errors[field])
    after = executor.store.load("refund-7")
    assert after.signals == [] and len(after.history) == len(before.history) and after.is_open


def test_answer_to_a_stale_request_or_ended_run_is_refused(executor, operator_client, review):
    stale = operator_client.post(url("answer", "refund-7"),
                                 {"request_id": "human:99", "decision": "approve"})
    assert "no pending human task" in stale.context["form"].non_field_errors()[0]
    assert executor.store.load("refund-7").signals == []
    operator_client.post(url("answer", "refund-7"),
                         {"request_id": review.wait_name, "decision": "approve"})
    ended(executor, "refund-7")
    again = operator_client.post(url("answer", "refund-7"),
                                 {"request_id": review.wait_name, "decision": "reject"})
    assert again.status_code == 200
    assert "has ended" in again.context["form"].non_field_errors()[0]
    assert "waits for no human task" in text(operator_client.get(url("answer", "refund-7")))
    assert executor.store.load("refund-7").result["answer"]["decision"] == "approve"


def test_answer_form_of_an_unknown_workflow(executor, operator_client):
    page = operator_client.get(url("answer", "ghost"))
    assert "There is no workflow with id “ghost”" in text(page)
    response = operator_client.post(url("answer", "ghost"), {"request_id": "human:1",
                                                             "decision": "approve"})
    assert "no workflow with id" in response.context["form"].non_field_errors()[0]


def test_viewer_sees_tasks_but_no_answer_buttons(executor, client, viewer, review):
    client.force_login(viewer)
    page = text(client.get(url("human_tasks")))
    assert "Refund order 7?" in page and url("answer", "refund-7") not in page
    assert client.post(url("answer", "refund-7"), {"request_id": review.wait_name,
                                                   "decision": "approve"}).status_code == 403
    assert executor.store.load("refund-7").is_open
