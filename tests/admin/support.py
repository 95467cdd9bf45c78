"""Helpers of the admin tests: seeding runs straight into a store, admin URLs."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from beluga_workflows import EventType, HistoryEvent, WorkflowState, WorkflowStatus


def url(name: str, workflow_id: str | None = None) -> str:
    """The admin URL ``name`` (changelist, add, change, signal, cancel, answer, human_tasks)."""
    args = () if workflow_id is None else (quote(workflow_id),)
    return reverse(f"admin:beluga_workflows_workflowstate_{name}", args=args)


def seed(store, count: int, *, prefix: str = "seed", status: WorkflowStatus = WorkflowStatus.RUNNING,
         workflow_type: str = "admin_tests.hello", start=None, wait_kind: str = "") -> list[str]:
    """Put ``count`` runs straight into ``store`` (no worker will pick them up); return their ids.

    Run ``i`` starts ``i`` seconds after ``start``, so later ids are newer.
    """
    start = start or timezone.now() - timedelta(days=1)
    ids = []
    for i in range(count):
        at = start + timedelta(seconds=i)
        state = WorkflowState(
            workflow_id=f"{prefix}-{i:05d}", run_id=uuid.uuid4().hex, workflow_type=workflow_type,
            status=status, input={"n": i}, created_at=at, updated_at=at,
            ended_at=None if status is WorkflowStatus.RUNNING else at + timedelta(seconds=2),
            wait_kind=wait_kind, wait_name="go" if wait_kind else "",
            history=[HistoryEvent(id=1, type=EventType.WORKFLOW_STARTED, timestamp=at,
                                  activity_name=workflow_type, input={"n": i})],
        )
        if status is WorkflowStatus.RUNNING:
            store.create(state)
        else:
            store.save(state)
        ids.append(state.workflow_id)
    return ids
