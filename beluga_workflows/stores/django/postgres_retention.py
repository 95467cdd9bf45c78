"""Retention on PostgreSQL: one batch of ``purge_ended`` as one statement.

A data-modifying CTE picks the oldest ended runs (``LIMIT``, on the ``beluga_wf_ended_idx``
index) and locks them (``FOR UPDATE SKIP LOCKED``: a run a worker is writing is left for the next
pass), deletes those run rows under the same condition again (``NOT status = 'running' AND
ended_at < before``, and the filters' ``status = ...``/``workflow_type = ...`` when given,
re-evaluated by PostgreSQL on the row it deletes), deletes the rows of every
table that cascades from a run (events, inbox, event waits, slots, waiters) for the runs it
deleted, and returns their workflow ids oldest first. The statement touches at most ``limit``
runs.
"""

from __future__ import annotations

from typing import Any

from django.db import models as db_models

from ... import models

__all__ = ["purge_text"]


def _cascading() -> list[tuple[str, str]] | None:
    """(table, run column) of each model whose rows go with their run; ``None`` when a relation
    is not a plain cascade (another ``on_delete``, or rows that cascade further): the ORM's
    collector must then do it."""
    tables = []
    for relation in models.WorkflowState._meta.related_objects:
        related = relation.related_model._meta
        if relation.on_delete is not db_models.CASCADE or related.related_objects:
            return None
        tables.append((related.db_table, relation.field.column))
    return tables


def purge_text(quote_name: Any, *, status: bool = False, workflow_type: bool = False
               ) -> str | None:
    """The statement of one batch (parameters ``before``, ``limit``, and ``status`` /
    ``workflow_type`` when those filters are asked for), or ``None`` when the relations of a run
    need the ORM's collector. ``quote_name``: the connection's."""
    cascading = _cascading()
    if cascading is None:
        return None
    runs = quote_name(models.WorkflowState._meta.db_table)
    children = "".join(
        f",\n c{n} AS (DELETE FROM {quote_name(table)} "
        f"WHERE {quote_name(column)} IN (SELECT run_id FROM gone))"
        for n, (table, column) in enumerate(cascading))
    ended = "NOT (r.status = 'running') AND r.ended_at < %(before)s"
    if status:
        ended += " AND r.status = %(status)s"
    if workflow_type:
        ended += " AND r.workflow_type = %(workflow_type)s"
    return (
        f"WITH picked AS (SELECT r.run_id FROM {runs} r WHERE {ended} "
        f"ORDER BY r.ended_at, r.run_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED),\n"
        f" gone AS (DELETE FROM {runs} r USING picked p WHERE r.run_id = p.run_id AND {ended} "
        f"RETURNING r.run_id, r.workflow_id, r.ended_at){children}\n"
        f"SELECT workflow_id FROM gone ORDER BY ended_at, run_id")
