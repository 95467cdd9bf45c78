"""Migrations that move data: run backwards and forwards on real databases."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

APP = "beluga_workflows"
BEFORE, AFTER = (APP, "0006_parallel_event_types"), (APP, "0007_parent_id")
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def migrate(alias: str, target: tuple[str, str]):
    """Migrate ``alias``'s database to ``target``; the models as they are there."""
    executor = MigrationExecutor(connections[alias])
    executor.migrate([target])
    executor.loader.build_graph()
    return executor.loader.project_state([target]).apps


@pytest.mark.parametrize("alias", [
    pytest.param(alias, marks=pytest.mark.django_db(transaction=True, databases=[alias]))
    for alias in ("default", "postgres")])
def test_0007_links_the_child_runs_started_before_it_to_their_parents(alias):
    apps = migrate(alias, BEFORE)
    try:
        runs = apps.get_model(APP, "WorkflowState").objects.using(alias)
        events = apps.get_model(APP, "HistoryEvent").objects.using(alias)
        for n, (workflow_id, parent) in enumerate([("order-1", ""), ("order-1/2", "order-1"),
                                                    ("order-1/3", "order-1"), ("other", "")]):
            run = runs.create(run_id=f"r{n}", workflow_id=workflow_id, workflow_type="t",
                              created_at=T0, updated_at=T0)
            events.create(run=run, seq=1, type="workflow_started", timestamp=T0,
                          activity_name="t", signal_name=parent,
                          signal_payload={"workflow_id": parent, "run_id": "r0", "op": n}
                          if parent else None)
            # A later event naming a signal is not a parent link.
            events.create(run=run, seq=2, type="signal_received", timestamp=T0,
                          signal_name="approval")
        apps = migrate(alias, AFTER)
        linked = dict(apps.get_model(APP, "WorkflowState").objects.using(alias)
                      .values_list("workflow_id", "parent_id"))
        assert linked == {"order-1": "", "order-1/2": "order-1", "order-1/3": "order-1",
                          "other": ""}
    finally:
        executor = MigrationExecutor(connections[alias])
        executor.migrate(executor.loader.graph.leaf_nodes(APP))
