"""The admin's list and run pages, on every store: what they show, filters, search, paging, cost."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from beluga_workflows import Signal, WorkflowOptions, WorkflowStatus

from .conftest import ended, waiting
from .support import seed, url

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return response.content.decode()


def test_admin_index_lists_workflow_runs(executor, operator_client):
    page = text(operator_client.get("/admin/"))
    assert "Workflow runs" in page and url("changelist") in page


def test_the_example_project_brands_the_admin(executor, operator_client):
    # templates/admin/base_site.html, through TEMPLATES["DIRS"]: every admin page, ours included.
    for path in ("/admin/", url("changelist"), url("human_tasks")):
        page = text(operator_client.get(path))
        assert '<div id="site-name"><a href="/admin/">Beluga workflows</a></div>' in page, path
        assert "Django administration" not in page and "Django site admin" not in page, path
    assert "<title>Workflow runs | Beluga workflows</title>" in text(
        operator_client.get(url("changelist")))


def test_list_shows_runs_newest_first_with_status_wait_and_counts(executor, operator_client):
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="alpha-1", input={"a": 1}))
    waiting(executor, "alpha-1")
    executor.execute("admin_tests.fail", WorkflowOptions(id="beta-1"))
    ended(executor, "beta-1")
    executor.execute("admin_tests.hello", WorkflowOptions(id="alpha-2"))
    ended(executor, "alpha-2")

    response = operator_client.get(url("changelist"))
    assert response.status_code == 200
    page = text(response)
    assert page.index("alpha-2") < page.index("beta-1") < page.index("alpha-1")  # newest first
    assert 'class="beluga-badge beluga-running"' in page
    assert 'class="beluga-badge beluga-failed"' in page
    assert 'class="beluga-badge beluga-completed"' in page
    assert "signal “go”" in page
    assert url("change", "alpha-1") in page
    counts = {name: n for name, n in response.context["counts"]}
    assert counts == {"running": 1, "completed": 1, "failed": 1, "canceled": 0, "timed_out": 0}
    assert response.context["total"] == 3


def test_filters_and_search(executor, operator_client):
    seed(executor.store, 3, prefix="alpha", workflow_type="admin_tests.hello")
    seed(executor.store, 2, prefix="beta", status=WorkflowStatus.FAILED,
         workflow_type="admin_tests.fail", start=timezone.now() - timedelta(hours=1))

    def ids(query: str) -> list[str]:
        response = operator_client.get(url("changelist") + query)
        assert response.status_code == 200
        return [row["state"].workflow_id for row in response.context["rows"]]

    assert ids("") == ["beta-00001", "beta-00000", "alpha-00002", "alpha-00001", "alpha-00000"]
    assert ids("?status=failed") == ["beta-00001", "beta-00000"]
    assert ids("?status=running&type=admin_tests.hello") == ["alpha-00002", "alpha-00001",
                                                              "alpha-00000"]
    assert ids("?type=admin_tests.fail") == ["beta-00001", "beta-00000"]
    assert ids("?q=alpha") == ["alpha-00002", "alpha-00001", "alpha-00000"]   # prefix
    assert ids("?q=alpha-00001") == ["alpha-00001"]                           # exact
    assert ids("?q=lpha") == []                                               # not a substring
    assert ids("?q=ALPHA") == []                                              # case-sensitive
    assert ids("?q=alpha&status=failed") == []
    assert ids("?status=bogus") == ids("")  # an unknown status is ignored, not an error
    # Text no id can hold finds nothing (and no store is asked something it cannot store).
    assert ids("?q=al%00pha") == ids("?parent=a%00b") == ids("?wait=si%00gnal") == []
    assert ids("?parent=alpha-00001") == []  # a run without children


def test_pagination(executor, operator_client):
    seed(executor.store, 55)
    first = operator_client.get(url("changelist"))
    assert len(first.context["rows"]) == 50 and first.context["paginator"].count == 55
    assert first.context["rows"][0]["state"].workflow_id == "seed-00054"
    second = operator_client.get(url("changelist") + "?p=2")
    assert [r["state"].workflow_id for r in second.context["rows"]] == [
        f"seed-{i:05d}" for i in range(4, -1, -1)]
    assert 'href="?p=2"' in text(first)
    filtered = operator_client.get(url("changelist") + "?q=seed-0005&p=1")
    assert filtered.context["paginator"].count == 5


def test_list_query_count_does_not_grow_with_rows(executor, operator_client, store):
    # On the memory store only the session/user queries are counted: they must not grow either.
    def queries(path: str) -> int:
        with ExitStack() as stack:
            captured = [stack.enter_context(CaptureQueriesContext(connections[alias]))
                        for alias in {"default", getattr(store, "using", "default")}]
            assert operator_client.get(path).status_code == 200
        return sum(len(c.captured_queries) for c in captured)

    pages = ("", "?status=running", "?type=admin_tests.hello", "?q=seed", "?p=2")
    seed(executor.store, 3)
    few = [queries(url("changelist") + page) for page in pages]
    seed(executor.store, 120, prefix="seed-more", status=WorkflowStatus.COMPLETED)
    seed(executor.store, 60, prefix="seed-waiting", wait_kind="signal")
    many = [queries(url("changelist") + page) for page in pages]
    assert many == few, dict(zip(pages, many, strict=True))
    assert max(many) <= 12, dict(zip(pages, many, strict=True))


def test_run_page_shows_input_waits_timeline_buttons_and_answers_queries(executor, operator_client):
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="r/1 #x", input={"a": "ü"}))
    waiting(executor, "r/1 #x")
    response = operator_client.get(url("change", "r/1 #x"))
    assert response.status_code == 200
    page = text(response)
    assert "Workflow r/1 #x" in page
    assert "&quot;a&quot;: &quot;ü&quot;" in page  # pretty JSON, non-ASCII readable
    assert 'id="waits-for"' in page and "signal “go”" in page
    assert 'data-event="workflow_started"' in page
    assert url("signal", "r/1 #x") in page and url("cancel", "r/1 #x") in page

    answer = operator_client.get(url("change", "r/1 #x") + "?query=stage")
    assert "waiting for go" in answer.context["answer"]["value"]
    status = operator_client.get(url("change", "r/1 #x") + "?query=status")
    assert status.context["answer"] == {"value": "running"}
    unknown = operator_client.get(url("change", "r/1 #x") + "?query=nothing")
    assert unknown.context["answer"] is None
    assert "unknown query type" in text(unknown)


def test_completed_run_shows_result_and_timeline_without_buttons(executor, operator_client):
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="done", input=[1]))
    waiting(executor, "done")
    executor.signal("done", Signal("go", {"ok": True}))
    ended(executor, "done")
    page = text(operator_client.get(url("change", "done")))
    assert 'id="result"' in page and "&quot;ok&quot;: true" in page
    for event in ("workflow_started", "signal_received", "workflow_completed"):
        assert f'data-event="{event}"' in page
    assert url("signal", "done") not in page and url("cancel", "done") not in page


def test_failed_run_shows_error_and_traceback(executor, operator_client):
    executor.execute("admin_tests.fail", WorkflowOptions(id="bad", input={"x": 1}))
    ended(executor, "bad")
    page = text(operator_client.get(url("change", "bad")))
    assert "ValueError: bad input: {&#x27;x&#x27;: 1}" in page
    assert 'class="beluga-traceback"' in page and "Traceback (most recent call last)" in page
    assert 'data-event="workflow_failed"' in page


def test_history_is_paged(executor, operator_client, monkeypatch):
    from beluga_workflows.admin import workflows as admin_workflows

    monkeypatch.setattr(admin_workflows, "HISTORY_PER_PAGE", 2)
    executor.execute("admin_tests.wait_for_signal", WorkflowOptions(id="paged"))
    waiting(executor, "paged")
    executor.signal("paged", Signal("go"))
    ended(executor, "paged")
    first = operator_client.get(url("change", "paged"))
    assert [e.id for e in first.context["events"]] == [1, 2]
    assert first.context["next_after"] == 2
    rest = operator_client.get(url("change", "paged") + "?after=2")
    assert rest.context["events"][0].id == 3


def test_missing_run_redirects_with_a_message(executor, operator_client):
    response = operator_client.get(url("change", "nope"), follow=True)
    assert response.redirect_chain[-1][0] == url("changelist")
    assert "doesn’t exist" in text(response)


def test_bare_id_url_redirects_to_the_run_page(executor, operator_client):
    seed(executor.store, 1, prefix="bare")
    response = operator_client.get(url("changelist") + "bare-00000/")
    assert response.status_code == 302 and response.url == url("change", "bare-00000")


def test_pages_need_login_and_view_permission(executor, client, django_user_model):
    assert client.get(url("changelist")).status_code == 302  # to the login page
    user = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(url("changelist")).status_code == 403
    assert client.get(url("human_tasks")).status_code == 403
