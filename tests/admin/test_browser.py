"""Browser tests: Debian's Chromium, driven by Playwright, against the live server.

Runs progress on the ``local`` executor's threads in this process, on a memory store, so the pages
show what the workers do. Screenshots of every page land in ``test-artifacts/admin/``. Every wait
is on a condition with a deadline (Playwright's auto-waiting, or ``wait_for`` on the store).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import playwright.sync_api as playwright_api  # noqa: E402 - a dev extra; bin/test installs it
import pytest

from beluga_workflows import WorkflowOptions, WorkflowStatus
from beluga_workflows.executor import get_executor
from beluga_workflows.stores.memory import MemoryStore

from .conftest import ended, make_user, waiting
from .support import url

expect = playwright_api.expect

CHROMIUM = os.environ.get("BELUGA_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin"
TIMEOUT_MS = 15_000

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # meanwhile are plain synchronous ones.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: bin/test installs Debian's chromium")
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking",
                  "--disable-component-update", "--disable-gpu"],
        )
        yield instance
        instance.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def executor(settings):
    """The ``local`` executor (threads in this process) on a fresh memory store."""
    settings.BELUGA_WORKFLOWS = {
        "STORE": {"BACKEND": "memory", "OPTIONS": {}},
        "EXECUTOR": {"BACKEND": "local", "OPTIONS": {
            "store": MemoryStore(), "max_workers": 4, "sweep_interval": 0.05}},
        "HOOKS": [],
    }
    return get_executor()


@pytest.fixture
def page_for(browser, live_server):
    """``page_for(user)``: a new browser page logged in as ``user`` through the login form."""
    contexts = []

    def login(user):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors
        page.goto("/admin/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", "pw")
        page.click("input[type=submit]")
        expect(page.locator("#user-tools")).to_contain_text(user.username)
        return page

    yield login
    for context in contexts:
        context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert page.js_errors == [], page.js_errors


@pytest.fixture
def operator(transactional_db):
    return make_user("operator", "view_workflowstate", "start_workflow", "signal_workflow",
                     "cancel_workflow")


@pytest.fixture
def viewer(transactional_db):
    return make_user("viewer", "view_workflowstate")


def test_start_wait_signal_complete(executor, operator, page_for):
    page = page_for(operator)
    expect(page.locator("#site-name")).to_have_text("Beluga workflows")  # templates/admin/
    expect(page).to_have_title("Site administration | Beluga workflows")
    shot(page, "01-admin-index")
    page.click(f"a[href='{url('changelist')}']")
    expect(page.locator("h1")).to_have_text("Workflow runs")
    page.click("text=Start workflow")
    page.select_option("#id_workflow_type", "admin_tests.wait_for_signal")
    page.fill("#id_id", "order-42")
    page.fill("#id_input", "{oops")
    page.click("input[name=_start]")
    expect(page.locator(".errorlist")).to_contain_text("Invalid JSON")
    shot(page, "02-start-form-error")
    page.fill("#id_input", '{"total": 42, "items": ["book", "pen"]}')
    page.click("input[name=_start]")
    expect(page.locator(".messagelist")).to_contain_text("Started workflow “order-42”")

    waiting(executor, "order-42")
    page.reload()
    expect(page.locator("#waits-for")).to_contain_text("signal “go”")
    expect(page.locator("#timeline")).to_contain_text("workflow_started")
    shot(page, "03-run-waiting-for-signal")

    page.fill("#id_query", "stage")
    page.click("input[value=Ask]")
    expect(page.locator("#query-answer")).to_contain_text("waiting for go")

    page.click("#signal-button")
    expect(page.locator("#id_name")).to_have_value("go")
    page.fill("#id_payload", '{"by": "ann"')
    page.click("input[name=_send]")
    expect(page.locator(".errorlist")).to_contain_text("Invalid JSON")
    shot(page, "04-signal-form-error")
    assert executor.store.load("order-42").signals == []
    page.fill("#id_payload", '{"by": "ann"}')
    page.click("input[name=_send]")
    expect(page.locator(".messagelist")).to_contain_text("Sent signal “go”")

    ended(executor, "order-42")
    page.reload()
    expect(page.locator("h1 .beluga-badge")).to_have_text("completed")
    expect(page.locator("#result")).to_contain_text('"by": "ann"')
    for event in ("workflow_started", "signal_received", "workflow_completed"):
        expect(page.locator(f"#timeline tr[data-event={event}]")).to_have_count(1)
    expect(page.locator("#signal-button")).to_have_count(0)
    shot(page, "05-run-completed")


def test_cancel_from_the_list_action(executor, operator, page_for):
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="cancel-me"))
    executor.execute("admin_tests.hello", WorkflowOptions(id="already-done"))
    executor.execute("admin_tests.fail", WorkflowOptions(id="broken", input={"x": 1}))
    waiting(executor, "cancel-me")
    ended(executor, "already-done")
    ended(executor, "broken")
    page = page_for(operator)
    page.goto(url("changelist"))
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    shot(page, "06-list")
    page.check("input.action-select[value=cancel-me]")
    page.check("input.action-select[value=already-done]")
    expect(page.locator(".action-counter")).to_have_text("2 of 3 selected")
    page.select_option("select[name=action]", "cancel_selected")
    page.click("button[name=index]")
    expect(page.locator("#to-cancel")).to_contain_text("cancel-me")
    expect(page.locator("#skipped")).to_contain_text("already-done")
    shot(page, "07-cancel-selected-confirmation")
    page.click("#confirm-cancel")
    expect(page.locator(".messagelist")).to_contain_text("Requested cancel of 1 run: cancel-me.")
    expect(page.locator(".messagelist")).to_contain_text("Skipped 1 run")
    assert ended(executor, "cancel-me").status is WorkflowStatus.CANCELED
    page.goto(url("changelist") + "?status=canceled")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("cancel-me")
    shot(page, "08-list-filtered-canceled")
    page.goto(url("change", "broken"))
    expect(page.locator("#error")).to_contain_text("ValueError")
    shot(page, "09-run-failed")


def test_answer_a_human_task(executor, operator, page_for):
    executor.execute("admin_tests.review", WorkflowOptions(
        id="refund-7", input={"title": "Refund order 7?", "order": {"order": 7, "amount": "19.90"}}))
    waiting(executor, "refund-7", kind="human")
    page = page_for(operator)
    page.goto(url("changelist"))
    page.click("text=Human tasks (1)")
    expect(page.locator(".beluga-task h2")).to_have_text("Refund order 7?")
    shot(page, "10-human-tasks")
    page.click("a.button.modify")
    page.fill("#id_feedback", "Refund half of it.")
    page.fill("#id_modified", "{not json")
    page.click("input[name=_answer]")
    expect(page.locator(".errorlist")).to_contain_text("Invalid JSON")
    shot(page, "11-human-answer-error")
    page.fill("#id_modified", '{"order": 7, "amount": "9.95"}')
    page.click("input[name=_answer]")
    expect(page.locator(".messagelist")).to_contain_text("Answered “refund-7”: modify")
    expect(page.locator("#no-tasks")).to_be_visible()
    state = ended(executor, "refund-7")
    assert state.result == {"answer": {"decision": "modify", "feedback": "Refund half of it.",
                                       "modified": {"order": 7, "amount": "9.95"}}}
    page.goto(url("change", "refund-7"))
    expect(page.locator("#result")).to_contain_text('"amount": "9.95"')
    shot(page, "12-human-task-answered-run")


def test_viewer_sees_no_buttons_and_gets_403(executor, viewer, page_for):
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="look-only"))
    executor.execute("admin_tests.review", WorkflowOptions(id="task-only"))
    waiting(executor, "look-only")
    waiting(executor, "task-only", kind="human")
    page = page_for(viewer)
    page.goto(url("changelist"))
    expect(page.locator("input.action-select")).to_have_count(0)
    expect(page.locator("text=Start workflow")).to_have_count(0)
    page.goto(url("change", "look-only"))
    expect(page.locator("#waits-for")).to_contain_text("signal “go”")
    expect(page.locator("ul.object-tools a")).to_have_count(0)
    shot(page, "13-viewer-run-page")
    page.goto(url("human_tasks"))
    expect(page.locator(".beluga-choices")).to_have_count(0)
    for path in (url("signal", "look-only"), url("cancel", "look-only"),
                 url("answer", "task-only"), url("add")):
        response = page.goto(path)
        assert response.status == 403, path
    shot(page, "14-viewer-403")
    assert executor.store.load("look-only").is_open and executor.store.load("task-only").is_open


def test_send_an_event_from_the_admin_and_follow_it_to_the_runs(executor, operator, page_for):
    from . import test_event_pages  # noqa: F401 - registers admin_tests.on_ticket

    page = page_for(operator)
    page.goto(url("changelist"))
    page.click("#events-link")
    expect(page.locator("#no-events")).to_be_visible()
    page.fill("#id_name", "admin_tests/ticket_opened")
    page.fill("#id_data", '{"ticket": "t-9"}')
    page.fill("#id_event_id", "open-t-9")
    page.click("#send-event-form input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("Sent event “admin_tests/ticket_opened”")
    reload_until(page, "#event-outcome [data-outcome=started] a")  # the workers fan it out
    shot(page, "20-event-page")
    page.click("#event-outcome [data-outcome=started] a")
    expect(page.locator("#started-by")).to_contain_text("open-t-9")
    expect(page.locator("#waits-for")).to_contain_text("event admin_tests/ticket_replied")
    shot(page, "21-run-started-by-event")
    page.goto(url("events"))
    page.fill("#id_name", "admin_tests/ticket_replied")
    page.fill("#id_data", '{"ticket": "t-9", "text": "done"}')
    page.click("#send-event-form input[type=submit]")
    reload_until(page, "#event-outcome [data-outcome=woken] a")
    shot(page, "22-event-woke-a-run")
    page.goto(url("events"))
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    shot(page, "23-events-list")


def reload_until(page, selector: str, timeout: float = 15.0) -> None:
    """Reload ``page`` until ``selector`` is on it (what the workers do shows on the next load)."""
    import time

    deadline = time.monotonic() + timeout
    while page.locator(selector).count() == 0:
        assert time.monotonic() < deadline, f"{selector} never appeared on {page.url}"
        page.wait_for_timeout(100)
        page.reload()
