"""``manage.py workflows_recover``: send the runs that are due to the workers now."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from beluga_workflows.engine.errors import WorkflowError
from beluga_workflows.engine.types import WorkflowState
from beluga_workflows.runtimes import get_executor

# How many ids to print before summarising the rest.
SHOWN = 50


class Command(BaseCommand):
    """``workflows_recover``: hand the runs that are due (timers, dead workers) to the executor."""
    help = (
        "Re-schedule runs whose worker died or whose timers are due. A run is due when its timer, "
        "retry backoff or signal wait has ended, or when the worker that held it stopped renewing "
        "its lease (killed, crashed, deployed away). Each due run is sent to the configured "
        "executor (a Celery task on its queue); a run another worker is advancing is left alone, "
        "so running this at any time, as often as you like, is safe. Celery beat does the same "
        "every RECOVER_INTERVAL seconds; use this command after an outage or without beat."
    )

    def add_arguments(self, parser):
        """Take ``--limit`` (default 1000) and ``--dry-run``."""
        parser.add_argument(
            "--limit", type=int, default=1000,
            help="Re-schedule at most this many runs, the longest-due first (default: 1000).",
        )
        parser.add_argument(
            "--dry-run", action="store_true",
            help="List the runs that are due, and why, without scheduling them.",
        )

    def handle(self, *args, limit: int, dry_run: bool, **options):
        """Dispatch up to ``--limit`` due runs, longest-due first, listing each with why it is
        due; ``--dry-run`` only lists them. Warns when the limit was reached.

        Exits non-zero when ``--limit`` is not positive, the settings are wrong, or the store
        cannot be read.
        """
        if limit <= 0:
            raise CommandError(f"--limit must be a positive number of runs, not {limit}")
        try:
            executor = get_executor()
            store = executor.store
            now = executor.clock.now()
            due = store.due(now, limit)
            states = {wf: store.load(wf, with_history=False) for wf in due[:SHOWN]}
            if not dry_run:
                executor.dispatch(due)
                # Events whose fan-out a dead process left unfinished (the outbox).
                executor.finish_fan_outs(now)
        except ImproperlyConfigured as exc:
            raise CommandError(f"beluga_workflows is not configured correctly: {exc}") from exc
        except (WorkflowError, DatabaseError) as exc:
            raise CommandError(f"cannot read the due runs from the store: {exc}") from exc

        if not due:
            self.stdout.write(self.style.SUCCESS("Nothing to recover: no run is due."))
            return
        for workflow_id in due[:SHOWN]:
            self.stdout.write(f"  {workflow_id}  {self.style.NOTICE(reason(states[workflow_id]))}")
        if len(due) > SHOWN:
            self.stdout.write(f"  ... and {len(due) - SHOWN} more")
        verb = "due (dry run, nothing scheduled)" if dry_run else executor.dispatch_verb
        self.stdout.write(self.style.SUCCESS(f"{len(due)} run(s) {verb}."))
        if len(due) == limit:
            self.stdout.write(self.style.WARNING(
                f"--limit {limit} reached: more runs may be due; run the command again."))


def reason(state: WorkflowState | None) -> str:
    """Why a due run is due, in a few words."""
    if state is None:
        return "(gone)"
    if state.lease_owner:
        return f"worker {state.lease_owner} stopped renewing its lease"
    if state.wait_kind:
        name = f" {state.wait_name!r}" if state.wait_name else ""
        return f"{state.wait_kind}{name} wait is due"
    return "waiting for a worker"
