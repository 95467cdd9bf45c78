"""The read-only temporal store, and the admin, the REST API and ``manage.py check`` on it."""

from __future__ import annotations

import sys

import pytest

from beluga_workflows import (
    EventType,
    Signal,
    StoreError,
    WorkflowFilter,
    WorkflowState,
    WorkflowStatus,
)
from beluga_workflows.checks import check_settings


def ids(states):
    return sorted(s.workflow_id for s in states)


def test_list_and_count_filter_by_status_type_and_id_prefix(executor, runs):
    store = executor.store
    every = store.list(WorkflowFilter(workflow_id_prefix=runs))
    assert len(every) == 4 and all(isinstance(s, WorkflowState) for s in every)
    assert every[0].workflow_id == f"{runs}-open"  # open runs first
    assert ids(store.list(WorkflowFilter(workflow_id_prefix=runs, status="completed"))) == [
        f"{runs}-done-0", f"{runs}-done-1"]
    assert ids(store.list(WorkflowFilter(workflow_id_prefix=runs, status="failed"))) == [
        f"{runs}-failed"]
    assert ids(store.list(WorkflowFilter(workflow_id_prefix=runs,
                                         workflow_type="orders.process"))) == [f"{runs}-open"]
    page = store.list(WorkflowFilter(workflow_id_prefix=runs, offset=1, limit=2))
    assert [s.workflow_id for s in page] == [s.workflow_id for s in every[1:3]]
    assert store.count(WorkflowFilter(workflow_id_prefix=runs, status="completed")) == 2
    assert store.list(WorkflowFilter(workflow_id_prefix=runs, wait_kind="signal")) == []
    counts = store.count_by_status()
    assert set(counts) == {s.value for s in WorkflowStatus}
    assert counts["completed"] >= 2 and counts["failed"] >= 1 and counts["running"] >= 1


def test_load_describes_the_run_with_its_history_mapped_to_ours(executor, runs):
    state = executor.store.load(f"{runs}-done-0")
    assert state.status is WorkflowStatus.COMPLETED and state.result == "woke"
    assert state.input == 0.05 and state.workflow_type == "temporal.sleeper"
    assert [e.type for e in state.history] == [EventType.WORKFLOW_STARTED,
                                               EventType.TIMER_STARTED, EventType.TIMER_FIRED,
                                               EventType.WORKFLOW_COMPLETED]
    assert [e.id for e in state.history] == [1, 2, 3, 4]
    failed = executor.store.load(f"{runs}-failed")
    assert failed.status is WorkflowStatus.FAILED and failed.error["type"] == "ActivityError"
    assert executor.store.load(f"{runs}-missing") is None
    assert executor.store.history(f"{runs}-done-0", after=2) == state.history[2:]


def test_writes_are_refused_with_a_store_error(executor, runs):
    store = executor.store
    state = store.load(f"{runs}-done-0")
    for write in (lambda: store.save(state), lambda: store.create(state),
                  lambda: store.delete(state.workflow_id),
                  lambda: store.add_signal(state.workflow_id, Signal(name="x"), state.created_at)):
        with pytest.raises(StoreError, match="the temporal store is read-only"):
            write()


@pytest.mark.django_db
def test_the_admin_list_and_run_page_show_temporal_runs(executor, runs, admin_client):
    from django.contrib.admin.utils import quote
    from django.urls import reverse

    listing = admin_client.get(reverse("admin:beluga_workflows_workflowstate_changelist"),
                               {"q": runs})
    assert listing.status_code == 200
    page = listing.content.decode()
    for suffix in ("open", "failed", "done-0", "done-1"):
        assert f"{runs}-{suffix}" in page

    run = admin_client.get(reverse("admin:beluga_workflows_workflowstate_change",
                                   args=(quote(f"{runs}-open"),)))
    assert run.status_code == 200
    body = run.content.decode()
    assert "tests.temporal.workflows.charge_card" in body and "activity_completed" in body
    answered = admin_client.get(reverse("admin:beluga_workflows_workflowstate_change",
                                        args=(quote(f"{runs}-open"),)), {"query": "status"})
    assert "running" in answered.content.decode()


@pytest.mark.django_db
def test_the_rest_api_lists_and_shows_temporal_runs(executor, runs, admin_client):
    listed = admin_client.get("/api/workflows/", {"workflow_type": "orders.process",
                                                  "status": "running", "limit": 500})
    assert listed.status_code == 200
    assert f"{runs}-open" in [r["id"] for r in listed.json()["results"]]
    detail = admin_client.get(f"/api/workflows/{runs}-done-0/")
    assert detail.status_code == 200 and detail.json()["status"] == "completed"
    history = admin_client.get(f"/api/workflows/{runs}-done-0/history/")
    assert history.status_code == 200
    assert [e["type"] for e in history.json()["results"]][-1] == "workflow_completed"
    query = admin_client.get(f"/api/workflows/{runs}-open/query/status/")
    assert query.status_code == 200


def _checks(settings, backend_options, *, store="temporal"):
    settings.BELUGA_WORKFLOWS = {
        "STORE": {"BACKEND": store, "OPTIONS": dict(backend_options) if store == "temporal"
                  else {}},
        "EXECUTOR": {"BACKEND": "temporal", "OPTIONS": dict(backend_options)}, "HOOKS": []}
    return {m.id: f"{m.msg} HINT: {m.hint}" for m in check_settings()
            if m.id != "beluga_workflows.E006"}


def test_check_passes_on_a_reachable_server(settings, temporal_server):
    assert _checks(settings, {"target": temporal_server, "task_queue": "q"}) == {}


def test_check_reports_an_unreachable_server_with_a_hint(settings, temporal_server):
    found = _checks(settings, {"target": "127.0.0.1:1", "task_queue": "q"})
    assert set(found) == {"beluga_workflows.E004", "beluga_workflows.E010"}, found
    assert "cannot be reached" in found["beluga_workflows.E010"]
    assert "temporal server start-dev" in found["beluga_workflows.E010"]


def test_check_reports_a_missing_extra_with_a_hint(settings, monkeypatch):
    for name in [m for m in sys.modules if m.startswith(("temporalio",
                                                         "beluga_workflows.runtimes.temporal"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "temporalio", None)
    found = _checks(settings, {"target": "127.0.0.1:7233"}, store="memory")
    assert list(found) == ["beluga_workflows.E009"], found
    assert "beluga-workflows[temporal]" in found["beluga_workflows.E009"]
