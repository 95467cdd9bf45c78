"""The admin's "Flow control" page: each workflow type's declared limits in words and the
concurrency slots in use per key, linked to the runs waiting; the run list filtered to those runs
and how a waiting run reads there; a store without flow control; skipped events on the Events
pages. Client tests on the memory and django stores (SQLite, PostgreSQL); one browser test."""

from __future__ import annotations

import pytest

from beluga_workflows import Event, WorkflowOptions
from beluga_workflows.admin.flow import describe_limits, period_text
from beluga_workflows.engine.registry import get_workflow

from .conftest import make_user, waiting
from .flow_workflows import FULFIL, PING
from .support import url
from .test_browser import browser, page_for  # noqa: F401 - fixtures of the browser test

pytestmark = pytest.mark.django_db

FLOW_STORES = pytest.mark.parametrize(
    "store", ["memory", "django-sqlite", pytest.param("django-postgres", marks=pytest.mark.postgres)],
    indirect=True)


def text(response) -> str:
    return response.content.decode()


def fill_slots(executor) -> None:
    """Customer c-17: two runs hold both slots and a third waits; c-18: one run, one slot."""
    for n in range(3):
        executor.execute(FULFIL, WorkflowOptions(id=f"c17-{n}", input={"customer": "c-17"}))
    executor.execute(FULFIL, WorkflowOptions(id="c18-0", input={"customer": "c-18"}))
    for workflow_id in ("c17-0", "c17-1", "c18-0"):
        waiting(executor, workflow_id)
    waiting(executor, "c17-2", kind="concurrency")


def test_periods_and_declarations_read_as_they_were_written():
    assert [period_text(s) for s in (1, 3600, 86400, 90, 0.5, 1.25, 604800)] == [
        "1s", "1h", "1d", "90s", "500ms", "1.25s", "1w"]
    assert describe_limits(get_workflow(FULFIL).flow) == ["concurrency 2 per input.customer",
                                                         "priority input.priority"]
    assert describe_limits(get_workflow("admin_tests.flow.digest").flow) == [
        "debounce 1s per event.data.doc (timeout 3s)"]


@FLOW_STORES
def test_the_page_lists_the_declared_limits_and_the_slots_in_use_per_key(executor,
                                                                        operator_client):
    fill_slots(executor)
    listing = operator_client.get(url("changelist"))
    assert f'href="{url("flow_control")}"' in text(listing)  # next to Events and Human tasks

    response = operator_client.get(url("flow_control"))
    assert response.status_code == 200
    page = text(response)
    for words in ("concurrency 2 per input.customer", "priority input.priority",
                  "throttle 5 per 1s", "rate limit 1 per 1h per event.data.user",
                  "debounce 1s per event.data.doc (timeout 3s)",
                  "batch 10 / 1s per event.data.table"):
        assert f"<li>{words}</li>" in page, words
    types = {t["workflow_type"]: t for t in response.context["types"]}
    assert "admin_tests.hello" not in types  # no flow control declared
    fulfil = types[FULFIL]
    assert [(s["key"], s["in_use"], s["limit"], s["waiting"], s["full"]) for s in fulfil["slots"]
            ] == [("c-17", 2, 2, 1, True), ("c-18", 1, 2, 0, False)]
    assert (fulfil["in_use"], fulfil["waiting"]) == (3, 1)
    waiting_url = f"{url('changelist')}?type={FULFIL}&wait=concurrency"
    assert fulfil["waiting_url"] == waiting_url
    assert f'<a href="{waiting_url.replace("&", "&amp;")}" title=' in page  # the key's waiters
    assert '<span class="in-use">2 / 2</span>' in page and '<span class="in-use">1 / 2</span>' in page

    # The link leads to the runs waiting for a slot, and they say what they wait for.
    runs = operator_client.get(waiting_url)
    assert [row["state"].workflow_id for row in runs.context["rows"]] == ["c17-2"]
    listed = text(runs)
    assert 'id="wait-filter"' in listed and "waiting for a concurrency slot" in listed
    assert "a concurrency slot" in listed and "key &quot;c-17&quot; (2 of 2 in use)" in listed
    run_page = text(operator_client.get(url("change", "c17-2")))
    assert 'id="waits-for"' in run_page and "a concurrency slot" in run_page

    # A run ends: its slot goes to the waiting run.
    from beluga_workflows import Signal

    executor.signal("c17-0", Signal("go"))
    waiting(executor, "c17-2")
    fulfil = {t["workflow_type"]: t for t in operator_client.get(
        url("flow_control")).context["types"]}[FULFIL]
    assert [(s["key"], s["in_use"], s["waiting"]) for s in fulfil["slots"]] == [
        ("c-17", 2, 0), ("c-18", 1, 0)]
    assert operator_client.get(waiting_url).context["rows"] == []


def test_a_store_without_flow_control_says_so_and_still_lists_the_declarations(settings,
                                                                              operator_client):
    from beluga_workflows.stores.memory import MemoryStore

    class NoFlow(MemoryStore):
        """A store that says it enforces no flow control (as the document stores do)."""

        supports_flow_control = False

    settings.BELUGA_WORKFLOWS = {"STORE": {"BACKEND": "memory", "OPTIONS": {}},
                                 "EXECUTOR": {"BACKEND": "local", "OPTIONS": {"store": NoFlow()}},
                                 "HOOKS": []}
    response = operator_client.get(url("flow_control"))
    assert response.status_code == 200
    page = text(response)
    assert 'id="flow-unsupported"' in page and "does not enforce flow control" in page
    assert "NoFlow" in page and "<li>concurrency 2 per input.customer</li>" in page
    assert '<table class="beluga-slots">' not in page


@pytest.mark.parametrize("store", ["memory"], indirect=True)
def test_the_start_form_offers_no_type_that_only_events_start(executor, operator_client):
    choices = [value for value, _ in operator_client.get(url("add")).context["form"]
               .fields["workflow_type"].choices]
    assert FULFIL in choices and "admin_tests.flow.sync" in choices
    assert "admin_tests.flow.digest" not in choices and "admin_tests.flow.rows" not in choices


@pytest.mark.parametrize("store", ["memory"], indirect=True)
def test_viewers_see_the_page_and_others_get_403(executor, client, viewer):
    client.force_login(viewer)
    assert client.get(url("flow_control")).status_code == 200
    client.force_login(make_user("nobody"))
    assert client.get(url("flow_control")).status_code == 403


@pytest.mark.parametrize("store", ["memory", "django-sqlite"], indirect=True)
def test_an_event_skipped_by_a_rate_limit_shows_why_on_its_page_and_in_the_list(executor,
                                                                              operator_client):
    executor.send_event(Event("admin_tests/ping", {"user": "ann"}, id="ping-1"))
    skipped = executor.send_event(Event("admin_tests/ping", {"user": "ann"}, id="ping-2"))
    assert skipped.started == () and skipped.skipped[0]["workflow_type"] == PING

    listing = operator_client.get(url("events"), {"q": "admin_tests/ping"})
    rows = {row["event"].id: row for row in listing.context["rows"]}
    assert [s["workflow_type"] for s in rows["ping-2"]["skipped"]] == [PING]
    assert rows["ping-1"]["skipped"] == []
    assert '<span class="beluga-skipped" title="admin_tests.flow.ping: rate limit' in text(listing)

    page = operator_client.get(url("events"), {"event": "ping-2"})
    html = text(page)
    assert 'data-outcome="skipped"' in html and "Skipped (1)" in html
    assert (f'<a href="{url("changelist")}?type={PING}">{PING}</a></code>: '
            f'<span class="reason">rate limit &quot;{PING}&quot; key &quot;ann&quot; (1 per 1h) '
            f"reached; the next start conforms at") in html


@pytest.mark.parametrize("store", ["memory"], indirect=True)
def test_an_event_held_by_a_debounce_shows_its_group_and_the_form_says_so(executor,
                                                                         operator_client):
    response = operator_client.post(url("events"), {"name": "admin_tests/edit",
                                                    "data": '{"doc": "d-1"}', "event_id": "edit-1"},
                                    follow=True)
    html = text(response)
    assert "Workflow admin_tests.flow.digest: held in a debounce group; its run starts later." in html
    assert 'data-outcome="held"' in html and "in a debounce group" in html
    operator_client.post(url("events"), {"name": "admin_tests/ping", "data": '{"user": "bo"}'})
    second = operator_client.post(url("events"), {"name": "admin_tests/ping",
                                                  "data": '{"user": "bo"}'}, follow=True)
    assert f"Skipped by {PING}: rate limit" in text(second)


# -- in a real browser ---------------------------------------------------------------------------

@pytest.fixture
def live_executor(settings):
    """The ``local`` executor (threads in this process) on a fresh memory store."""
    from beluga_workflows.executor import get_executor
    from beluga_workflows.stores.memory import MemoryStore

    settings.BELUGA_WORKFLOWS = {
        "STORE": {"BACKEND": "memory", "OPTIONS": {}},
        "EXECUTOR": {"BACKEND": "local", "OPTIONS": {
            "store": MemoryStore(), "max_workers": 4, "sweep_interval": 0.05}},
        "HOOKS": [],
    }
    return get_executor()


@pytest.mark.django_db(transaction=True)
def test_browse_from_the_slots_to_the_waiting_run_and_to_a_skipped_event(
        live_executor, page_for):  # noqa: F811 - test_browser's fixture, imported above
    from .test_browser import expect, shot

    fill_slots(live_executor)
    live_executor.send_event(Event("admin_tests/ping", {"user": "ann"}, id="ping-ann-1"))
    live_executor.send_event(Event("admin_tests/ping", {"user": "ann"}, id="ping-ann-2"))
    page = page_for(make_user("operator", "view_workflowstate", "start_workflow"))
    page.goto(url("changelist"))
    page.click("#flow-control-link")
    expect(page.locator("h1")).to_have_text("Flow control")
    fulfil = page.locator(f".beluga-flow[data-workflow-type='{FULFIL}']")
    expect(fulfil.locator(".beluga-limits")).to_contain_text("concurrency 2 per input.customer")
    expect(fulfil.locator("tr[data-key='c-17'] .in-use")).to_have_text("2 / 2")
    expect(fulfil.locator("tr[data-key='c-18'] .in-use")).to_have_text("1 / 2")
    shot(page, "30-flow-control")
    fulfil.locator("tr[data-key='c-17'] a").click()
    expect(page.locator("#wait-filter")).to_contain_text("waiting for a concurrency slot")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list .beluga-wait")).to_contain_text("a concurrency slot")
    shot(page, "31-runs-waiting-for-a-slot")
    page.click("#result_list a[href*='c17-2']")
    expect(page.locator("#waits-for")).to_contain_text('key "c-17" (2 of 2 in use)')
    shot(page, "32-run-waiting-for-a-slot")
    page.goto(url("events"))
    expect(page.locator("tr[data-event-id='ping-ann-2'] .beluga-skipped")).to_have_text("1")
    shot(page, "33-events-with-a-skip")
    page.click("tr[data-event-id='ping-ann-2'] th a")
    expect(page.locator("#event-outcome [data-outcome=skipped]")).to_contain_text(
        "rate limit")
    shot(page, "34-event-skipped-by-a-rate-limit")
