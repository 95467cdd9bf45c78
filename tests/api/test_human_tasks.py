"""Human tasks over the API: list the pending requests, show a run's, answer it (and resume it)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from beluga_workflows.activities import pending_human_task
from beluga_workflows.api.exceptions import api_exception_for
from beluga_workflows.api.routing import Reading, readings_of
from beluga_workflows.errors import InvalidInputError
from beluga_workflows.executor import get_executor
from beluga_workflows.types import WorkflowOptions

from .conftest import (
    ended,
    make_user,
    result_of,
    start,
    token_client,
    url,
    wait_until,
    waiting_for_signal,
)

TASKS = "/api/human-tasks/"
REVIEW = "tests.api.review"
REFUND = {"order": 42, "amount": "19.90"}


def asking(workflow_id: str, *, after: str | None = None):
    """Wait until the run waits for a person (on a request other than ``after``); the task."""
    store = get_executor().store

    def pending():
        state = store.load(workflow_id)
        task = pending_human_task(state, state.history) if state is not None else None
        return task if task is not None and task.request_id != after else None

    return wait_until(pending, what=f"{workflow_id!r} to ask a person")


def review(client, workflow_id: str, **options):
    """Start a review run and wait until it asks; the pending task."""
    start(client, REVIEW, id=workflow_id, input=options or None)
    return asking(workflow_id)


def answer(client, workflow_id: str, body, *, safe: str = "/"):
    return client.post(url(workflow_id, "human-task/", safe=safe), body, format="json")


def still_pending(workflow_id: str, request_id: str) -> None:
    """Nothing changed: the run still waits for that request and holds no answer in its inbox."""
    state = get_executor().store.load(workflow_id)
    task = pending_human_task(state, state.history)
    assert task is not None and task.request_id == request_id
    assert state.signals == []


# -- GET /api/human-tasks/ ----------------------------------------------------------------------

def test_the_list_shows_each_pending_request_newest_run_first(staff):
    first = review(staff, "refund-1")
    second = review(staff, "refund-2", timeout=3600, choices=["approve", "reject"])
    start(staff, "tests.api.approval", id="waits-for-a-signal")
    waiting_for_signal("waits-for-a-signal")
    start(staff, "tests.api.echo", id="over")
    ended("over")

    response = staff.get(TASKS)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and body["next"] is None and body["previous"] is None
    assert [t["workflow_id"] for t in body["results"]] == ["refund-2", "refund-1"]
    newest, oldest = body["results"]
    state = get_executor().store.load("refund-2", with_history=False)
    assert newest == {
        "workflow_id": "refund-2",
        "run_id": state.run_id,
        "workflow_type": REVIEW,
        "request_id": second.request_id,
        "title": "Approve the refund",
        "description": "A customer asks for a refund.",
        "choices": ["approve", "reject"],
        "data": {**REFUND, "round": 1},
        "asked_at": newest["asked_at"],
        "due_at": newest["due_at"],
    }
    asked_at = datetime.fromisoformat(newest["asked_at"])
    assert asked_at == second.asked_at
    due_in = datetime.fromisoformat(newest["due_at"]) - asked_at
    assert abs(due_in - timedelta(hours=1)) < timedelta(seconds=1)
    assert oldest["request_id"] == first.request_id
    assert oldest["choices"] == ["approve", "reject", "modify"] and oldest["due_at"] is None


def test_the_list_is_paginated_like_the_workflow_list(staff):
    for n in range(3):
        review(staff, f"page-{n}")
    page = staff.get(TASKS, {"limit": 2}).json()
    assert page["count"] == 3 and page["previous"] is None
    assert [t["workflow_id"] for t in page["results"]] == ["page-2", "page-1"]
    rest = staff.get(page["next"]).json()
    assert [t["workflow_id"] for t in rest["results"]] == ["page-0"]
    assert rest["next"] is None
    assert staff.get(rest["previous"]).json() == page
    assert staff.get(TASKS, {"workflow_type": REVIEW}).json()["count"] == 3
    assert staff.get(TASKS, {"workflow_type": "tests.api.echo"}).json() == {
        "count": 0, "next": None, "previous": None, "results": []}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "x"}, {"offset": -1},
                                    {"limit": 501}, {"workflow_type": "a\x00b"}])
def test_the_list_refuses_bad_parameters_with_400(staff, params):
    response = staff.get(TASKS, params)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"


def test_an_answered_task_leaves_the_list(staff):
    task = review(staff, "answered")
    assert answer(staff, "answered", {"decision": "approve",
                                      "request_id": task.request_id}).status_code == 202
    result_of("answered")
    assert staff.get(TASKS).json()["count"] == 0


# -- GET /api/workflows/{id}/human-task/ --------------------------------------------------------

def test_a_runs_pending_task(staff):
    task = review(staff, "one", timeout=60)
    response = staff.get(url("one", "human-task/"))
    assert response.status_code == 200
    body = response.json()
    assert body["workflow_id"] == "one" and body["request_id"] == task.request_id
    assert body["data"] == {**REFUND, "round": 1}
    assert body["due_at"] is not None
    assert body == staff.get(TASKS).json()["results"][0]


def test_no_pending_task_is_404(staff):
    assert staff.get(url("nobody", "human-task/")).json()["code"] == "not_found"
    start(staff, "tests.api.approval", id="signal-wait")
    waiting_for_signal("signal-wait")
    start(staff, "tests.api.echo", id="done")
    ended("done")
    for workflow_id in ("nobody", "signal-wait", "done"):
        response = staff.get(url(workflow_id, "human-task/"))
        assert response.status_code == 404, workflow_id
    assert staff.get(url("signal-wait", "human-task/")).json() == {
        "detail": "workflow 'signal-wait' waits for no human task (running)",
        "code": "no_human_task",
    }


# -- POST /api/workflows/{id}/human-task/ -------------------------------------------------------

@pytest.mark.parametrize(("decision", "feedback", "modified"), [
    ("approve", "looks fine", None),
    ("reject", "", None),
    ("modify", "lower it", {"order": 42, "amount": "9.90"}),
])
def test_an_answer_is_accepted_and_resumes_the_workflow(staff, decision, feedback, modified):
    task = review(staff, "decide")
    response = answer(staff, "decide", {"decision": decision, "feedback": feedback,
                                        "modified": modified, "request_id": task.request_id})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body == {"workflow_id": "decide", "request_id": task.request_id, "decision": decision,
                    "feedback": feedback, "modified": modified, "sent_at": body["sent_at"],
                    "sender_id": "api:staff"}
    assert result_of("decide") == [{"decision": decision, "feedback": feedback,
                                     "modified": modified}]
    history = staff.get(url("decide", "history/")).json()["results"]
    received = [e for e in history if e["type"] == "signal_received"]
    assert [e["signal_name"] for e in received] == [task.request_id]


def test_the_decision_alone_answers_whatever_the_run_waits_for(staff):
    review(staff, "bare")
    assert answer(staff, "bare", {"decision": "approve"}).status_code == 202
    assert result_of("bare") == [{"decision": "approve", "feedback": "", "modified": None}]


def test_an_answer_to_a_request_the_run_moved_on_from_is_400(staff):
    first = review(staff, "twice", rounds=2)
    assert answer(staff, "twice", {"decision": "approve",
                                   "request_id": first.request_id}).status_code == 202
    second = asking("twice", after=first.request_id)
    stale = answer(staff, "twice", {"decision": "reject", "request_id": first.request_id})
    assert stale.status_code == 400
    assert stale.json()["code"] == "stale_human_task"
    assert second.request_id in stale.json()["detail"]
    still_pending("twice", second.request_id)
    assert answer(staff, "twice", {"decision": "reject",
                                   "request_id": second.request_id}).status_code == 202
    assert [a["decision"] for a in result_of("twice")] == ["approve", "reject"]


@pytest.mark.parametrize(("body", "field"), [
    ({"decision": "maybe"}, "decision"),
    ({}, "decision"),
    ({"decision": None}, "decision"),
    ({"decision": 1}, "decision"),
    ({"decision": "approve", "feedback": 3}, "feedback"),
    ({"decision": "approve", "feedback": "a\x00b"}, "feedback"),
    ({"decision": "approve", "request_id": ""}, "request_id"),
    ({"decision": "approve", "request_id": 7}, "request_id"),
    (["approve"], "non_field_errors"),
    ("approve", "non_field_errors"),
])
def test_a_bad_body_is_400_and_changes_nothing(staff, body, field):
    task = review(staff, "strict")
    response = answer(staff, "strict", body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert field in response.json()["errors"]
    still_pending("strict", task.request_id)


def test_a_decision_the_task_does_not_offer_is_400(staff):
    task = review(staff, "no-modify", choices=["approve", "reject"])
    response = answer(staff, "no-modify", {"decision": "modify", "modified": {"amount": 1}})
    assert response.status_code == 400
    assert response.json() == {"detail": "decision 'modify' is not one of approve, reject",
                               "code": "invalid_input"}
    still_pending("no-modify", task.request_id)


def test_a_body_that_is_not_json_is_refused(staff):
    task = review(staff, "form")
    response = staff.post(url("form", "human-task/"), "decision=approve",
                          content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert staff.post(url("form", "human-task/"), "{", content_type="application/json"
                      ).status_code == 400
    still_pending("form", task.request_id)


def test_answering_an_unknown_id_is_404(staff):
    for workflow_id in ("nobody", " padded "):
        response = answer(staff, workflow_id, {"decision": "approve"}, safe="")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_answering_a_run_that_waits_for_no_person_is_404(staff):
    start(staff, "tests.api.approval", id="signal-only")
    waiting_for_signal("signal-only")
    for body in ({"decision": "approve"}, {"decision": "approve", "request_id": "human:1"}):
        response = answer(staff, "signal-only", body)
        assert response.status_code == 404
        assert response.json()["code"] == "no_human_task"
    assert get_executor().store.load("signal-only").signals == []


def test_answering_an_ended_run_is_409(staff):
    task = review(staff, "finished")
    assert answer(staff, "finished", {"decision": "approve"}).status_code == 202
    result_of("finished")
    response = answer(staff, "finished", {"decision": "approve", "request_id": task.request_id})
    assert response.status_code == 409
    assert response.json()["code"] == "not_running"

    review(staff, "canceled")
    assert staff.post(url("canceled", "cancel/")).status_code == 202
    assert ended("canceled").status.value == "canceled"
    assert answer(staff, "canceled", {"decision": "approve"}).status_code == 409


def test_no_human_task_maps_to_404_stale_to_400():
    assert api_exception_for(InvalidInputError("x", code="no_human_task")).status_code == 404
    assert api_exception_for(InvalidInputError("x", code="stale_human_task")).status_code == 400


# -- authentication and permissions -------------------------------------------------------------

@pytest.fixture
def pending(staff):
    return review(staff, "wf-1")


@pytest.mark.parametrize(("method", "path"), [
    ("get", TASKS), ("get", "/api/workflows/wf-1/human-task/"),
    ("post", "/api/workflows/wf-1/human-task/"),
])
def test_anonymous_gets_401(anonymous, pending, method, path):
    if method == "get":
        response = anonymous.get(path)
    else:
        response = anonymous.post(path, {"decision": "approve"}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    still_pending("wf-1", pending.request_id)


def test_any_authenticated_user_reads(plain, pending):
    assert plain.get(TASKS).json()["count"] == 1
    assert plain.get(url("wf-1", "human-task/")).status_code == 200


def test_non_staff_users_may_not_answer(plain, pending):
    response = answer(plain, "wf-1", {"decision": "approve"})
    assert response.status_code == 403
    assert "permission" in response.json()["detail"]
    still_pending("wf-1", pending.request_id)


# Changing the settings resets the executor (and its memory store): configure, then start.

def test_read_permissions_are_configurable(workflow_backend, plain, staff):
    workflow_backend.BELUGA_WORKFLOWS = {
        **workflow_backend.BELUGA_WORKFLOWS,
        "API_READ_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    }
    review(staff, "wf-1")
    assert plain.get(TASKS).status_code == 403
    assert plain.get(url("wf-1", "human-task/")).status_code == 403
    assert staff.get(TASKS).json()["count"] == 1
    assert staff.get(url("wf-1", "human-task/")).status_code == 200


def test_answering_needs_the_signal_permission_with_the_model_permission_class(
        workflow_backend, db, monkeypatch):
    workflow_backend.BELUGA_WORKFLOWS = {
        **workflow_backend.BELUGA_WORKFLOWS,
        "API_WRITE_PERMISSION_CLASSES": [
            "rest_framework.permissions.IsAuthenticated",
            "beluga_workflows.api.permissions.HasWorkflowModelPermission",
        ],
    }
    get_executor().execute(REVIEW, WorkflowOptions(id="wf-1"))
    pending = asking("wf-1")
    user, key = make_user("reviewer", is_staff=True)
    denied = answer(token_client(key), "wf-1", {"decision": "approve"})
    assert denied.status_code == 403
    assert denied.json()["detail"] == "You do not have the permission to signal workflows."
    still_pending("wf-1", pending.request_id)
    granted: list[str] = []
    monkeypatch.setattr(type(user), "has_perm",
                        lambda self, perm, obj=None: granted.append(perm) or True)
    assert answer(token_client(key), "wf-1", {"decision": "approve"}).status_code == 202
    assert granted == ["beluga_workflows.signal_workflow"]
    assert result_of("wf-1")[0]["decision"] == "approve"


# -- ids with "/" --------------------------------------------------------------------------------

def test_readings_of_human_task_urls():
    assert readings_of("a/human-task/", "GET") == [
        Reading("human_task", {"workflow_id": "a"}),
        Reading("detail", {"workflow_id": "a/human-task"}),
    ]
    assert readings_of("a/human-task/", "POST") == [Reading("human_task", {"workflow_id": "a"})]
    assert readings_of("a/human-task/signal/", "POST") == [
        Reading("signal", {"workflow_id": "a/human-task"})]
    assert readings_of("a/query/human-task/", "GET") == [
        Reading("query", {"workflow_id": "a", "query_type": "human-task"}),
        Reading("human_task", {"workflow_id": "a/query"}),
        Reading("detail", {"workflow_id": "a/query/human-task"}),
    ]
    assert readings_of("a/human-task/history/", "GET") == [
        Reading("history", {"workflow_id": "a/human-task"}),
        Reading("detail", {"workflow_id": "a/human-task/history"}),
    ]


def test_a_run_whose_id_ends_in_human_task_is_reachable(staff):
    """"x" does not exist, so GET x/human-task/ is the workflow "x/human-task"."""
    task = review(staff, "x/human-task")
    assert staff.get(url("x/human-task")).json()["id"] == "x/human-task"
    assert staff.get(url("x/human-task", "history/")).json()["workflow_id"] == "x/human-task"
    own = staff.get(url("x/human-task", "human-task/"))
    assert own.json()["request_id"] == task.request_id
    # POST x/human-task/ can only be an answer to "x", which does not exist.
    assert answer(staff, "x", {"decision": "approve"}).status_code == 404
    still_pending("x/human-task", task.request_id)
    assert answer(staff, "x/human-task", {"decision": "approve"}).status_code == 202
    assert result_of("x/human-task")[0]["decision"] == "approve"


def test_both_readings_exist_the_route_wins(staff):
    """With "a" and "a/human-task" both stored, GET a/human-task/ is the human task of "a"."""
    task = review(staff, "a")
    start(staff, "tests.api.echo", id="a/human-task")
    assert staff.get(url("a", "human-task/")).json()["request_id"] == task.request_id
    assert staff.get(url("a/human-task", "history/")).json()["workflow_id"] == "a/human-task"
    # ... even when "a" waits for no human task: the route still wins (404), as documented.
    assert answer(staff, "a", {"decision": "approve"}).status_code == 202
    result_of("a")
    response = staff.get(url("a", "human-task/"))
    assert response.status_code == 404 and response.json()["code"] == "no_human_task"


@pytest.mark.django_db  # users live in "default"; the store's database is added per backend
@pytest.mark.parametrize("safe", ["/", ""], ids=["slashes-literal", "slashes-encoded"])
@pytest.mark.parametrize("workflow_id", ["orders/2024/human-task", "日本語 / レビュー"])
def test_every_store_lists_shows_and_answers_human_tasks(store, staff, workflow_id, safe):
    task = review(staff, workflow_id, rounds=2, timeout=3600)
    listed = staff.get(TASKS).json()
    assert [t["workflow_id"] for t in listed["results"]] == [workflow_id]
    shown = staff.get(url(workflow_id, "human-task/", safe=safe))
    assert shown.status_code == 200
    assert shown.json() == listed["results"][0]
    assert shown.json()["request_id"] == task.request_id
    first = answer(staff, workflow_id, {"decision": "approve", "request_id": task.request_id},
                   safe=safe)
    assert first.status_code == 202
    assert first.json()["workflow_id"] == workflow_id
    second = asking(workflow_id, after=task.request_id)
    assert staff.get(url(workflow_id, "human-task/", safe=safe)).json()["request_id"] == (
        second.request_id)
    assert answer(staff, workflow_id, {"decision": "modify", "modified": [1],
                                       "request_id": second.request_id}, safe=safe
                  ).status_code == 202
    assert result_of(workflow_id) == [
        {"decision": "approve", "feedback": "", "modified": None},
        {"decision": "modify", "feedback": "", "modified": [1]},
    ]
    assert staff.get(TASKS).json()["count"] == 0
    assert answer(staff, workflow_id, {"decision": "approve"}, safe=safe).status_code == 409
