"""The admin's forms and actions: start, signal, cancel, cancel selected — and who may use them."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from beluga_workflows import WorkflowOptions, WorkflowStatus

from .conftest import ended, waiting
from .support import seed, url

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return response.content.decode()


def snapshot(executor, workflow_id: str):
    """What must not change when a form is refused: status, history length, inbox."""
    state = executor.store.load(workflow_id)
    if state is None:
        return None
    return (state.status, state.run_id, len(state.history), [s.name for s in state.signals],
            state.cancel_requested)


@pytest.fixture
def open_run(executor):
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="open-1", input={"n": 1}))
    return waiting(executor, "open-1")


@pytest.fixture
def ended_run(executor):
    executor.execute("admin_tests.hello", WorkflowOptions(id="ended-1"))
    return ended(executor, "ended-1")


# -- signal ---------------------------------------------------------------------------------------

def test_signal_form_prefills_the_awaited_name_and_sends(executor, operator_client, open_run):
    form = operator_client.get(url("signal", "open-1"))
    assert form.status_code == 200 and form.context["form"].initial["name"] == "go"
    response = operator_client.post(url("signal", "open-1"),
                                    {"name": "go", "payload": '{"by": "ann"}'}, follow=True)
    assert response.redirect_chain[0][0] == url("change", "open-1")
    assert "Sent signal “go”" in text(response)
    state = ended(executor, "open-1")
    assert state.status is WorkflowStatus.COMPLETED
    assert state.result == {"input": {"n": 1}, "go": {"by": "ann"}}
    assert LogEntry.objects.filter(object_id="open-1", change_message="Sent signal “go”.").exists()


@pytest.mark.parametrize("data,message", [
    ({"name": "go", "payload": "{not json"}, "Invalid JSON"),
    ({"name": "go", "payload": "[1, 2"}, "Invalid JSON"),
    ({"name": "", "payload": "1"}, "This field is required"),
    ({"name": "   ", "payload": "1"}, "This field is required"),
    ({"name": "x" * 256, "payload": ""}, "at most 255 characters"),
])
def test_invalid_signal_shows_the_error_and_changes_nothing(executor, operator_client, open_run,
                                                            data, message):
    before = snapshot(executor, "open-1")
    response = operator_client.post(url("signal", "open-1"), data)
    assert response.status_code == 200
    assert message in text(response)
    assert "Please correct the error below." in text(response)
    assert snapshot(executor, "open-1") == before


def test_oversized_payload_is_refused_with_the_engines_error(executor, operator_client, open_run):
    executor.max_payload_bytes = 64
    before = snapshot(executor, "open-1")
    response = operator_client.post(url("signal", "open-1"), {"name": "go", "payload": '"' + "x" * 100 + '"'})
    assert "signal payload is too large" in text(response)
    assert snapshot(executor, "open-1") == before


def test_signal_to_an_ended_run_shows_the_error(executor, operator_client, ended_run):
    before = snapshot(executor, "ended-1")
    page = operator_client.get(url("signal", "ended-1"))
    assert "This run has ended (completed)" in text(page)
    response = operator_client.post(url("signal", "ended-1"), {"name": "go", "payload": "1"})
    assert response.status_code == 200
    assert "has ended" in response.context["form"].non_field_errors()[0]
    assert snapshot(executor, "ended-1") == before


def test_signal_to_an_unknown_workflow_shows_the_error(executor, operator_client):
    page = operator_client.get(url("signal", "ghost"))
    assert "There is no workflow with id “ghost”" in text(page)
    response = operator_client.post(url("signal", "ghost"), {"name": "go", "payload": "1"})
    assert response.status_code == 200
    assert "no workflow with id 'ghost'" in response.context["form"].non_field_errors()[0]
    assert executor.store.load("ghost") is None


# -- cancel ---------------------------------------------------------------------------------------

def test_cancel_asks_for_confirmation_then_cancels(executor, operator_client, open_run):
    page = operator_client.get(url("cancel", "open-1"))
    assert page.status_code == 200 and "Are you sure you want to cancel" in text(page)
    assert snapshot(executor, "open-1")[4] is False  # a GET changes nothing
    response = operator_client.post(url("cancel", "open-1"), {"post": "yes"}, follow=True)
    assert response.redirect_chain[0][0] == url("change", "open-1")
    assert "Requested cancel of “open-1”" in text(response)
    assert ended(executor, "open-1").status is WorkflowStatus.CANCELED


def test_cancel_of_an_ended_run_shows_the_error(executor, operator_client, ended_run):
    before = snapshot(executor, "ended-1")
    response = operator_client.post(url("cancel", "ended-1"), {"post": "yes"})
    assert response.status_code == 200
    assert "has ended" in response.context["error"]
    assert snapshot(executor, "ended-1") == before
    missing = operator_client.post(url("cancel", "ghost"), {"post": "yes"})
    assert "no workflow with id 'ghost'" in missing.context["error"]


# -- the list action --------------------------------------------------------------------------------

def test_cancel_selected_confirms_cancels_open_runs_and_skips_ended(executor, operator_client):
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="a"))
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="b"))
    executor.execute("admin_tests.hello", WorkflowOptions(id="c"))
    for wf_id in ("a", "b"):
        waiting(executor, wf_id)
    ended(executor, "c")
    data = {"action": "cancel_selected", "_selected_action": ["a", "b", "c"]}
    confirm = operator_client.post(url("changelist"), data)
    assert confirm.status_code == 200
    assert [s.workflow_id for s in confirm.context["to_cancel"]] == ["a", "b"]
    assert confirm.context["skipped"] == ["c"]
    assert not executor.store.load("a").cancel_requested  # nothing yet

    response = operator_client.post(url("changelist"), {**data, "post": "yes"}, follow=True)
    page = text(response)
    assert "Requested cancel of 2 runs: a, b." in page
    assert "Skipped 1 run that had already ended or no longer exist: c." in page
    assert ended(executor, "a").status is WorkflowStatus.CANCELED
    assert ended(executor, "b").status is WorkflowStatus.CANCELED
    assert executor.store.load("c").status is WorkflowStatus.COMPLETED


def test_cancel_selected_with_nothing_selected_says_so(executor, operator_client):
    response = operator_client.post(url("changelist"), {"action": "cancel_selected"}, follow=True)
    assert "Items must be selected" in text(response)
    response = operator_client.post(url("changelist"), {"action": "", "_selected_action": ["x"]},
                                    follow=True)
    assert "No action selected." in text(response)


# -- start ----------------------------------------------------------------------------------------

def test_start_form_lists_registered_types_and_starts(executor, operator_client):
    form = operator_client.get(url("add") + "?type=admin_tests.hello")
    choices = [value for value, _ in form.context["form"].fields["workflow_type"].choices]
    assert "admin_tests.wait_for_signal" in choices and "admin_tests.review" in choices
    assert form.context["form"].initial["workflow_type"] == "admin_tests.hello"
    response = operator_client.post(url("add"), {
        "workflow_type": "admin_tests.wait_for_signal", "id": "started-1",
        "input": '{"total": 42}', "timeout": "3600"})
    assert response.status_code == 302 and response.url == url("change", "started-1")
    state = waiting(executor, "started-1")
    assert state.input == {"total": 42} and state.deadline is not None
    generated = operator_client.post(url("add"), {"workflow_type": "admin_tests.hello"})
    assert generated.status_code == 302 and "/wf-" in generated.url


@pytest.mark.parametrize("data,field,message", [
    ({"workflow_type": "admin_tests.hello", "input": "{oops"}, "input", "Invalid JSON"),
    ({"workflow_type": "nope.nothing"}, "workflow_type", "Select a valid choice"),
    ({"workflow_type": ""}, "workflow_type", "This field is required"),
    ({"workflow_type": "admin_tests.hello", "id": "tab\tbed"}, "id", "control characters"),
    ({"workflow_type": "admin_tests.hello", "id": "."}, "id", "must not be"),
    ({"workflow_type": "admin_tests.hello", "id": "x" * 256}, "id", "at most 255"),
    ({"workflow_type": "admin_tests.hello", "timeout": "-1"}, "timeout", "greater than or equal"),
    ({"workflow_type": "admin_tests.hello", "timeout": "soon"}, "timeout", "Enter a number"),
])
def test_invalid_start_shows_the_error_and_starts_nothing(executor, operator_client, data, field,
                                                          message):
    response = operator_client.post(url("add"), data)
    assert response.status_code == 200
    assert any(message in error for error in response.context["form"].errors[field]), \
        response.context["form"].errors
    assert executor.store.count() == 0


def test_start_with_an_id_still_open_is_refused(executor, operator_client, open_run):
    before = snapshot(executor, "open-1")
    response = operator_client.post(url("add"), {"workflow_type": "admin_tests.hello", "id": "open-1"})
    assert response.status_code == 200
    assert "already has an open run" in response.context["form"].errors["id"][0]
    assert snapshot(executor, "open-1") == before


# -- permissions ----------------------------------------------------------------------------------

def test_viewer_sees_no_buttons_and_gets_403_on_every_form(executor, client, viewer, open_run):
    client.force_login(viewer)
    listing = text(client.get(url("changelist")))
    assert "open-1" in listing
    assert "_selected_action" not in listing and "cancel_selected" not in listing
    assert url("add") not in listing
    page = text(client.get(url("change", "open-1")))
    assert url("signal", "open-1") not in page and url("cancel", "open-1") not in page
    before = snapshot(executor, "open-1")
    for name in ("signal", "cancel", "answer"):
        assert client.get(url(name, "open-1")).status_code == 403
        assert client.post(url(name, "open-1"), {"name": "go", "post": "yes"}).status_code == 403
    assert client.get(url("add")).status_code == 403
    assert client.post(url("add"), {"workflow_type": "admin_tests.hello"}).status_code == 403
    assert client.post(url("changelist"), {"action": "cancel_selected", "post": "yes",
                                           "_selected_action": ["open-1"]}).status_code == 403
    assert snapshot(executor, "open-1") == before
    assert executor.store.count() == 1


@pytest.mark.parametrize("codename,allowed", [
    ("signal_workflow", {"signal", "answer"}),
    ("cancel_workflow", {"cancel"}),
    ("start_workflow", {"add"}),
])
def test_each_permission_opens_its_own_forms(executor, client, open_run, codename, allowed):
    from .conftest import make_user

    client.force_login(make_user("one", "view_workflowstate", codename))
    for name in ("signal", "cancel", "answer", "add"):
        response = client.get(url(name) if name == "add" else url(name, "open-1"))
        assert (response.status_code == 200) == (name in allowed), (name, response.status_code)
    page = text(client.get(url("change", "open-1")))
    assert (url("signal", "open-1") in page) == ("signal" in allowed)
    assert (url("cancel", "open-1") in page) == ("cancel" in allowed)


def test_superuser_may_do_everything(executor, admin_client, open_run):
    page = text(admin_client.get(url("change", "open-1")))
    assert url("signal", "open-1") in page and url("cancel", "open-1") in page
    assert admin_client.post(url("signal", "open-1"), {"name": "go"}).status_code == 302
    assert ended(executor, "open-1").result == {"input": {"n": 1}, "go": None}


def test_seeded_ended_runs_offer_no_actions(executor, operator_client):
    seed(executor.store, 1, prefix="old", status=WorkflowStatus.CANCELED)
    page = text(operator_client.get(url("change", "old-00000")))
    assert url("signal", "old-00000") not in page and url("cancel", "old-00000") not in page
    assert executor.store.load("old-00000").status is WorkflowStatus.CANCELED
