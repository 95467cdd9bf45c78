"""The admin's Schedules pages: list, add, edit, delete, pause, resume, trigger now, and who may.

Run on the memory store (the table in the ``default`` database) and the django store on
PostgreSQL (the table in the store's own database, ``postgres``), with the inline executor of
``conftest`` (a triggered run advances in the request). Bad cron expressions and unknown time
zones come back as errors on their form fields and store nothing. The last test clicks through
the pages in Debian's Chromium (Playwright), taking screenshots (``test-artifacts/admin/``, or
``$BELUGA_SCHEDULE_SHOTS``).
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from beluga_workflows import Cron, workflow
from beluga_workflows.engine import registry
from beluga_workflows.models import Schedule
from beluga_workflows.schedules import create_schedule, schedules_database

from .conftest import make_user
from .test_browser import ARTIFACTS, browser, expect, page_for  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db
STORES = pytest.mark.parametrize(
    "store", ["memory", pytest.param("django-postgres", marks=pytest.mark.postgres)],
    indirect=True)

MANAGE = ("view_schedule", "add_schedule", "change_schedule", "delete_schedule", "start_workflow")
DECLARED = "admin_tests.nightly"


def surl(name: str, schedule_id: str | None = None) -> str:
    args = () if schedule_id is None else (quote(schedule_id),)
    return reverse(f"admin:beluga_workflows_schedule_{name}", args=args)


def text(response) -> str:
    return response.content.decode()


def table(executor):
    return Schedule.objects.using(schedules_database(executor.store))


@pytest.fixture
def manager(client, db):
    client.force_login(make_user("manager", *MANAGE))
    return client


@pytest.fixture
def declared():
    """A workflow declaring a nightly schedule in Berlin time, registered for this test only."""
    def nightly(ctx, value=None):
        return value

    workflow(name=DECLARED, schedule=Cron("30 2 * * *", timezone="Europe/Berlin",
                                          input={"report": "daily"}))(nightly)
    yield DECLARED
    with registry._lock:
        registry._workflows.pop(DECLARED, None)


def form_data(**overrides) -> dict:
    data = {"id": "hourly-hello", "workflow_type": "admin_tests.hello", "cron": "0 * * * *",
            "timezone": "UTC", "input": '"Ann"', "overlap": "skip"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@STORES
def test_the_list_syncs_declared_schedules_and_shows_next_fire_in_their_zone(
        executor, manager, declared):
    create_schedule(executor, "every-minute", workflow_type="admin_tests.hello", cron="* * * * *")
    response = manager.get(surl("changelist"))
    assert response.status_code == 200
    page = text(response)
    assert DECLARED in page and "every-minute" in page
    row = table(executor).get(pk=DECLARED)
    assert row.declared and row.input == {"report": "daily"}
    local = row.next_fire_at.astimezone(Cron("* * * * *", timezone="Europe/Berlin").zone)
    assert local.strftime("%H:%M") in ("02:30", "03:00")  # 03:00 on a spring-forward day
    assert f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}" in page
    assert "<code>30 2 * * *</code> (Europe/Berlin)" in page
    assert "Trigger selected schedules now" in page and "Add schedule" in page


@STORES
def test_bad_cron_and_unknown_time_zone_are_form_errors_and_store_nothing(executor, manager):
    response = manager.post(surl("add"), form_data(cron="61 * * * *"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["cron"] == [
        "bad cron expression '61 * * * *': bad minute"]
    response = manager.post(surl("add"), form_data(timezone="Mars/Olympus"))
    assert response.context["adminform"].form.errors["timezone"] == [
        "Unknown time zone “Mars/Olympus”: choose an IANA time zone such as UTC or "
        "Europe/Berlin."]
    response = manager.post(surl("add"), form_data(id="no spaces", input="{oops"))
    errors = response.context["adminform"].form.errors
    assert "a slug" in errors["id"][0] and errors["input"][0].startswith("Invalid JSON")
    assert not table(executor).exists()


@STORES
def test_adding_editing_and_deleting_a_schedule(executor, manager):
    response = manager.post(surl("add"), form_data(timezone="Europe/Berlin"), follow=True)
    assert response.status_code == 200, response.context["adminform"].form.errors
    row = table(executor).get(pk="hourly-hello")
    assert (row.cron, row.timezone, row.input, row.declared) == ("0 * * * *", "Europe/Berlin",
                                                                 "Ann", False)
    assert row.next_fire_at is not None and row.next_fire_at.minute == 0
    shown = manager.get(surl("change", "hourly-hello")).context["adminform"].form
    assert shown["input"].value() == '"Ann"'  # as JSON, so saving it unchanged keeps "Ann"
    again = manager.post(surl("add"), form_data())
    assert "exists" in again.context["adminform"].form.errors["id"][0]
    # Edit: a new timetable moves the next fire time; the id cannot change.
    response = manager.post(surl("change", "hourly-hello"),
                            form_data(id=None, cron="*/5 * * * * *", timezone="UTC"))
    assert response.status_code == 302
    row = table(executor).get(pk="hourly-hello")
    assert row.cron == "*/5 * * * * *" and row.version == 1
    assert row.next_fire_at - datetime.now(timezone.utc) <= timedelta(seconds=5)
    response = manager.post(surl("delete", "hourly-hello"), {"post": "yes"})
    assert response.status_code == 302 and not table(executor).exists()


@STORES
def test_a_declared_schedule_is_read_only_but_can_be_paused_not_deleted(
        executor, manager, declared):
    manager.get(surl("changelist"))  # syncs it in
    page = manager.get(surl("change", DECLARED))
    assert "Declared in code with" in text(page)
    assert set(page.context["adminform"].form.fields) == {"paused"}
    response = manager.post(surl("change", DECLARED), {"paused": "on"})
    assert response.status_code == 302
    row = table(executor).get(pk=DECLARED)
    assert row.paused and row.next_fire_at is None and row.cron == "30 2 * * *"
    assert manager.post(surl("delete", DECLARED), {"post": "yes"}).status_code == 403


@STORES
def test_pause_resume_and_trigger_now_buttons(executor, manager):
    create_schedule(executor, "waiter", workflow_type="admin_tests.wait_for_signal",
                    cron="0 3 * * *")
    page = text(manager.get(surl("change", "waiter")))
    assert 'id="trigger-now"' in page and 'id="pause-schedule"' in page
    response = manager.post(surl("trigger", "waiter"), follow=True)
    row = table(executor).get(pk="waiter")
    assert row.last_workflow_id.startswith("waiter@now-")
    assert f"Triggered “waiter”: started {row.last_workflow_id}." in text(response)
    assert executor.store.load(row.last_workflow_id).is_open
    next_fire = row.next_fire_at
    response = manager.post(surl("trigger", "waiter"), follow=True)  # its run is still open
    assert "not triggered: the previous run" in text(response)
    response = manager.post(surl("pause", "waiter"), follow=True)
    assert "Paused “waiter”" in text(response) and 'id="resume-schedule"' in text(response)
    assert table(executor).get(pk="waiter").next_fire_at is None
    manager.post(surl("resume", "waiter"))
    assert table(executor).get(pk="waiter").next_fire_at == next_fire
    assert manager.get(surl("pause", "waiter")).status_code == 302  # GET changes nothing
    assert not table(executor).get(pk="waiter").paused


@STORES
def test_list_actions_pause_resume_and_trigger_the_selected(executor, manager):
    for sid in ("a-1", "a-2"):
        create_schedule(executor, sid, workflow_type="admin_tests.hello", cron="0 3 * * *")
    selected = {"_selected_action": ["a-1", "a-2"]}
    response = manager.post(surl("changelist"), {**selected, "action": "pause_selected"},
                            follow=True)
    assert "Paused 2 schedule(s): a-1, a-2." in text(response)
    assert table(executor).filter(paused=True).count() == 2
    manager.post(surl("changelist"), {**selected, "action": "resume_selected"})
    assert table(executor).filter(paused=False, next_fire_at__isnull=False).count() == 2
    response = manager.post(surl("changelist"), {**selected, "action": "trigger_selected"},
                            follow=True)
    assert "Triggered 2 schedule(s)" in text(response)
    assert all(r.last_workflow_id.startswith(f"{r.pk}@now-") for r in table(executor).all())


@STORES
def test_who_may_do_what(executor, client, db):
    create_schedule(executor, "guarded", workflow_type="admin_tests.hello", cron="0 3 * * *")
    client.force_login(make_user("viewer", "view_schedule"))
    listing = text(client.get(surl("changelist")))
    assert "guarded" in listing and "Add schedule" not in listing
    assert "Pause selected schedules" not in listing
    page = text(client.get(surl("change", "guarded")))
    assert 'id="trigger-now"' not in page
    for name in ("trigger", "pause", "resume"):
        assert client.post(surl(name, "guarded")).status_code == 403
    assert client.get(surl("add")).status_code == 403
    assert client.post(surl("delete", "guarded"), {"post": "yes"}).status_code == 403
    row = table(executor).get(pk="guarded")
    assert (row.paused, row.last_workflow_id, row.version) == (False, "", 0)
    # Managing schedules without the start permission is not enough to add or trigger.
    client.force_login(make_user("no-start", *[p for p in MANAGE if p != "start_workflow"]))
    assert client.get(surl("add")).status_code == 403
    assert client.post(surl("trigger", "guarded")).status_code == 403


# -- in a real browser ---------------------------------------------------------------------------

SHOTS = Path(os.environ.get("BELUGA_SCHEDULE_SHOTS", ARTIFACTS))


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"schedules-{name}.png"), full_page=True)
    assert page.js_errors == [], page.js_errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["memory"], indirect=True)
def test_the_schedules_pages_in_chromium(executor, declared, page_for):  # noqa: F811 - fixture
    user = make_user("browser", *MANAGE)
    create_schedule(executor, "paused-report", workflow_type="admin_tests.hello",
                    cron="0 6 * * MON-FRI", timezone="America/New_York", paused=True)
    create_schedule(executor, "every-5-seconds", workflow_type="admin_tests.hello",
                    cron="*/5 * * * * *", overlap="allow", input="Ann")
    page = page_for(user)
    page.goto(surl("changelist"))
    expect(page.locator("#result_list")).to_contain_text(DECLARED)
    expect(page.locator("#result_list")).to_contain_text("(Europe/Berlin)")
    shoot(page, "1-list")

    page.click("text=Add schedule")
    page.fill("#id_id", "nightly-hello")
    page.select_option("#id_workflow_type", "admin_tests.hello")
    page.fill("#id_cron", "30 2 * * * * *")
    page.select_option("#id_timezone", "Europe/Berlin")
    page.fill("#id_input", '"Bob"')
    page.click("input[name=_save]")
    expect(page.locator(".errorlist")).to_contain_text("it has 7 field(s)")
    shoot(page, "2-add-bad-cron")
    page.fill("#id_cron", "30 2 * * *")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator("#result_list")).to_contain_text("nightly-hello")

    page.click(f"a[href='{surl('change', 'nightly-hello')}']")
    page.click("#trigger-now")
    expect(page.locator(".messagelist")).to_contain_text("Triggered “nightly-hello”: started")
    expect(page.locator(".field-outcome a")).to_have_attribute(
        "title", re.compile(r"^nightly-hello@now-\d{8}T\d{6}\.\d{6}Z$"))
    shoot(page, "3-triggered")
    page.click("#pause-schedule")
    expect(page.locator(".messagelist")).to_contain_text("Paused “nightly-hello”")
    expect(page.locator("#resume-schedule")).to_be_visible()
    shoot(page, "4-paused")

    page.goto(surl("change", DECLARED))
    expect(page.locator(".beluga-declared")).to_contain_text("Declared in code")
    shoot(page, "5-declared")
    page.goto(surl("changelist"))
    page.check("input[name=_selected_action][value='every-5-seconds']")
    page.select_option("select[name=action]", "trigger_selected")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Triggered 1 schedule(s): every-5-seconds")
    shoot(page, "6-list-after-actions")
