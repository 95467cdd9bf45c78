"""What an open Temporal run waits for: the store's wait_kind / wait_name / wait_until (from the
run's wait memo and its pending activities), on the list, the run page and the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest

from beluga_workflows import EventType, Signal, WorkflowFilter, WorkflowOptions

from .conftest import read_ledger, wait_for


def loaded(executor, workflow_id):
    return executor.store.load(workflow_id, with_history=False)


@pytest.mark.django_db
def test_an_open_run_shows_its_signal_then_its_timer_then_its_activity(executor, unique, ledger,
                                                                       admin_client):
    from django.contrib.admin.utils import quote
    from django.urls import reverse

    order = {"id": unique, "total": 3, "hold": 30}
    executor.execute("orders.process", WorkflowOptions(id=unique, input=order))
    state = wait_for(lambda: (s := loaded(executor, unique)).wait_kind == "signal" and s, 20,
                     "the run to wait for its approval")
    assert state.wait_name == "approval"
    assert (state.wait_until - state.created_at) > timedelta(days=2, hours=23)
    listed = wait_for(lambda: [s for s in executor.store.list(WorkflowFilter(
        workflow_id_prefix=unique)) if s.wait_kind == "signal"], 20, "visibility's memo")
    assert listed[0].wait_name == "approval"
    page = admin_client.get(reverse("admin:beluga_workflows_workflowstate_changelist"),
                            {"q": unique}).content.decode()
    assert "signal “approval”" in page and "a worker (scheduled)" not in page

    executor.signal(unique, Signal(name="approval", payload="ok"))
    state = wait_for(lambda: (s := loaded(executor, unique)).wait_kind == "timer" and s, 20,
                     "the hold")
    assert state.wait_name == "sleep" and state.wait_until is not None
    run = admin_client.get(reverse("admin:beluga_workflows_workflowstate_change",
                                   args=(quote(unique),))).content.decode()
    assert "timer" in run and "a worker (scheduled)" not in run
    executor.cancel(unique)

    second = f"{unique}-act"
    executor.execute("temporal.cancellable", WorkflowOptions(id=second, input={
        "id": second, "during": "activity"}))
    wait_for(lambda: f"slow-start {second}" in read_ledger(ledger), 20, "the activity")
    state = wait_for(lambda: (s := loaded(executor, second)).wait_kind == "working" and s, 20,
                     "the started activity")
    executor.cancel(second)
    assert any(e.type is EventType.ACTIVITY_SCHEDULED for e in executor.store.history(second))


def test_an_activity_between_attempts_shows_as_a_retry(executor, unique):
    executor.execute("both.retrying", WorkflowOptions(id=unique, input={
        "id": unique, "fail": 1, "attempts": 2, "error": "retryable", "wait": 3}))
    state = wait_for(lambda: (s := loaded(executor, unique)).wait_kind == "retry" and s, 20,
                     "the retry")
    assert "fails_until" in state.wait_name and state.wait_until is not None
