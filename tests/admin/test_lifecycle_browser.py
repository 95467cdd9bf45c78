"""Resume and Fork in Chromium: a run whose step 2 failed is resumed from its page and completes;
then it is forked from its third step, from the fork page, into a new run.

Runs progress on the ``local`` executor's threads. Screenshots land in ``test-artifacts/admin/``
(``lifecycle-*.png``).
"""

from __future__ import annotations

import pytest

from beluga_workflows import WorkflowOptions, WorkflowStatus
from beluga_workflows.admin.lifecycle import fork_points

from . import workflows
from .conftest import ended
from .support import url
from .test_browser import browser, executor, expect, operator, page_for, shot  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_resume_a_failed_run_then_fork_it_from_a_step(executor, operator, page_for,  # noqa: F811
                                                      monkeypatch):
    monkeypatch.setattr(workflows, "STEP_CALLS", {})
    monkeypatch.setitem(workflows.STEP_TWO_FAILS, "on", True)
    executor.execute("admin_tests.three_steps", WorkflowOptions(id="order-9", input="order-9"))
    failed = ended(executor, "order-9")
    assert failed.status is WorkflowStatus.FAILED
    monkeypatch.setitem(workflows.STEP_TWO_FAILS, "on", False)  # the fix is deployed

    page = page_for(operator)
    page.goto(url("change", "order-9"))
    expect(page.locator("h1")).to_contain_text("failed")
    expect(page.locator("#fork-button")).to_be_visible()
    shot(page, "lifecycle-1-failed-run")
    page.click("#resume-button")
    expect(page.locator("#confirm-resume")).to_be_visible()
    expect(page.locator("#content-main")).to_contain_text(failed.run_id)
    shot(page, "lifecycle-2-resume-confirmation")
    page.click("#confirm-resume")
    page.wait_for_url(f"**{url('change', 'order-9')}")
    expect(page.locator(".messagelist")).to_contain_text("Resumed workflow “order-9”")
    resumed = ended(executor, "order-9")
    assert resumed.status is WorkflowStatus.COMPLETED and resumed.run_id != failed.run_id
    assert [workflows.STEP_CALLS[("order-9", n)] for n in (1, 2, 3)] == [1, 2, 1]
    page.reload()
    expect(page.locator("h1 .beluga-badge")).to_have_text("completed")
    expect(page.locator("#resume-button")).to_have_count(0)  # a completed run is only forked
    expect(page.locator("#timeline")).to_contain_text("workflow_completed")
    shot(page, "lifecycle-3-resumed-run")

    third = fork_points(executor.store.load("order-9").history)[2]
    page.click("#fork-button")
    steps = page.locator("#fork-steps tr.fork-point")
    expect(steps).to_have_count(3)
    expect(page.locator("#from-start")).to_be_checked()
    page.fill("#id_new_id", "..")
    page.check(f"#from-{third.first}")
    page.click("input[name=_fork]")
    expect(page.locator(".field-new_id .errorlist")).to_contain_text("workflow id must not be")
    expect(page.locator(f"#from-{third.first}")).to_be_checked()  # the choice is kept
    shot(page, "lifecycle-4-fork-form-error")
    page.fill("#id_new_id", "order-9/retry")
    shot(page, "lifecycle-5-fork-form")
    page.click("input[name=_fork]")
    page.wait_for_url(f"**{url('change', 'order-9/retry')}")
    expect(page.locator(".messagelist")).to_contain_text(
        f"Forked “order-9” from event {third.first} as “order-9/retry”")
    forked = ended(executor, "order-9/retry")
    assert forked.status is WorkflowStatus.COMPLETED, forked.error
    assert workflows.STEP_CALLS[("order-9", 3)] == 2 and workflows.STEP_CALLS[("order-9", 2)] == 2
    page.reload()
    expect(page.locator("h1 .beluga-badge")).to_have_text("completed")
    shot(page, "lifecycle-6-forked-run")

    # The run page's history links a step to the fork form with that step picked.
    page.goto(url("change", "order-9"))
    page.click(f'a.fork-from[href$="?from_event={third.first}"]')
    expect(page.locator(f"#from-{third.first}")).to_be_checked()
