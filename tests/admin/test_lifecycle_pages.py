"""The run page's Resume and Fork buttons, the resume confirmation and the fork form."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from beluga_workflows import InvalidInputError, WorkflowOptions, WorkflowStatus
from beluga_workflows.admin.lifecycle import fork_points
from beluga_workflows.engine.lifecycle import forked_history

from . import workflows
from .conftest import ended, make_user, waiting
from .support import url

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return response.content.decode()


def snapshot(executor) -> list[tuple]:
    """Every id's run as the store has it: a refused action must leave it so."""
    return sorted((s.workflow_id, s.run_id, s.status.value, len(s.history))
                  for s in (executor.store.load(r.workflow_id) for r in executor.store.list()))


def calls(key: str) -> list[int]:
    return [workflows.STEP_CALLS.get((key, n), 0) for n in (1, 2, 3)]


@pytest.fixture(autouse=True)
def fresh_calls(monkeypatch):
    """Count each test's step calls afresh (the tests run once per store, with the same ids)."""
    monkeypatch.setattr(workflows, "STEP_CALLS", {})


@pytest.fixture
def broken(monkeypatch):
    monkeypatch.setitem(workflows.STEP_TWO_FAILS, "on", True)
    return workflows.STEP_TWO_FAILS


@pytest.fixture
def failed_run(executor, broken):
    """``failed-1``: three steps, step 2 failed (the fix is deployed once the run has ended)."""
    executor.execute("admin_tests.three_steps", WorkflowOptions(id="failed-1", input="failed-1"))
    state = ended(executor, "failed-1")
    assert state.status is WorkflowStatus.FAILED and calls("failed-1") == [1, 1, 0]
    broken["on"] = False
    return state


@pytest.fixture
def done_run(executor):
    executor.execute("admin_tests.three_steps", WorkflowOptions(id="done-1", input="done-1"))
    assert ended(executor, "done-1").status is WorkflowStatus.COMPLETED
    return executor.store.load("done-1")


@pytest.fixture
def open_run(executor):
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="open-1"))
    return waiting(executor, "open-1")


# -- the buttons ---------------------------------------------------------------------------------

def test_an_ended_run_shows_resume_and_fork_to_who_may_start(operator_client, failed_run,
                                                             done_run, open_run):
    failed = text(operator_client.get(url("change", "failed-1")))
    assert f'href="{url("resume", "failed-1")}" id="resume-button"' in failed
    assert f'href="{url("fork", "failed-1")}" id="fork-button"' in failed
    done = text(operator_client.get(url("change", "done-1")))
    assert 'id="resume-button"' not in done and 'id="fork-button"' in done
    running = text(operator_client.get(url("change", "open-1")))
    assert 'id="resume-button"' not in running and 'id="fork-button"' not in running


def test_the_history_links_each_step_a_fork_can_start_at(operator_client, done_run):
    page = text(operator_client.get(url("change", "done-1")))
    starts = [p.first for p in fork_points(done_run.history)]
    assert len(starts) == 3
    for event_id in starts:
        assert f'href="{url("fork", "done-1")}?from_event={event_id}" class="fork-from"' in page
    assert page.count('class="fork-from"') == 3


def test_without_start_permission_no_buttons_and_403(client, executor, failed_run, db):
    viewer = make_user("viewer-only", "view_workflowstate", "signal_workflow", "cancel_workflow")
    client.force_login(viewer)
    page = text(client.get(url("change", "failed-1")))
    assert "resume-button" not in page and "fork-button" not in page and "fork-from" not in page
    before = snapshot(executor)
    for name in ("resume", "fork"):
        assert client.get(url(name, "failed-1")).status_code == 403
        assert client.post(url(name, "failed-1"), {"post": "yes"}).status_code == 403
    assert snapshot(executor) == before


# -- resume --------------------------------------------------------------------------------------

def test_resume_confirms_then_resumes_and_says_so(executor, operator_client, failed_run):
    confirm = operator_client.get(url("resume", "failed-1"))
    assert confirm.status_code == 200
    assert "Yes, resume it" in text(confirm) and failed_run.run_id in text(confirm)
    assert executor.store.load("failed-1").run_id == failed_run.run_id  # a GET changes nothing
    response = operator_client.post(url("resume", "failed-1"), follow=True)
    assert response.redirect_chain[0][0] == url("change", "failed-1")
    state = ended(executor, "failed-1")
    assert state.status is WorkflowStatus.COMPLETED and state.run_id != failed_run.run_id
    assert calls("failed-1") == [1, 2, 1]
    assert "Resumed workflow “failed-1”" in text(response)
    assert LogEntry.objects.filter(object_id="failed-1", change_message__startswith="Resumed run "
                                   f"{failed_run.run_id}").exists()


@pytest.mark.parametrize("workflow_id,message", [
    ("done-1", "is completed"),
    ("open-1", "is running"),
])
def test_a_refused_resume_is_an_error_message_and_changes_nothing(executor, operator_client,
                                                                  done_run, open_run,
                                                                  workflow_id, message):
    confirm = text(operator_client.get(url("resume", workflow_id)))
    assert 'id="problem"' in confirm and "Yes, resume it" not in confirm
    before = snapshot(executor)
    response = operator_client.post(url("resume", workflow_id), follow=True)
    assert response.redirect_chain[0][0] == url("change", workflow_id)
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and shown[0].startswith(f"Could not resume “{workflow_id}”")
    assert message in shown[0]
    assert snapshot(executor) == before


def test_resume_of_a_missing_run_goes_back_to_the_list(operator_client, executor):
    response = operator_client.post(url("resume", "nobody"), follow=True)
    assert response.redirect_chain[0][0] == url("changelist")
    assert "doesn’t exist" in text(response)


# -- fork ----------------------------------------------------------------------------------------

def test_the_fork_form_lists_one_row_per_step_and_from_the_start(operator_client, done_run):
    page = operator_client.get(url("fork", "done-1"))
    assert page.status_code == 200
    body = text(page)
    assert 'id="from-start"' in body and 'value="" id="from-start" checked' in body
    for point in fork_points(done_run.history):
        assert f'data-op="{point.op}" data-event="{point.first}"' in body
        assert f'name="from_event" value="{point.first}"' in body
    assert 'id="timeline-chart"' in body
    preselected = text(operator_client.get(url("fork", "done-1") + "?from_event=2"))
    assert 'value="2" id="from-2" checked' in preselected


def test_fork_from_a_step_starts_the_new_run_and_opens_its_page(executor, operator_client,
                                                               done_run):
    third = fork_points(done_run.history)[2].first
    response = operator_client.post(url("fork", "done-1"),
                                    {"from_event": str(third), "new_id": "done-1/again"},
                                    follow=True)
    assert response.redirect_chain[0][0] == url("change", "done-1/again")
    assert f"Forked “done-1” from event {third} as “done-1/again”" in text(response)
    state = ended(executor, "done-1/again")
    assert state.result == ["step1", "step2", "step3"] and calls("done-1") == [1, 1, 2]
    assert executor.store.load("done-1").run_id == done_run.run_id
    assert LogEntry.objects.filter(object_id="done-1/again").exists()


def test_fork_from_the_start_with_a_generated_id(executor, operator_client, failed_run):
    response = operator_client.post(url("fork", "failed-1"), {"from_event": "", "new_id": ""})
    assert response.status_code == 302
    new_id = next(s.workflow_id for s in executor.store.list()
                  if s.workflow_id.startswith("failed-1-fork-"))
    assert response["Location"] == url("change", new_id)
    assert ended(executor, new_id).status is WorkflowStatus.COMPLETED
    assert calls("failed-1") == [2, 2, 1]


def test_a_step_inside_a_parallel_step_cannot_be_picked(executor, operator_client):
    executor.execute("admin_tests.side_by_side", WorkflowOptions(id="par-1", input="par-1"))
    ended(executor, "par-1")
    state = executor.store.load("par-1")
    points = fork_points(state.history)
    inside = [p for p in points if p.inside]
    assert [p.op for p in inside] == [2] and inside[0].inside == 1
    # The page offers what the engine accepts, no more and no less.
    for point in points:
        try:
            forked_history(state, point.first)
        except InvalidInputError:
            assert point.inside, point
        else:
            assert not point.inside, point
    body = text(operator_client.get(url("fork", "par-1")))
    assert f'name="from_event" value="{inside[0].first}"' not in body
    assert "runs alongside step 1" in body
    before = snapshot(executor)
    response = operator_client.post(url("fork", "par-1"), {"from_event": str(inside[0].first)})
    assert response.status_code == 200
    assert "is inside step 1" in text(response) and 'id="from-event-errors"' in text(response)
    assert snapshot(executor) == before


@pytest.mark.parametrize("data,where,message", [
    ({"from_event": "1"}, "from-event-errors", "greater than or equal to 2"),
    ({"from_event": "x"}, "from-event-errors", "Enter a whole number"),
    ({"from_event": "999"}, "from-event-errors", "from 2 to"),
    ({"new_id": ".."}, "field-new_id", "workflow id must not be"),
    ({"new_id": "open-1"}, "field-new_id", "open run"),
])
def test_a_refused_fork_re_renders_the_form_with_the_error(executor, operator_client, done_run,
                                                           open_run, data, where, message):
    before = snapshot(executor)
    response = operator_client.post(url("fork", "done-1"), data)
    assert response.status_code == 200
    body = text(response)
    assert "Please correct the error below." in body and message in body
    assert body.index(where) < body.index(message)
    assert snapshot(executor) == before


def test_an_open_run_cannot_be_forked(executor, operator_client, open_run):
    page = text(operator_client.get(url("fork", "open-1")))
    assert "still running" in page and 'name="_fork" disabled' in page
    before = snapshot(executor)
    response = operator_client.post(url("fork", "open-1"), {"from_event": ""})
    assert response.status_code == 200 and 'id="form-errors"' in text(response)
    assert "still running" in text(response)
    assert snapshot(executor) == before
