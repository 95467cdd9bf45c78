"""``manage.py workflows_purge``: delete ended runs older than a duration (default: RETENTION)."""

from __future__ import annotations

from django.core.management.base import CommandError

from beluga_workflows.engine.errors import InvalidInputError
from beluga_workflows.engine.retention import purge_cutoff, purge_filter
from beluga_workflows.engine.types import WorkflowStatus
from beluga_workflows.management.base import WorkflowCommand


class Command(WorkflowCommand):
    """``workflows_purge [--older-than DURATION] [--status S] [--type T] [--dry-run]
    [--batch N]``."""
    help = (
        "Delete ended runs (completed, failed, canceled, timed out) that ended longer than "
        "--older-than ago (default: BELUGA_WORKFLOWS['RETENTION']), oldest first, with their "
        "histories and inboxes, in batches of --batch runs; --status and --type keep it to runs "
        "of one ended status and one workflow type. Open runs are never deleted. With "
        "--dry-run, only count them. The recovery sweep does the same when RETENTION is set."
    )

    def add_arguments(self, parser):
        """Take ``--older-than DURATION``, ``--status S``, ``--type T``, ``--dry-run`` and
        ``--batch N`` (default 500)."""
        parser.add_argument(
            "--older-than", metavar="DURATION",
            help="Delete runs that ended longer ago than this: seconds or a number and a unit "
                 "(ms, s, m, h, d, w), such as 30d (default: the RETENTION setting).")
        parser.add_argument(
            "--status", metavar="S",
            help="Only runs that ended with this status: completed, failed, canceled or "
                 "timed_out (default: any).")
        parser.add_argument("--type", metavar="T", dest="workflow_type",
                            help="Only runs of this workflow type (default: any).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Count the runs that would be deleted; delete nothing.")
        parser.add_argument("--batch", metavar="N", default=None,
                            help="Runs deleted per batch (default: 500).")

    def handle(self, *args, older_than, status, workflow_type, dry_run, batch, **options):
        """Delete (or, with ``--dry-run``, count) the runs and say how many, and which.

        Exits non-zero, changing nothing, when ``--older-than`` is not a positive duration,
        neither it nor RETENTION is given, ``--status`` is not an ended status, ``--type`` is
        empty, ``--batch`` is not a positive whole number, or the store cannot purge.
        """
        batch = self.parse_count(batch, "--batch") if batch is not None else None
        if workflow_type is not None and not workflow_type.strip():
            raise CommandError("--type must name a workflow type, not an empty string")
        executor = self.executor
        now = executor.clock.now()
        older = _duration(older_than)
        try:  # every input checked before anything is read or deleted
            status, workflow_type = purge_filter(status, workflow_type, what="--status")
            before = purge_cutoff(now, older, executor.retention, what="--older-than")
        except InvalidInputError as exc:
            raise CommandError(str(exc)) from None
        filters = {"status": status, "workflow_type": workflow_type}
        runs = _runs(status, workflow_type)
        if dry_run:
            count = executor.count_purgeable(older, now=now, **filters)
            self.stdout.write(f"{count} {runs} ended before {before.isoformat()} would be "
                              f"deleted (dry run: nothing was deleted).")
            return
        deleted = executor.purge(older, now=now, batch=batch, **filters)
        self.stdout.write(self.style.SUCCESS(
            f"Deleted {len(deleted)} {runs} that ended before {before.isoformat()}."))


def _runs(status: WorkflowStatus | None, workflow_type: str | None) -> str:
    """Which runs, in words: ``run(s)``, ``failed run(s)``, ``run(s) of orders.process``..."""
    words = f"{status.value} run(s)" if status is not None else "run(s)"
    return f"{words} of {workflow_type}" if workflow_type else words


def _duration(text: str | None) -> str | float | None:
    """A bare number is seconds (as in the setting); anything else is read as a duration."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text
