"""``manage.py workflows_cancel ID``: request cancellation of a running workflow."""

from __future__ import annotations

from beluga_workflows.management.base import WorkflowCommand


class Command(WorkflowCommand):
    """``workflows_cancel ID``: request cancellation of a running workflow."""
    help = (
        "Request cancellation of the running workflow ID. Its next step raises "
        "WorkflowCanceledError inside the workflow, which may run clean-up activities before the "
        "run ends canceled. An unknown id or a run that has already ended exits non-zero."
    )

    def add_arguments(self, parser):
        """Take one positional ``ID``, the workflow id."""
        parser.add_argument("workflow_id", metavar="ID", help="The workflow id.")

    def handle(self, *args, workflow_id, **options):
        """Flag the open run of ``ID`` cancel-requested and say so.

        Exits non-zero (``CommandError``) when no run has that id or its run has already ended.
        """
        self.executor.cancel(workflow_id)
        self.stdout.write(self.style.SUCCESS(
            f"Cancel requested for workflow {workflow_id!r}: it ends canceled at its next step."
        ))
