"""Cron schedules (API.md §10): runs started on a timetable, one per tick, from a database table.

The ``Cron`` value and its ticks are the engine's (``beluga_workflows.engine.schedules``); this
package keeps schedules in the ``Schedule`` table and fires them:

- ``rows``: which database holds the table (the store's), reading rows;
- ``declared``: the schedules declared with ``@workflow(schedule=...)``, synced into the table at
  every sweep (a declaration removed from the code marks its row, which stops firing);
- ``firing``: ``fire_schedules(executor, now)``, the sweep's pass (each tick starts exactly one
  run: a compare-and-set on the row in the transaction that stores the run), catch-up, overlap
  and "trigger now";
- ``changes``: making, editing, pausing, resuming and deleting schedules (the admin, the API);
- ``celery``: under the Celery runtime, a countdown message per next tick, so frequent
  schedules fire on time between sweeps (imported by ``beluga_workflows.tasks``).
"""

from .changes import (
    EDITABLE_FIELDS,
    InvalidScheduleError,
    check_fields,
    check_schedule_id,
    create_schedule,
    delete_schedule,
    pause_schedule,
    resume_schedule,
    update_schedule,
)
from .declared import SyncResult, declared_id, declared_schedules, sync_declared_schedules
from .firing import (
    MAX_TICKS_PER_CALL,
    TickOutcome,
    fire_schedules,
    misfire_grace,
    scheduled_time,
    tick_workflow_id,
    trigger_schedule,
)
from .rows import (
    ScheduleNotFoundError,
    cron_of,
    get_schedule,
    schedule_rows,
    schedule_state,
    schedules_database,
)

__all__ = [
    "EDITABLE_FIELDS",
    "MAX_TICKS_PER_CALL",
    "InvalidScheduleError",
    "ScheduleNotFoundError",
    "SyncResult",
    "TickOutcome",
    "check_fields",
    "check_schedule_id",
    "create_schedule",
    "cron_of",
    "declared_id",
    "declared_schedules",
    "delete_schedule",
    "fire_schedules",
    "get_schedule",
    "misfire_grace",
    "pause_schedule",
    "resume_schedule",
    "schedule_rows",
    "schedule_state",
    "schedules_database",
    "scheduled_time",
    "sync_declared_schedules",
    "tick_workflow_id",
    "trigger_schedule",
    "update_schedule",
]
