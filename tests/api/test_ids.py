"""Every id ``execute`` accepts works in URLs: unicode, spaces, '/' and ids that end like a route."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beluga_workflows.api.fields import WORKFLOW_ID_PATTERN
from beluga_workflows.api.routing import Reading, readings_of
from beluga_workflows.errors import InvalidInputError
from beluga_workflows.executor import get_executor, validate_workflow_id

from .conftest import result_of, start, url, waiting_for_signal

ODD_IDS = [
    "naïve ünïcødé",
    "日本語/ワークフロー",
    "with spaces inside",
    "orders/2024/10/order-1",
    "a//double",
    "/leading-slash",
    "trailing-slash/",
    "percent%20and?query#hash&amp;+plus",
    "orders/history",
    "orders/signal",
    "orders/cancel",
    "orders/query",
    "orders/query/stage",
    "orders/human-task",
    "history",
    "x" * 255,
    "🙂/" * 60 + "end",
]


@pytest.mark.django_db  # users live in "default"; the store's database is added per backend
@pytest.mark.parametrize("safe", ["/", ""], ids=["slashes-literal", "slashes-encoded"])
@pytest.mark.parametrize("workflow_id", ODD_IDS)
def test_every_endpoint_works_with_odd_ids(store, staff, workflow_id, safe):
    """On every store backend: the ids that ``execute`` accepts, each store holds."""
    started = staff.post(url(), {"workflow_type": "tests.api.approval", "id": workflow_id},
                         format="json")
    assert started.status_code == 201, started.content
    waiting_for_signal(workflow_id)

    detail = staff.get(url(workflow_id, safe=safe))
    assert detail.status_code == 200, detail.content
    assert detail.json()["id"] == workflow_id

    history = staff.get(url(workflow_id, "history/", safe=safe))
    assert history.status_code == 200
    assert history.json()["workflow_id"] == workflow_id

    query = staff.get(url(workflow_id, "query/stage/", safe=safe))
    assert query.json() == {"result": "waiting"}

    signal = staff.post(url(workflow_id, "signal/", safe=safe), {"name": "approval"},
                        format="json")
    assert signal.status_code == 202
    assert signal.json()["workflow_id"] == workflow_id
    assert result_of(workflow_id)["approval"] is None

    listed = staff.get(url()).json()["results"]
    assert [w["id"] for w in listed] == [workflow_id]

    cancel = staff.post(url(workflow_id, "cancel/", safe=safe))
    assert cancel.status_code == 409  # it has ended


def test_cancel_with_an_id_ending_in_a_route_word(staff):
    start(staff, "tests.api.approval", id="x/query")
    waiting_for_signal("x/query")
    assert staff.post(url("x/query", "cancel/")).status_code == 202
    assert staff.get(url("x/query")).json()["cancel_requested"] is True


def test_both_readings_exist_the_route_wins(staff):
    """With "a" and "a/history" both stored, GET a/history/ is the history of "a" (documented)."""
    start(staff, "tests.api.echo", id="a")
    start(staff, "tests.api.echo", id="a/history")
    response = staff.get(url("a", "history/"))
    assert response.json()["workflow_id"] == "a"
    assert staff.get(url("a/history", "history/")).json()["workflow_id"] == "a/history"


def test_a_url_that_names_nothing_is_404(staff):
    for path in ("x/history/", "x/query/stage/", "x/"):
        assert staff.get(f"/api/workflows/{path}").status_code == 404
    assert staff.post("/api/workflows/x/signal/", {"name": "n"}, format="json").status_code == 404


def test_get_on_a_post_route_reads_the_id_whole(staff):
    """GET .../x/signal/ cannot be a signal (POST), so it is the workflow "x/signal"."""
    start(staff, "tests.api.echo", id="x/signal")
    assert staff.get("/api/workflows/x/signal/").json()["id"] == "x/signal"


def test_readings_follow_the_method():
    assert readings_of("a/query/history/", "GET") == [
        Reading("query", {"workflow_id": "a", "query_type": "history"}),
        Reading("history", {"workflow_id": "a/query"}),
        Reading("detail", {"workflow_id": "a/query/history"}),
    ]
    assert readings_of("a/signal/", "POST") == [Reading("signal", {"workflow_id": "a"})]
    assert readings_of("a/signal/", "GET") == [Reading("detail", {"workflow_id": "a/signal"})]
    assert readings_of("a/b/", "DELETE") == []


def test_an_unambiguous_url_costs_no_store_read(staff, monkeypatch):
    start(staff, "tests.api.echo", id="plain-id")
    store = get_executor().store
    calls = []
    original = store.load
    monkeypatch.setattr(store, "load", lambda *a, **k: calls.append(a) or original(*a, **k))
    staff.get(url("plain-id"))
    assert len(calls) == 2  # get_handle and handle.state(), none for routing


def _accepted(workflow_id: str) -> bool:
    try:
        validate_workflow_id(workflow_id)
    except InvalidInputError:
        return False
    return True


@settings(max_examples=500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(min_size=1, max_size=6),
    st.text(alphabet=" .a/\n\t\x00\x1f\x7f\x85\xa0\u2003\u3000\ufeffé", min_size=1, max_size=5),
))
def test_the_schema_pattern_for_ids_is_what_execute_accepts(workflow_id):
    assert bool(re.fullmatch(WORKFLOW_ID_PATTERN, workflow_id)) == _accepted(workflow_id)
