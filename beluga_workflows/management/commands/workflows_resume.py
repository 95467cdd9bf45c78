"""``manage.py workflows_resume ID``: continue a failed, canceled or timed-out run."""

from __future__ import annotations

from beluga_workflows.management.base import WorkflowCommand


class Command(WorkflowCommand):
    """``workflows_resume ID``: resume an ended run as a new run of the same id."""
    help = (
        "Resume the failed, canceled or timed-out run of workflow ID: a new run of the same id "
        "replays the steps that finished (they are not run again) and runs the step that "
        "failed, and the rest, again, with the same input. Prints the id and the new run id on "
        "one line. An unknown id, or a run that is still open or has completed, exits non-zero."
    )

    def add_arguments(self, parser):
        """Take one positional ``ID``, the workflow id."""
        parser.add_argument("workflow_id", metavar="ID", help="The workflow id.")

    def handle(self, *args, workflow_id, **options):
        """Resume the ended run of ``ID`` and say which run continues it.

        Exits non-zero (``CommandError``) when no run has that id, its run is open or
        completed, or another run of the id opened meanwhile.
        """
        handle = self.executor.resume(workflow_id)
        self.stdout.write(self.style.SUCCESS(
            f"Resumed workflow {handle.id!r} as run {handle.run_id}."
        ))
