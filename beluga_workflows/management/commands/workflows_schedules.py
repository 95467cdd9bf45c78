"""``manage.py workflows_schedules``: the schedules, as a table or JSON lines."""

from __future__ import annotations

from datetime import timezone
from typing import Any

from beluga_workflows.management.base import WorkflowCommand
from beluga_workflows.management.presentation import schedule_json

COLUMNS = ("ID", "WORKFLOW", "CRON", "TIME ZONE", "OVERLAP", "STATE", "NEXT FIRE (UTC)",
           "LAST FIRE (UTC)", "LAST OUTCOME")


class Command(WorkflowCommand):
    """``workflows_schedules``: every schedule by id, as a table or JSON lines."""
    help = (
        "List the cron schedules (those declared in code with @workflow(schedule=...) are first "
        "synced into the table), by id: an aligned table, or with --json one JSON object per "
        "line with the same fields as the REST API's GET /schedules/."
    )

    def add_arguments(self, parser):
        """Take ``--json``."""
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print one JSON object per schedule, one per line.")

    def handle(self, *args, as_json, **options):
        """Print the schedules (a table, or one JSON object per line), or "No schedules.".

        Exits non-zero when the database cannot be read.
        """
        from beluga_workflows.schedules import schedule_rows, sync_declared_schedules

        executor = self.executor
        sync_declared_schedules(executor.store, executor.clock.now())
        rows = list(schedule_rows(executor.store))
        if as_json:
            for row in rows:
                self.stdout.write(self.dumps(schedule_json(row)))
            return
        if not rows:
            self.stdout.write("No schedules.")
            return
        cells = [self.row(row) for row in rows]
        widths = [max(len(COLUMNS[i]), *(len(c[i]) for c in cells)) for i in range(len(COLUMNS))]

        def line(values: tuple[str, ...]) -> str:
            return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

        self.stdout.write(self.style.MIGRATE_HEADING(line(COLUMNS)))
        for values in cells:
            self.stdout.write(line(values))

    @staticmethod
    def row(row: Any) -> tuple[str, ...]:
        """The table cells of one schedule (a ``Schedule`` row; times in UTC, to the second)."""
        from beluga_workflows.schedules import schedule_state

        def when(value: Any) -> str:
            return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if value else ""

        outcome = row.last_outcome
        if outcome and row.last_workflow_id:
            outcome = f"{outcome} {row.last_workflow_id}"
        state = schedule_state(row) + (" (code)" if row.declared else "")
        return (row.id, row.workflow_type, row.cron, row.timezone, row.overlap, state,
                when(row.next_fire_at), when(row.last_fire_at), outcome)
