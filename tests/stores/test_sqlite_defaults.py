"""The django store on Django's default SQLite entry: no ``transaction_mode``, no WAL, the default
timeout (the ``plain_file`` alias of the test settings), as a site that adds the app has it.

Before, a signal sent while the run's thread checkpointed failed at once with "database is
locked" (a deferred transaction cannot upgrade its lock). Now every write takes the lock up front
and a busy database is waited for, then retried, before it is an error.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from beluga_workflows import Signal, StoreError, WorkflowOptions, activity, workflow
from beluga_workflows.runtimes.local import LocalExecutor
from beluga_workflows.stores.django import DjangoStore
from beluga_workflows.stores.django.sqlite import SqliteDjangoStore

SENDERS = 4
PER_SENDER = 50


@activity(name="tests.sqlite_defaults.touch")
def touch(n: int) -> int:
    return n


@workflow(name="tests.sqlite_defaults.collect")
def collect(ctx, count: int) -> list:
    """Receives ``count`` signals, with a checkpoint (an activity) after each."""
    received = []
    for _ in range(count):
        received.append(ctx.receive_signal("item"))
        ctx.execute_activity(touch, len(received))
    return received


@pytest.fixture(scope="module")
def plain_database(django_db_blocker):
    """The ``plain_file`` database, migrated; removed (with its journal files) afterwards."""
    from django.core.management import call_command
    from django.db import connections

    path = Path(connections["plain_file"].settings_dict["NAME"])
    with django_db_blocker.unblock():
        call_command("migrate", database="plain_file", verbosity=0)
        yield "plain_file"
        connections["plain_file"].close()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def plain_store(plain_database, django_db_blocker):
    from django.apps import apps
    from django.db import connections

    with django_db_blocker.unblock():
        with connections[plain_database].cursor() as cursor:
            for model in apps.get_app_config("beluga_workflows").get_models():
                cursor.execute(f"DELETE FROM {model._meta.db_table}")
        yield DjangoStore(using=plain_database)


def test_the_plain_entry_really_is_django_s_default(plain_store):
    from django.db import connections

    connection = connections[plain_store.using]
    assert connection.settings_dict.get("OPTIONS", {}) == {}
    assert connection.transaction_mode is None
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "delete"
    assert isinstance(plain_store, SqliteDjangoStore)


def test_200_signals_from_4_threads_racing_the_checkpoints_arrive_in_order_once(plain_store):
    executor = LocalExecutor(store=plain_store, max_workers=4, sweep_interval=0.05)
    try:
        handle = executor.execute(collect, WorkflowOptions(id="racing", input=SENDERS * PER_SENDER))
        start = threading.Barrier(SENDERS)
        errors: list[BaseException] = []

        def send(sender: int) -> None:
            start.wait()
            try:
                for k in range(PER_SENDER):
                    executor.signal("racing", Signal(name="item", payload={"s": sender, "k": k}))
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        received = handle.result(timeout=120)
    finally:
        executor.close()
    assert len(received) == SENDERS * PER_SENDER
    assert len({(r["s"], r["k"]) for r in received}) == len(received)  # none twice
    for sender in range(SENDERS):  # FIFO per sender
        assert [r["k"] for r in received if r["s"] == sender] == list(range(PER_SENDER))
    assert plain_store.load("racing").signals == []


def test_a_write_waits_for_a_lock_held_elsewhere_then_goes_through(plain_store):
    executor = LocalExecutor(store=plain_store, max_workers=1)
    try:
        handle = executor.execute(collect, WorkflowOptions(id="waits", input=1))
        deadline = time.monotonic() + 30
        while plain_store.load("waits", with_history=False).wait_kind != "signal":
            assert time.monotonic() < deadline, "the run never waited for its signal"
            time.sleep(0.01)
        other = sqlite3.connect(plain_store_path(plain_store), isolation_level=None,
                                check_same_thread=False)
        other.execute("BEGIN EXCLUSIVE")  # another process writing, for 0.5 s
        threading.Timer(0.5, other.rollback).start()
        started = time.monotonic()
        executor.signal("waits", Signal(name="item", payload="late"))
        assert time.monotonic() - started >= 0.4
        assert handle.result(timeout=30) == ["late"]
        other.close()
    finally:
        executor.close()


def test_a_lock_held_past_the_retries_is_a_store_error_that_changed_nothing(plain_store):
    executor = LocalExecutor(store=plain_store, max_workers=1)
    try:
        executor.execute(collect, WorkflowOptions(id="held", input=1))
        deadline = time.monotonic() + 30
        while plain_store.load("held", with_history=False).wait_kind != "signal":
            assert time.monotonic() < deadline, "the run never waited for its signal"
            time.sleep(0.01)
        plain_store.busy_retry_seconds = 0.2
        other = sqlite3.connect(plain_store_path(plain_store), isolation_level=None,
                                check_same_thread=False)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match="database is locked"):
                plain_store.add_signal("held", Signal(name="item", payload="lost"),
                                       executor.clock.now())
        finally:
            other.rollback()
            other.close()
        assert plain_store.load("held").signals == []
    finally:
        executor.close()


@pytest.mark.parametrize(("executor", "warned"), [("celery", True), ("local", False)])
def test_check_warns_about_sqlite_without_wal_under_several_processes(plain_database, settings,
                                                                   executor, warned):
    from beluga_workflows.checks import check_settings

    settings.BELUGA_WORKFLOWS = {"STORE": {"BACKEND": "django", "OPTIONS": {"using": plain_database}},
                                 "EXECUTOR": {"BACKEND": executor, "OPTIONS": {}}}
    found = {m.id: m for m in check_settings()}
    assert ("beluga_workflows.W003" in found) is warned
    if warned:
        message = found["beluga_workflows.W003"]
        assert "journal mode 'delete', not 'wal'" in message.msg
        assert "PRAGMA journal_mode=WAL" in message.hint


@pytest.mark.django_db
def test_check_is_quiet_about_the_example_project_s_wal_database(settings):
    from beluga_workflows.checks import check_settings

    settings.BELUGA_WORKFLOWS = {"STORE": {"BACKEND": "django", "OPTIONS": {"using": "default"}},
                                 "EXECUTOR": {"BACKEND": "celery", "OPTIONS": {}}}
    assert "beluga_workflows.W003" not in {m.id for m in check_settings()}


def plain_store_path(store: DjangoStore) -> str:
    from django.db import connections

    return connections[store.using].settings_dict["NAME"]
