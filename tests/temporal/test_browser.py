"""The admin's list and run page of Temporal runs, in Debian's Chromium (Playwright).

Screenshots land in ``test-artifacts/temporal/``. Every wait is Playwright's auto-waiting.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.urls import reverse

expect = playwright_api.expect

CHROMIUM = os.environ.get("BELUGA_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "temporal"

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(live_server):
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: bin/test installs Debian's chromium")
    User.objects.create_superuser("admin", password="pw")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update",
            "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      base_url=live_server.url)
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto("/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "pw")
        page.click("input[type=submit]")
        expect(page.locator("#user-tools")).to_contain_text("admin")
        yield page
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def test_the_admin_list_and_run_page_of_temporal_runs(executor, runs, page):
    page.goto(reverse("admin:beluga_workflows_workflowstate_changelist") + f"?q={runs}")
    for suffix in ("open", "failed", "done-0", "done-1"):
        expect(page.locator("body")).to_contain_text(f"{runs}-{suffix}")
    page.screenshot(path=str(ARTIFACTS / "01-temporal-runs-list.png"), full_page=True)

    page.goto(reverse("admin:beluga_workflows_workflowstate_change", args=(quote(f"{runs}-open"),)))
    expect(page.locator("body")).to_contain_text("tests.temporal.workflows.charge_card")
    expect(page.locator("body")).to_contain_text("activity_completed")
    page.screenshot(path=str(ARTIFACTS / "02-temporal-run-page.png"), full_page=True)

    page.goto(reverse("admin:beluga_workflows_workflowstate_change",
                      args=(quote(f"{runs}-failed"),)))
    expect(page.locator("body")).to_contain_text("ActivityError")
    page.screenshot(path=str(ARTIFACTS / "03-temporal-failed-run.png"), full_page=True)
