"""The run page's timeline chart in Chromium: a run with 3 parallel activities (one retried), a
timer and a child, run by the ``local`` executor's threads; the bars are where the history says,
the child's bar links to the child's page, and parent and child link each other.

Screenshots land in ``test-artifacts/admin/`` (``timeline-*.png``).
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from beluga_workflows import RetryPolicy, WorkflowOptions, activity, workflow
from beluga_workflows.admin.timeline import CHART_WIDTH, LABEL_WIDTH
from beluga_workflows.types import EventType

from .conftest import ended
from .support import url
from .test_browser import ARTIFACTS, browser, executor, operator, page_for, shot  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True)]
_FLAKY: dict[str, int] = {}


@activity(name="admin_tests.timeline.check")
def check(spec: dict) -> str:
    time.sleep(spec["seconds"])
    if spec.get("fail_once") and _FLAKY.setdefault(spec["key"], 0) == 0:
        _FLAKY[spec["key"]] = 1
        raise ConnectionError("warehouse did not answer")
    return spec["key"]


@workflow(name="admin_tests.timeline.label")
def label(ctx, order: str) -> str:
    ctx.sleep(0.2)
    return f"label-{order}"


@workflow(name="admin_tests.timeline.fulfil")
def fulfil(ctx, order: str) -> dict:
    checks = [ctx.start_activity(check, {"key": f"{order}-{n}", "seconds": 0.2 + 0.1 * n,
                                         "fail_once": n == 1},
                                 retry=RetryPolicy(max_attempts=3, initial_interval=0.3))
              for n in range(3)]
    stock = ctx.gather(*checks)
    ctx.sleep(0.5)
    return {"stock": stock, "label": ctx.execute_child(label, order)}


def test_the_timeline_draws_parallel_attempts_a_timer_and_a_linked_child(executor, operator,  # noqa: F811
                                                                         page_for):  # noqa: F811
    handle = executor.execute(fulfil, WorkflowOptions(id="order-77", input="o77"))
    ended(executor, handle.id)
    state = executor.store.load(handle.id)
    assert state.result["label"] == "label-o77", state.error
    page = page_for(operator)
    page.goto(url("change", handle.id))
    chart = page.locator("#timeline-chart svg")
    chart.wait_for()
    shot(page, "timeline-run")
    chart.screenshot(path=str(ARTIFACTS / "timeline-chart.png"))

    begin = state.created_at
    total = (max(state.ended_at, *(e.timestamp for e in state.history)) - begin).total_seconds()
    bars = page.locator("#timeline-chart rect.bar")
    seen = []
    for index in range(bars.count()):
        bar = bars.nth(index)
        start = datetime.fromisoformat(bar.get_attribute("data-start"))
        expected_x = LABEL_WIDTH + CHART_WIDTH * (start - begin).total_seconds() / total
        assert abs(float(bar.get_attribute("x")) - expected_x) < 1.0
        seen.append((int(bar.get_attribute("data-op")), bar.get_attribute("data-kind")))
    # The three activities, side by side; the retried one failed once first; then the child.
    assert seen.count((2, "failed")) == 1 and (2, "completed") in seen
    assert (1, "completed") in seen and (3, "completed") in seen
    starts = sorted(e.timestamp for e in state.history if e.type is EventType.ACTIVITY_STARTED
                    and e.op in (1, 3))
    ends = sorted(e.timestamp for e in state.history if e.type is EventType.ACTIVITY_COMPLETED
                  and e.op in (1, 3))
    assert starts[-1] < ends[0], "the parallel activities overlapped in time"
    assert page.locator("#timeline-chart rect.span[data-kind=wait]").count() >= 1
    child_bar = page.locator("#timeline-chart a rect[data-kind=child]")
    assert child_bar.count() == 1
    page.locator("#child-runs a.child-run").click()
    page.wait_for_url(f"**{url('change', 'order-77/6')}")
    shot(page, "timeline-child")
    page.locator("#parent-run a").click()
    page.wait_for_url(f"**{url('change', 'order-77')}")

    # The list: the child row links to its parent, the parent row to the list of its children.
    page.goto(url("changelist"))
    child_row = page.locator('tr[data-workflow-id="order-77/6"]')
    assert child_row.locator("a.parent-link").inner_text() == "order-77"
    parent_row = page.locator('tr[data-workflow-id="order-77"]')
    assert parent_row.locator("a.children-link").inner_text() == "1 child run"
    assert page.locator('tr[data-workflow-id="order-77/6"] a.children-link').count() == 0
    shot(page, "timeline-list")
    parent_row.locator("a.children-link").click()
    page.wait_for_url("**?parent=order-77")
    assert page.locator("#result_list tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.workflowId)") == ["order-77/6"]
    assert "Only the child runs of order-77" in page.locator("#parent-filter").inner_text()
    shot(page, "timeline-children")
    child_row.locator("a.parent-link").click()
    page.wait_for_url(f"**{url('change', 'order-77')}")
