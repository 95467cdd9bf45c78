"""The admin's Events pages: send an event from the form, list and search events, one event's
outcome with links to the runs it started and woke, and the run page's "Started by" and wait."""

from __future__ import annotations

import pytest

from beluga_workflows import WorkflowOptions, workflow

from .conftest import ended, wait_for, waiting
from .support import url

pytestmark = pytest.mark.django_db



@workflow(name="admin_tests.on_ticket", on_event="admin_tests/ticket_opened")
def on_ticket(ctx, event: dict) -> dict:
    """Started by each ``admin_tests/ticket_opened`` event; waits for the ticket's reply."""
    reply = ctx.wait_for_event("admin_tests/ticket_replied", match="data.ticket", timeout="1h")
    return {"ticket": event["data"]["ticket"], "reply": None if reply is None else reply.data}


@pytest.fixture
def events_url():
    return url("events")


@pytest.fixture
def memory_executor(settings):
    from beluga_workflows.executor import get_executor

    settings.BELUGA_WORKFLOWS = {"STORE": {"BACKEND": "memory", "OPTIONS": {}},
                                 "EXECUTOR": {"BACKEND": "local", "OPTIONS": {"sweep_interval": 0.1}},
                                 "HOOKS": []}
    return get_executor()


def text(response) -> str:
    return response.content.decode()


def test_send_list_and_show_an_event_and_the_runs_it_started_and_woke(memory_executor,
                                                                      operator_client, events_url):
    store = memory_executor.store
    response = operator_client.post(events_url, {"name": "admin_tests/ticket_opened",
                                                 "data": '{"ticket": "t-1"}', "event_id": "open-t-1"})
    assert response.status_code == 302 and response["Location"].endswith("?event=open-t-1")
    run_id = wait_for(lambda: next((s.workflow_id for s in store.list()), None), "the run to start")
    waiting(memory_executor, run_id, kind="event")

    run_page = text(operator_client.get(url("change", run_id)))
    assert 'id="started-by"' in run_page and "open-t-1" in run_page
    assert "event admin_tests/ticket_replied" in run_page  # what it waits for

    operator_client.post(events_url, {"name": "admin_tests/ticket_replied",
                                      "data": '{"ticket": "t-1", "text": "fixed"}',
                                      "event_id": "reply-t-1"})
    assert ended(memory_executor, run_id).result == {
        "ticket": "t-1", "reply": {"ticket": "t-1", "text": "fixed"}}

    listing = operator_client.get(events_url)
    assert [row["event"].id for row in listing.context["rows"]] == ["reply-t-1", "open-t-1"]
    assert "Send an event" in text(listing)
    searched = operator_client.get(events_url, {"q": "admin_tests/ticket_opened"})
    assert [row["event"].id for row in searched.context["rows"]] == ["open-t-1"]
    assert operator_client.get(events_url, {"q": "reply-t-1"})["Location"].endswith(
        "?event=reply-t-1")  # an id opens that event

    def woken():
        return store.get_event("reply-t-1").fanned_out_at is not None

    wait_for(woken, "the reply's fan-out to be recorded")
    page = operator_client.get(events_url, {"event": "reply-t-1"})
    assert page.status_code == 200
    assert f'href="{url("change", run_id)}"' in text(page)
    assert page.context["row"]["woken"] == [{"id": run_id, "url": url("change", run_id)}]
    opened = operator_client.get(events_url, {"event": "open-t-1"})
    assert opened.context["row"]["started"][0]["id"] == run_id


def test_a_bad_event_is_refused_on_the_form_and_sends_nothing(memory_executor, operator_client,
                                                             events_url):
    response = operator_client.post(events_url, {"name": "admin_tests/x", "data": "[1, 2]"})
    assert response.status_code == 200
    assert "Event data must be a JSON object." in text(response)
    assert memory_executor.store.count_events() == 0
    assert operator_client.get(events_url, {"event": "nope"}).status_code == 404


def test_viewers_see_events_but_get_no_form_and_cannot_send(memory_executor, client, viewer,
                                                           events_url):
    client.force_login(viewer)
    response = client.get(events_url)
    assert response.status_code == 200 and "Send an event" not in text(response)
    assert client.post(events_url, {"name": "admin_tests/x"}).status_code == 403
    memory_executor.execute("admin_tests.hello", WorkflowOptions(id="not-an-event"))
    assert memory_executor.store.count_events() == 0


def test_a_store_without_events_says_so_instead_of_failing(settings, operator_client, events_url):
    from beluga_workflows.stores.memory import MemoryStore

    class NoEvents(MemoryStore):
        """A store that says it keeps no events (as the document stores do)."""

        supports_events = False

    settings.BELUGA_WORKFLOWS = {"STORE": {"BACKEND": "memory", "OPTIONS": {}},
                                 "EXECUTOR": {"BACKEND": "local",
                                              "OPTIONS": {"store": NoEvents()}}, "HOOKS": []}
    response = operator_client.get(events_url)
    assert response.status_code == 200
    assert "keeps no events" in text(response) and 'id="send-event-form"' not in text(response)
