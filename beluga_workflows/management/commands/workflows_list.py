"""``manage.py workflows_list``: the latest runs, newest first, as a table or JSON lines."""

from __future__ import annotations

from beluga_workflows.engine.types import WorkflowFilter, WorkflowState, WorkflowStatus
from beluga_workflows.management.base import WorkflowCommand
from beluga_workflows.management.presentation import workflow_json

DEFAULT_LIMIT = 50
COLUMNS = ("ID", "TYPE", "STATUS", "STARTED", "ENDED", "WAITING FOR")


class Command(WorkflowCommand):
    """``workflows_list``: the latest run of each id, newest first, as a table or JSON lines."""
    help = (
        "List workflows (the latest run of each id), newest first: an aligned table, or with "
        "--json one JSON object per line with the same fields as the REST API. Filter by "
        "--status, --type and --parent (a workflow's children); --limit caps how many are shown."
    )

    def add_arguments(self, parser):
        """Take ``--status``, ``--type``, ``--parent ID``, ``--limit N`` (default 50) and
        ``--json``."""
        parser.add_argument(
            "--status", metavar="S",
            help=f"Only runs in this status: {', '.join(s.value for s in WorkflowStatus)}.",
        )
        parser.add_argument("--type", dest="workflow_type", metavar="T",
                            help="Only runs of this workflow type (its registered name).")
        parser.add_argument("--parent", dest="parent_id", metavar="ID",
                            help="Only the child runs of the workflow with this id.")
        parser.add_argument(
            "--limit", metavar="N", default=str(DEFAULT_LIMIT),
            help=f"Show at most N workflows (default: {DEFAULT_LIMIT}).",
        )
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print one JSON object per workflow, one per line.")

    def handle(self, *args, status, workflow_type, parent_id, limit, as_json, **options):
        """Print the matching runs (a table with a "N of M shown" line when capped, or one
        JSON object per line), or "No workflows.".

        Exits non-zero when ``--limit`` is not a positive whole number, ``--status`` is not a
        status, or the store cannot be read.
        """
        workflow_filter = WorkflowFilter(status=status, workflow_type=workflow_type or None,
                                         parent_id=parent_id or None,
                                         limit=self.parse_count(limit, "--limit"))
        store = self.executor.store
        states = store.list(workflow_filter)
        if as_json:
            for state in states:
                self.stdout.write(self.dumps(workflow_json(state)))
            return
        if not states:
            self.stdout.write("No workflows.")
            return
        self.write_table(states)
        total = store.count(workflow_filter)
        if total > len(states):
            self.stdout.write(f"{len(states)} of {total} workflows shown (--limit {limit}).")

    def write_table(self, states: list[WorkflowState]) -> None:
        """Print ``states`` as columns aligned on their widest cell, statuses coloured."""
        rows = [self.row(state) for state in states]
        widths = [max(len(COLUMNS[i]), *(len(row[i]) for row in rows)) for i in range(len(COLUMNS))]

        def line(cells: tuple[str, ...], status: str | None = None) -> str:
            padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
            if status is not None:  # colour after measuring, so the columns stay aligned
                padded[2] = status + " " * (widths[2] - len(cells[2]))
            return "  ".join(padded).rstrip()

        self.stdout.write(self.style.MIGRATE_HEADING(line(COLUMNS)))
        for state, row in zip(states, rows, strict=True):
            self.stdout.write(line(row, self.style_status(state.status)))

    @staticmethod
    def row(state: WorkflowState) -> tuple[str, ...]:
        """The table cells of one run: id, type, status, start, end, what an open run waits for."""
        waiting = ""
        if state.is_open and state.wait_kind:
            waiting = state.wait_kind + (f" {state.wait_name}" if state.wait_name else "")
        ended = state.ended_at.strftime("%Y-%m-%d %H:%M:%S") if state.ended_at else ""
        return (state.workflow_id, state.workflow_type, state.status.value,
                state.created_at.strftime("%Y-%m-%d %H:%M:%S"), ended, waiting)
