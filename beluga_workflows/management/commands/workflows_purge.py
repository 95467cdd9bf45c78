"""``manage.py workflows_purge``: delete ended runs older than a duration (default: RETENTION)."""

from __future__ import annotations

from django.core.management.base import CommandError

from beluga_workflows.engine.errors import InvalidInputError
from beluga_workflows.engine.retention import purge_cutoff
from beluga_workflows.management.base import WorkflowCommand


class Command(WorkflowCommand):
    """``workflows_purge [--older-than DURATION] [--dry-run] [--batch N]``."""
    help = (
        "Delete ended runs (completed, failed, canceled, timed out) that ended longer than "
        "--older-than ago (default: BELUGA_WORKFLOWS['RETENTION']), oldest first, with their "
        "histories and inboxes, in batches of --batch runs. Open runs are never deleted. With "
        "--dry-run, only count them. The recovery sweep does the same when RETENTION is set."
    )

    def add_arguments(self, parser):
        """Take ``--older-than DURATION``, ``--dry-run`` and ``--batch N`` (default 500)."""
        parser.add_argument(
            "--older-than", metavar="DURATION",
            help="Delete runs that ended longer ago than this: seconds or a number and a unit "
                 "(ms, s, m, h, d, w), such as 30d (default: the RETENTION setting).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Count the runs that would be deleted; delete nothing.")
        parser.add_argument("--batch", metavar="N", default=None,
                            help="Runs deleted per batch (default: 500).")

    def handle(self, *args, older_than, dry_run, batch, **options):
        """Delete (or, with ``--dry-run``, count) the runs and say how many.

        Exits non-zero, changing nothing, when ``--older-than`` is not a positive duration,
        neither it nor RETENTION is given, ``--batch`` is not a positive whole number, or the
        store cannot purge.
        """
        batch = self.parse_count(batch, "--batch") if batch is not None else None
        executor = self.executor
        now = executor.clock.now()
        older = _duration(older_than)
        try:  # every input checked before anything is read or deleted
            before = purge_cutoff(now, older, executor.retention, what="--older-than")
        except InvalidInputError as exc:
            raise CommandError(str(exc)) from None
        if dry_run:
            count = executor.count_purgeable(older, now=now)
            self.stdout.write(f"{count} run(s) ended before {before.isoformat()} would be "
                              f"deleted (dry run: nothing was deleted).")
            return
        deleted = executor.purge(older, now=now, batch=batch)
        self.stdout.write(self.style.SUCCESS(
            f"Deleted {len(deleted)} run(s) that ended before {before.isoformat()}."))


def _duration(text: str | None) -> str | float | None:
    """A bare number is seconds (as in the setting); anything else is read as a duration."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text
