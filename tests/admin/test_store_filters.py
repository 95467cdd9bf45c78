"""The store listing the admin relies on, on every store: id-prefix search and wait-kind filter."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from beluga_workflows import WorkflowFilter, WorkflowStatus

from .support import seed


def ids(store, **filter) -> list[str]:
    return [s.workflow_id for s in store.list(WorkflowFilter(**filter))]


def test_workflow_id_prefix(store):
    base = timezone.now() - timedelta(days=1)
    seed(store, 3, prefix="order", start=base)
    seed(store, 2, prefix="orders/2024", status=WorkflowStatus.COMPLETED,
         start=base + timedelta(hours=1))
    seed(store, 1, prefix="invoice", start=base + timedelta(hours=2))
    assert ids(store, workflow_id_prefix="order-") == ["order-00002", "order-00001", "order-00000"]
    assert ids(store, workflow_id_prefix="orders/") == ["orders/2024-00001", "orders/2024-00000"]
    assert ids(store, workflow_id_prefix="order-00001") == ["order-00001"]   # exact id
    assert ids(store, workflow_id_prefix="Order") == []                       # case-sensitive
    assert ids(store, workflow_id_prefix="rder") == []                        # a prefix only
    assert ids(store, workflow_id_prefix="order%") == []                      # no wildcards
    assert ids(store, workflow_id_prefix="order_") == []
    assert ids(store, workflow_id_prefix="order", status="completed") == [
        "orders/2024-00001", "orders/2024-00000"]
    assert ids(store, workflow_id_prefix="order", limit=2, offset=1) == [
        "orders/2024-00000", "order-00002"]
    assert store.count(WorkflowFilter(workflow_id_prefix="order")) == 5
    assert store.count(WorkflowFilter(workflow_id_prefix="order-", limit=1)) == 3


def test_wait_kind(store):
    seed(store, 2, prefix="human", wait_kind="human")
    seed(store, 1, prefix="signal", wait_kind="signal")
    seed(store, 1, prefix="idle")
    seed(store, 1, prefix="ended", status=WorkflowStatus.COMPLETED)
    assert sorted(ids(store, wait_kind="human")) == ["human-00000", "human-00001"]
    assert ids(store, wait_kind="signal") == ["signal-00000"]
    assert ids(store, wait_kind="human", status="completed") == []
    assert store.count(WorkflowFilter(status=WorkflowStatus.RUNNING, wait_kind="human")) == 2
    assert len(ids(store)) == 5
