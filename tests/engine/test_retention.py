"""The executor's retention: ``purge``, ``count_purgeable`` and the sweep's ``apply_retention``."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from beluga_workflows.engine.executor import WorkflowExecutor
from beluga_workflows.errors import InvalidInputError, StoreError
from beluga_workflows.stores.base import WorkflowStore
from beluga_workflows.stores.memory import MemoryStore

from ..stores.test_contract import T0
from ..stores.test_retention import ended_at

DAY = timedelta(days=1)


@pytest.fixture
def store():
    store = MemoryStore()
    for i in range(7):
        store.create(ended_at(f"old-{i}", T0 - (10 + i) * DAY))
    store.create(ended_at("young", T0 - DAY))
    return store


def test_purge_deletes_in_batches_up_to_the_limit_oldest_first(store):
    calls = []
    purge_ended = store.purge_ended
    store.purge_ended = lambda before, *, limit: calls.append(limit) or purge_ended(
        before, limit=limit)
    executor = WorkflowExecutor(store=store)
    assert executor.count_purgeable("5d", now=T0) == 7
    assert executor.purge("5d", now=T0, limit=5, batch=2) == ["old-6", "old-5", "old-4", "old-3",
                                                              "old-2"]
    assert calls == [2, 2, 1]
    assert executor.purge(timedelta(days=5), now=T0, batch=2) == ["old-1", "old-0"]
    assert calls[3:] == [2, 2]  # the second call found fewer than it asked for: done
    assert [s.workflow_id for s in store.list()] == ["young"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "no retention: give older_than"),
    ({"older_than": "5 days"}, "older_than '5 days' is not a duration"),
    ({"older_than": 0}, "older_than must be a positive duration"),
    ({"older_than": "1d", "batch": 0}, "batch must be a whole number"),
])
def test_bad_input_is_refused_before_anything_is_deleted(store, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        WorkflowExecutor(store=store).purge(now=T0, **kwargs)
    assert store.count() == 8


def test_purge_and_count_pass_the_status_and_type_to_the_store(store):
    from beluga_workflows.types import WorkflowStatus

    store.create(ended_at("failed-old", T0 - 20 * DAY, WorkflowStatus.FAILED,
                          workflow_type="orders.process"))
    store.create(ended_at("failed-mail", T0 - 20 * DAY, WorkflowStatus.FAILED,
                          workflow_type="mail.send"))
    calls = []
    purge_ended = store.purge_ended
    store.purge_ended = lambda before, **kw: calls.append(kw) or purge_ended(before, **kw)
    executor = WorkflowExecutor(store=store)
    assert executor.count_purgeable("5d", now=T0, status="failed") == 2
    assert executor.count_purgeable("5d", now=T0, workflow_type="orders.process") == 1
    assert executor.purge("5d", now=T0, status="failed", workflow_type="orders.process",
                          batch=3) == ["failed-old"]
    assert calls == [{"limit": 3, "status": WorkflowStatus.FAILED,
                      "workflow_type": "orders.process"}]
    assert store.load("failed-mail") is not None  # another type: kept
    assert executor.purge("5d", now=T0, batch=3, limit=1) == ["failed-mail"]  # the oldest
    assert calls[1] == {"limit": 1}  # no filter: the store is called as it always was


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"status": "running"}, "status 'running' is not an ended status"),
    ({"status": "lost"}, r"status 'lost' is not an ended status \(one of completed, failed"),
    ({"workflow_type": 3}, "workflow_type must be a string"),
])
def test_a_bad_filter_is_refused_before_the_store_is_called(store, kwargs, message):
    def untouchable(*args, **kw):
        raise AssertionError("the store was called")

    store.purge_ended = store.count_ended = untouchable
    executor = WorkflowExecutor(store=store)
    for call in (executor.purge, executor.count_purgeable):
        with pytest.raises(InvalidInputError, match=message):
            call("5d", now=T0, **kwargs)


def test_the_sweep_purges_only_with_a_retention_and_at_most_its_limit(store):
    assert WorkflowExecutor(store=store).apply_retention(T0) == []
    executor = WorkflowExecutor(store=store, retention="5d")
    assert executor.apply_retention(T0, limit=3) == ["old-6", "old-5", "old-4"]
    executor.recover(T0)
    assert [s.workflow_id for s in store.list()] == ["young"]


def test_a_failing_retention_pass_is_logged_and_the_sweep_goes_on(store, caplog):
    def broken(before, *, limit):
        raise StoreError("the database is down")

    store.purge_ended = broken
    with caplog.at_level(logging.ERROR, logger="beluga_workflows.executor"):
        assert WorkflowExecutor(store=store, retention="5d").recover(T0) == []
    assert "retention pass failed" in caplog.text


class Unpurgeable(MemoryStore):
    """A store with the contract's defaults for retention (a third-party store, say)."""

    supports_purge = False
    purge_ended = WorkflowStore.purge_ended
    count_ended = WorkflowStore.count_ended


def test_a_store_that_cannot_purge_is_skipped_by_the_sweep_and_refuses_purge():
    store = Unpurgeable()
    store.create(ended_at("old", T0 - 10 * DAY))
    executor = WorkflowExecutor(store=store, retention="5d")
    assert executor.apply_retention(T0) == []
    for call in (executor.purge, executor.count_purgeable):
        with pytest.raises(StoreError, match="the memory workflow store cannot find ended runs"):
            call(now=T0)
    assert store.load("old") is not None
