"""What only the ``django`` store promises: its options, its errors, its query budget, its schema."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState
from django.test.utils import CaptureQueriesContext

from beluga_workflows.errors import InvalidInputError, StoreError
from beluga_workflows.stores import create_store
from beluga_workflows.stores.base import RunEnd
from beluga_workflows.stores.django import DjangoStore
from beluga_workflows.types import EventType, Signal, WorkflowFilter, WorkflowStatus

from .test_contract import T0, at, claimed, event, new_run

DJANGO_STORES = ["django-sqlite", pytest.param("django-postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DJANGO_STORES)
def store(request):
    """The django store on each database (tests/conftest.py gives each its database access)."""
    from tests.conftest import make_store

    return make_store(request.param, request)


def queries(store: DjangoStore, operation) -> tuple[int, object]:
    """How many SQL statements ``operation()`` sends, and what it returned."""
    with CaptureQueriesContext(connections[store.using]) as captured:
        result = operation()
    return len(captured.captured_queries), result


# -- options ---------------------------------------------------------------------------------------

def test_an_unknown_database_alias_is_improperly_configured():
    with pytest.raises(ImproperlyConfigured, match=r'\["using"\] = \'nope\'.*default'):
        DjangoStore(using="nope")
    with pytest.raises(ImproperlyConfigured, match="using"):
        create_store({"BACKEND": "django", "OPTIONS": {"using": "nope"}})


def test_an_unknown_option_is_improperly_configured():
    with pytest.raises(ImproperlyConfigured, match="unknown option.*url"):
        DjangoStore(url="postgres://x")


def test_use_tz_is_required(settings):
    settings.USE_TZ = False
    with pytest.raises(ImproperlyConfigured, match="USE_TZ"):
        DjangoStore()


def test_the_migrations_match_the_models():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    changes = MigrationAutodetector(
        loader.project_state(), ProjectState.from_apps(apps)
    ).changes(graph=loader.graph, trim_to_apps={"beluga_workflows"})
    assert "beluga_workflows" not in changes, "run manage.py makemigrations beluga_workflows"


# -- errors ----------------------------------------------------------------------------------------

@pytest.fixture
def unreachable(django_db_blocker):
    """A database alias whose server does not answer."""
    template = connections.settings.get("postgres") or connections.settings["default"]
    config = dict(template, ENGINE="django.db.backends.postgresql", NAME="nowhere",
                  HOST="127.0.0.1", PORT="1", OPTIONS={"connect_timeout": 2})
    connections.settings["unreachable"] = config  # a copy of a configured alias: no defaults missing
    with django_db_blocker.unblock():
        yield DjangoStore(using="unreachable")
    connections["unreachable"].close()
    del connections["unreachable"]
    del connections.settings["unreachable"]


def test_an_unreachable_database_is_a_store_error_naming_the_operation(unreachable):
    with pytest.raises(StoreError, match=r"django store: load failed on database 'unreachable'"):
        unreachable.load("wf-1")
    with pytest.raises(StoreError, match="add_signal failed"):
        unreachable.add_signal("wf-1", Signal("go"), T0)
    with pytest.raises(StoreError, match="claim failed"):
        unreachable.claim("wf-1", "w1", at(30), T0)


@pytest.mark.parametrize("store", DJANGO_STORES[1:], indirect=True)
def test_a_value_postgresql_cannot_hold_is_invalid_input_and_changes_nothing(store):
    store.create(new_run("wf-nul"))
    with pytest.raises(InvalidInputError, match="add_signal"):
        store.add_signal("wf-nul", Signal("go", {"text": "a\x00b"}), T0)
    assert store.load("wf-nul").wake_seq == 0
    state = claimed(store, "wf-nul")
    with transaction.atomic(using=store.using):
        with pytest.raises(InvalidInputError):
            store.append("wf-nul", state.run_id, "w1", [event(2, result="\x00")],
                         lease_until=at(30))
        # The caller's transaction is still usable: the failed statement ran under a savepoint.
        store.append("wf-nul", state.run_id, "w1", [event(2, result="ok")], lease_until=at(30))
    assert [e.result for e in store.history("wf-nul")] == [None, "ok"]


# -- cost ------------------------------------------------------------------------------------------

def test_the_hot_operations_stay_within_their_query_budget(store):
    """PostgreSQL: one statement per checkpoint, suspension and signal; SQLite: a short transaction.

    The SQLite counts include its BEGIN IMMEDIATE and COMMIT, and the SAVEPOINT and RELEASE of the
    operation's own transaction inside it (all in-process, no round trips).
    """
    postgres = connections[store.using].vendor == "postgresql"
    store.create(new_run("wf-q"))
    n, state = queries(store, lambda: store.claim("wf-q", "w1", at(30), T0))
    # claim, then history and inbox (one UNION ALL on PostgreSQL); on SQLite the four statements
    # run between BEGIN IMMEDIATE and COMMIT (the write lock taken up front)
    assert n == (2 if postgres else 6)
    n, _ = queries(store, lambda: store.append("wf-q", state.run_id, "w1", [event(2), event(3)],
                                               lease_until=at(30)))
    assert n == (1 if postgres else 7)  # BEGIN, SAVEPOINT, UPDATE, INSERT, SELECT, RELEASE, COMMIT
    n, signal = queries(store, lambda: store.add_signal("wf-q", Signal("go", 1), at(1)))
    assert n == (1 if postgres else 7)  # BEGIN, SAVEPOINT, SELECT, UPDATE, INSERT, RELEASE, COMMIT
    n, _ = queries(store, lambda: store.suspend("wf-q", state.run_id, "w1",
                                                seen_wake_seq=state.wake_seq, wake_at=None,
                                                wait_kind="signal", wait_name="go",
                                                wait_until=None))
    # refused: the signal arrived; a second look tells "lease held" from "lost" (on SQLite
    # inside BEGIN IMMEDIATE ... COMMIT)
    assert n == (2 if postgres else 4)
    n, fresh = queries(store, lambda: store.refresh("wf-q", state.run_id, "w1"))
    assert n == 2
    n, _ = queries(store, lambda: store.append(
        "wf-q", state.run_id, "w1",
        [event(4, EventType.SIGNAL_RECEIVED, signal_name="go", signal_payload=1)],
        lease_until=at(30), consume_signal=signal.id))
    assert n == (1 if postgres else 8)  # ... and the DELETE of the consumed signal
    n, suspended = queries(store, lambda: store.suspend(
        "wf-q", state.run_id, "w1", seen_wake_seq=fresh.wake_seq, wake_at=None,
        wait_kind="signal", wait_name="go", wait_until=None))
    assert suspended is True and n == (1 if postgres else 3)
    state = claimed(store, "wf-q", now=at(2))
    n, _ = queries(store, lambda: store.renew("wf-q", state.run_id, "w1", at(40)))
    assert n == (1 if postgres else 3)
    n, _ = queries(store, lambda: store.append("wf-q", state.run_id, "w1",
                                               [event(5, EventType.WORKFLOW_COMPLETED)],
                                               lease_until=at(30),
                                               end=RunEnd(WorkflowStatus.COMPLETED, 1)))
    assert n == (1 if postgres else 7)


def test_reads_do_not_query_per_run(store):
    for i in range(12):
        store.create(new_run(f"wf-{i:02}", created=at(i)))
        store.add_signal(f"wf-{i:02}", Signal("s", i), at(i))
    n, runs = queries(store, lambda: store.list(WorkflowFilter(limit=10)))
    assert n == 2 and len(runs) == 10 and all(len(s.signals) == 1 for s in runs)
    assert queries(store, lambda: store.count(WorkflowFilter(status="running")))[0] == 1
    assert queries(store, store.count_by_status)[0] == 1
    assert queries(store, lambda: store.history("wf-03", after=0, limit=5))[0] == 1
    assert queries(store, lambda: store.load("wf-03", with_history=False))[0] == 2
    assert queries(store, lambda: store.due(at(100)))[0] == 1
