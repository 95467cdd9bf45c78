"""Retention on every store (``purge_ended``, ``count_ended``), and the django store's batches.

The contract tests run through the ``store`` fixture on every backend; ``inngest``, which cannot
list runs, must refuse both with a ``StoreError`` naming the stores that can. The last tests are
the django store's: a run being written is skipped, and 10,000 ended runs go in bounded batches.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from beluga_workflows import models
from beluga_workflows.engine.executor import WorkflowExecutor
from beluga_workflows.errors import InvalidInputError, StoreError
from beluga_workflows.stores.django import DjangoStore
from beluga_workflows.stores.django.rows import event_row, run_row
from beluga_workflows.types import Signal, WorkflowFilter, WorkflowStatus

from .test_contract import T0, at, ended_run, event, new_run

DAY = timedelta(days=1)


def ended_at(workflow_id: str, when, status=WorkflowStatus.COMPLETED, **kw):
    """A run of ``workflow_id`` that ended at ``when`` (started an hour before)."""
    state = ended_run(workflow_id, status, created=when - timedelta(hours=1), **kw)
    state.ended_at = state.updated_at = when
    return state


def refuses(store) -> bool:
    """Whether ``store`` is documented as unable to purge (and checks that it says so)."""
    if store.supports_purge:
        return False
    for call in (lambda: store.purge_ended(T0), lambda: store.count_ended(T0)):
        with pytest.raises(StoreError, match="cannot find ended runs by end time.*django, memory"):
            call()
    return True


def test_purge_deletes_only_runs_ended_before_the_cutoff_oldest_first(store):
    store.create(ended_at("old-2", T0 - 2 * DAY, WorkflowStatus.FAILED))
    store.create(ended_at("old-3", T0 - 3 * DAY, WorkflowStatus.CANCELED))
    store.create(ended_at("old-1", T0 - 1 * DAY - timedelta(seconds=1), WorkflowStatus.TIMED_OUT))
    store.create(ended_at("at-cutoff", T0 - DAY))  # ended exactly at the cutoff: kept
    store.create(ended_at("recent", T0))
    store.create(new_run("open-old", created=T0 - 30 * DAY))  # open for a month: never purged
    if refuses(store):
        return
    cutoff = T0 - DAY
    assert store.count_ended(cutoff) == 3
    assert store.purge_ended(cutoff, limit=2) == ["old-3", "old-2"]
    assert store.count_ended(cutoff) == 1
    assert store.purge_ended(cutoff, limit=2) == ["old-1"]
    assert store.purge_ended(cutoff, limit=2) == []
    assert {s.workflow_id for s in store.list()} == {"at-cutoff", "recent", "open-old"}
    assert store.count_by_status() == {"running": 1, "completed": 2, "failed": 0,
                                       "canceled": 0, "timed_out": 0}
    assert store.count(WorkflowFilter(status=WorkflowStatus.FAILED)) == 0


def test_purge_never_deletes_an_open_run_however_old(store):
    old_open = new_run("open", created=T0 - 400 * DAY)
    old_open.ended_at = T0 - 300 * DAY  # an end time left on an open run changes nothing
    store.create(old_open)
    if refuses(store):
        return
    assert store.count_ended(T0) == 0
    assert store.purge_ended(T0, limit=10) == []
    assert store.load("open").status is WorkflowStatus.RUNNING


def test_purge_deletes_the_history_and_inbox_and_a_new_run_starts_clean(store):
    state = ended_at("wf-1", T0 - 2 * DAY)
    state.history += [event(2, when=T0 - 2 * DAY), event(3, when=T0 - 2 * DAY)]
    state.signals = [Signal(name="late", payload={"n": 1}, sent_at=T0 - 2 * DAY)]
    store.save(state)
    store.create(ended_at("wf-2", T0 - 2 * DAY))
    if refuses(store):
        return
    assert sorted(store.purge_ended(T0, limit=10)) == ["wf-1", "wf-2"]
    assert store.load("wf-1") is None
    assert store.history("wf-1") == []
    fresh = new_run("wf-1", created=T0)
    store.create(fresh)
    again = store.load("wf-1")
    assert [e.id for e in again.history] == [1] and again.signals == []
    if isinstance(store, DjangoStore):
        for model in (models.HistoryEvent, models.PendingSignal, models.EventWait):
            assert not model.objects.using(store.using).exclude(run_id=fresh.run_id).exists()


def test_purge_of_an_empty_store_or_with_no_limit_left_does_nothing(store):
    if refuses(store):
        return
    assert store.count_ended(T0) == 0
    assert store.purge_ended(T0, limit=500) == []
    store.create(ended_at("wf", T0 - DAY))
    assert store.purge_ended(T0, limit=0) == []
    assert store.load("wf") is not None


def test_a_run_without_an_end_time_is_kept(store):
    state = ended_at("no-end", T0 - DAY)
    state.ended_at = None
    store.save(state)
    if refuses(store):
        return
    assert store.purge_ended(T0, limit=10) == [] and store.load("no-end") is not None


def test_a_run_replaced_after_it_was_picked_is_kept(store):
    """A document store picks candidates, then reads each again: a run reopened in between
    (a new run of the id, or a resume) is not deleted."""
    store.create(ended_at("wf", T0 - 2 * DAY))
    if refuses(store) or not hasattr(store, "_ended"):
        return
    pick = store._ended

    def pick_then_replace(before, limit):
        picked = pick(before, limit)
        store.create(new_run("wf", created=T0))  # the ended run is replaced by an open one
        return picked

    store._ended = pick_then_replace
    assert store.purge_ended(T0, limit=10) == []
    assert store.load("wf").status is WorkflowStatus.RUNNING


# -- filters: one ended status, one workflow type ------------------------------------------------

def mixed_runs(store) -> None:
    """Ended runs of two types and three statuses, ended 2 to 7 days ago, and one young, one open."""
    F, C, X = WorkflowStatus.FAILED, WorkflowStatus.COMPLETED, WorkflowStatus.CANCELED
    for name, days, status, type_ in (("o-failed-7", 7, F, "orders.process"),
                                      ("o-done-6", 6, C, "orders.process"),
                                      ("o-failed-5", 5, F, "orders.process"),
                                      ("m-failed-4", 4, F, "mail.send"),
                                      ("m-canceled-3", 3, X, "mail.send"),
                                      ("o-failed-2", 2, F, "orders.process")):
        store.create(ended_at(name, T0 - days * DAY, status, workflow_type=type_))
    store.create(ended_at("o-failed-young", T0, F, workflow_type="orders.process"))
    store.create(new_run("o-open", created=T0 - 30 * DAY, workflow_type="orders.process"))


def test_counts_are_narrowed_by_status_and_type(store):
    mixed_runs(store)
    if refuses(store):
        return
    cutoff = T0 - DAY
    assert store.count_ended(cutoff) == 6
    assert store.count_ended(cutoff, status=WorkflowStatus.FAILED) == 4
    assert store.count_ended(cutoff, status="canceled") == 1
    assert store.count_ended(cutoff, status="timed_out") == 0
    assert store.count_ended(cutoff, workflow_type="orders.process") == 4
    assert store.count_ended(cutoff, status="failed", workflow_type="orders.process") == 3
    assert store.count_ended(cutoff, status="failed", workflow_type="nope") == 0
    assert store.count_ended(cutoff, status=None, workflow_type=None) == 6


def test_purge_deletes_only_runs_of_the_status_and_type_oldest_first(store):
    mixed_runs(store)
    if refuses(store):
        return
    cutoff = T0 - DAY
    assert store.purge_ended(cutoff, limit=2, status="failed",
                             workflow_type="orders.process") == ["o-failed-7", "o-failed-5"]
    assert store.purge_ended(cutoff, limit=2, status=WorkflowStatus.FAILED,
                             workflow_type="orders.process") == ["o-failed-2"]
    assert store.purge_ended(cutoff, limit=2, status="failed", workflow_type="orders.process") == []
    assert store.purge_ended(cutoff, limit=10, workflow_type="mail.send") == ["m-failed-4",
                                                                             "m-canceled-3"]
    assert store.purge_ended(cutoff, limit=10, status="completed") == ["o-done-6"]
    assert {s.workflow_id for s in store.list()} == {"o-failed-young", "o-open"}


@pytest.mark.parametrize("status", ["running", WorkflowStatus.RUNNING, "done", "FAILED", ""])
def test_a_status_that_is_not_an_ended_one_is_refused_before_anything_is_read(store, status):
    mixed_runs(store)
    if refuses(store):
        return
    allowed = "one of completed, failed, canceled, timed_out"
    for call in (lambda: store.purge_ended(T0, limit=10, status=status),
                 lambda: store.count_ended(T0, status=status)):
        with pytest.raises(InvalidInputError, match=allowed):
            call()
    with pytest.raises(InvalidInputError, match="workflow_type must be a string"):
        store.purge_ended(T0, workflow_type=7)
    assert store.count() == 8


def test_a_run_that_no_longer_matches_the_filter_when_deleted_is_kept(store):
    """A document store checks the filters again on the fresh read: a failed run replaced by a
    completed one after it was picked is not deleted by a purge of failed runs."""
    store.create(ended_at("wf", T0 - 2 * DAY, WorkflowStatus.FAILED))
    if refuses(store) or not hasattr(store, "_ended"):
        return
    pick = store._ended

    def pick_then_replace(before, limit, **filters):
        picked = pick(before, limit, **filters)
        store.save(ended_at("wf", T0 - 2 * DAY))  # now completed
        return picked

    store._ended = pick_then_replace
    assert store.purge_ended(T0, limit=10, status="failed") == []
    assert store.load("wf").status is WorkflowStatus.COMPLETED


# -- the django store ------------------------------------------------------------------------------

# PostgreSQL only: the ``store`` fixture with just that param.
on_postgres = pytest.mark.parametrize(
    "store", [pytest.param("django-postgres", marks=pytest.mark.postgres)], indirect=True)


@on_postgres
def test_a_run_a_worker_holds_is_skipped_and_kept_once_it_reopens(store):
    """PostgreSQL: the batch's SELECT locks its rows with SKIP LOCKED, so a run another
    transaction is writing (here: reopening it) is left alone, and once reopened never goes."""
    old = ended_at("busy", T0 - 2 * DAY)
    store.create(old)
    store.create(ended_at("idle", T0 - 2 * DAY))
    locked, release = threading.Event(), threading.Event()

    def reopen() -> None:
        try:
            with transaction.atomic(using=store.using):
                models.WorkflowState.objects.using(store.using).filter(pk=old.run_id).update(
                    status="running", ended_at=None)
                locked.set()
                release.wait(10)
        finally:
            connections[store.using].close()

    worker = threading.Thread(target=reopen)
    worker.start()
    assert locked.wait(10)
    try:
        assert store.purge_ended(T0, limit=10) == ["idle"]
    finally:
        release.set()
        worker.join(10)
    assert store.purge_ended(T0, limit=10) == []
    assert store.load("busy").status is WorkflowStatus.RUNNING


@on_postgres
def test_the_purge_statement_is_served_by_the_ended_index(store):
    from beluga_workflows.stores.django.postgres_retention import purge_text

    bulk_runs(store.using, 2_000, prefix="old", when=NOW - RETENTION - DAY)
    bulk_runs(store.using, 200, prefix="open", when=NOW, status="running")
    with connections[store.using].cursor() as cursor:
        cursor.execute("ANALYZE beluga_workflows_workflowstate")
        cursor.execute("EXPLAIN " + purge_text(connections[store.using].ops.quote_name),
                       {"before": NOW - RETENTION, "limit": 500})
        plan = "\n".join(row for row, in cursor.fetchall())
    assert "beluga_wf_ended_idx" in plan, plan


def multiply_runs(using: str, times: int) -> None:
    """Copy every run row ``times`` times (new ids, no history): a large table, quickly."""
    columns = [f.column for f in models.WorkflowState._meta.concrete_fields]
    copied = ", ".join(f"md5({c} || g::text)" if c in ("run_id", "workflow_id") else c
                       for c in columns)
    with connections[using].cursor() as cursor:
        cursor.execute(f"INSERT INTO beluga_workflows_workflowstate ({', '.join(columns)}) "
                       f"SELECT {copied} FROM beluga_workflows_workflowstate, "
                       f"generate_series(1, %s) g", [times])


@on_postgres
def test_the_filtered_purge_is_one_bounded_statement_without_a_seq_scan(store):
    """With a status and/or a type the batch stays one statement with its LIMIT and SKIP LOCKED;
    on a large table PostgreSQL picks through ``beluga_wf_ended_idx`` (the filters checked on the
    rows it walks) and deletes by primary key: the runs table is never read whole."""
    from beluga_workflows.stores.django.postgres_retention import purge_text

    bulk_runs(store.using, 2_000, prefix="old", when=NOW - RETENTION - DAY, events=1)
    bulk_runs(store.using, 300, prefix="failed", when=NOW - RETENTION - DAY, status="failed",
              events=1)
    bulk_runs(store.using, 500, prefix="open", when=NOW, status="running", events=1)
    multiply_runs(store.using, 49)  # 140,000 runs
    quote_name = connections[store.using].ops.quote_name
    cases = [{"status": "failed"}, {"workflow_type": "tests.flow"},
             {"status": "completed", "workflow_type": "tests.flow"}]
    with connections[store.using].cursor() as cursor:
        cursor.execute("ANALYZE beluga_workflows_workflowstate")
        for filters in cases:
            text = purge_text(quote_name, status="status" in filters,
                              workflow_type="workflow_type" in filters)
            assert text.count("LIMIT %(limit)s FOR UPDATE SKIP LOCKED") == 1
            for name in filters:  # in the pick and again in the delete
                assert text.count(f"%({name})s") == 2
            cursor.execute("EXPLAIN " + text, {"before": NOW - RETENTION, "limit": 500,
                                               **filters})
            plan = "\n".join(row for row, in cursor.fetchall())
            assert "beluga_wf_ended_idx" in plan, plan
            assert "Seq Scan on beluga_workflows_workflowstate" not in plan, plan
    for filters in cases:
        with CaptureQueriesContext(connections[store.using]) as captured:
            gone = store.purge_ended(NOW - RETENTION, limit=500, **filters)
        assert len(gone) == 500 and len(captured.captured_queries) == 1
    runs = models.WorkflowState.objects.using(store.using)
    assert runs.filter(status="failed").count() == 300 * 50 - 500
    assert runs.filter(status="running").count() == 500 * 50


# -- 10,000 ended runs ------------------------------------------------------------------------------

RETENTION = timedelta(days=30)
NOW = T0
_ID = re.compile(r"'[0-9a-f]{32}'")


def bulk_runs(using: str, n: int, *, prefix: str, when, status="completed", events: int = 2):
    """Insert ``n`` runs straight through the models (fast): each ended at ``when`` with
    ``events`` history events and one unconsumed signal (``status="running"``: open ones)."""
    runs, history, inbox = [], [], []
    for i in range(n):
        state = (new_run(f"{prefix}-{i:05d}", created=when - timedelta(hours=1))
                 if status == "running" else ended_at(f"{prefix}-{i:05d}", when - timedelta(
                     microseconds=i), WorkflowStatus(status)))
        state.run_id = uuid.uuid4().hex
        state.wake_at = None  # open ones wait for a signal: the sweep has nothing to run
        runs.append(run_row(state, 1))
        history += [event_row(state.run_id, e) for e in state.history]
        history += [event_row(state.run_id, event(seq, when=when)) for seq in range(2, events + 1)]
        inbox.append(models.PendingSignal(run_id=state.run_id, name="late", payload=None,
                                          sent_at=when))
    models.WorkflowState.objects.using(using).bulk_create(runs, batch_size=2000)
    models.HistoryEvent.objects.using(using).bulk_create(history, batch_size=5000)
    models.PendingSignal.objects.using(using).bulk_create(inbox, batch_size=5000)


@on_postgres
def test_the_sweep_deletes_10000_old_runs_in_bounded_batches_and_keeps_the_rest(store):
    using = store.using
    bulk_runs(using, 10_000, prefix="old", when=NOW - RETENTION - DAY)
    bulk_runs(using, 100, prefix="new", when=NOW - RETENTION + DAY, status="failed")
    bulk_runs(using, 50, prefix="open-old", when=NOW - 10 * RETENTION, status="running")
    bulk_runs(using, 50, prefix="open", when=NOW, status="running")
    executor = WorkflowExecutor(store=store, retention=RETENTION)
    runs = models.WorkflowState.objects.using(using)

    batches = []
    purge_ended = store.purge_ended

    def recording(before, *, limit):
        batches.append(len(purge_ended(before, limit=limit)))
        return [None] * batches[-1]

    store.purge_ended = recording
    sweeps, started = 0, time.monotonic()
    with CaptureQueriesContext(connections[using]) as captured:
        while store.count_ended(NOW - RETENTION):
            executor.recover(NOW)
            sweeps += 1
            assert sweeps <= 10
    took = time.monotonic() - started
    assert sweeps == 10  # 1,000 runs per sweep, in batches of 500
    assert batches == [500] * 20

    statements = [q["sql"] for q in captured.captured_queries]
    deletes = [sql for sql in statements if "DELETE FROM" in sql]
    assert len(deletes) == 20  # one statement per batch, bounded by its LIMIT
    assert all("LIMIT 500 FOR UPDATE SKIP LOCKED" in sql for sql in deletes)
    print(f"\n10,000 runs (20,000 events, 10,000 signals) deleted by {sweeps} sweeps in "
          f"{took:.2f} s, {len(deletes)} DELETE statements; {len(statements)} statements in all")

    assert runs.count() == 200
    assert set(runs.values_list("status", flat=True)) == {"failed", "running"}
    assert runs.filter(status="running").count() == 100
    assert runs.filter(workflow_id__startswith="new-").count() == 100
    kept = set(runs.values_list("run_id", flat=True))
    assert set(models.HistoryEvent.objects.using(using).values_list("run_id", flat=True)) == kept
    assert set(models.PendingSignal.objects.using(using).values_list("run_id", flat=True)) == kept
    assert executor.recover(NOW) == [] and runs.count() == 200  # nothing left: nothing goes


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_each_statement_of_a_batch_names_at_most_the_batch():
    store = DjangoStore()
    bulk_runs("default", 1_200, prefix="old", when=NOW - RETENTION - DAY)
    bulk_runs("default", 10, prefix="new", when=NOW)
    with CaptureQueriesContext(connections["default"]) as captured:
        gone = WorkflowExecutor(store=store).purge(RETENTION, now=NOW, batch=500)
    assert len(gone) == 1_200 and gone == sorted(gone, reverse=True)  # oldest end first
    deletes = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("DELETE")]
    assert deletes and max(len(_ID.findall(sql)) for sql in deletes) <= 500
    assert models.WorkflowState.objects.count() == 10
    assert models.HistoryEvent.objects.count() == models.PendingSignal.objects.count() * 2 == 20


def test_the_sweep_works_off_a_backlog_on_the_memory_store_too():
    from beluga_workflows.stores.memory import MemoryStore

    store = MemoryStore()
    for i in range(1_500):
        store.create(ended_at(f"old-{i:04d}", NOW - RETENTION - timedelta(seconds=1 + i)))
    for i in range(20):
        store.create(ended_at(f"new-{i}", NOW - RETENTION + timedelta(seconds=1 + i)))
        waiting = new_run(f"open-{i}", created=NOW - 3 * RETENTION)
        waiting.wake_at = None  # waits for a signal: the sweep has nothing to run
        store.create(waiting)
    executor = WorkflowExecutor(store=store, retention=RETENTION)
    executor.recover(NOW)
    assert store.count_ended(NOW - RETENTION) == 500
    executor.recover(NOW)
    assert store.count() == 40
    assert store.count(WorkflowFilter(status=WorkflowStatus.RUNNING)) == 20
    assert all(s.workflow_id.startswith(("new-", "open-")) for s in store.list())


def test_without_retention_the_sweep_deletes_nothing():
    from beluga_workflows.stores.memory import MemoryStore

    store = MemoryStore()
    store.create(ended_at("ancient", at(-10**8)))
    WorkflowExecutor(store=store).recover(NOW)
    assert store.load("ancient") is not None


def test_a_document_is_removed_only_at_the_revision_read(store):
    """The primitive retention stands on (document stores): a write after the read wins."""
    from beluga_workflows.stores.document import DocumentStore

    if not isinstance(store, DocumentStore) or not store.supports_purge:
        return
    store.create(ended_at("wf", T0 - DAY))
    _, stale = store._read("wf")
    store.save(ended_at("wf", T0 - DAY))  # another writer: a new revision
    assert store._remove_at("wf", stale) is False
    assert store.load("wf") is not None
    _, current = store._read("wf")
    assert store._remove_at("wf", current) is True
    assert store.load("wf") is None and store.list() == [] and store.count_ended(T0) == 0
