"""``manage.py workflows_signal ID NAME``: send a signal to a running workflow."""

from __future__ import annotations

from beluga_workflows.engine.types import Signal
from beluga_workflows.management.base import WorkflowCommand


class Command(WorkflowCommand):
    """``workflows_signal ID NAME``: send a signal to a running workflow."""
    help = (
        "Send the signal NAME (with an optional JSON payload) to the running workflow ID. Once "
        "this command succeeds the signal is stored and will be received exactly once by the "
        "workflow's next ctx.receive_signal(NAME), even if the run is asleep or not there yet. "
        "An unknown id or a run that has ended exits non-zero."
    )

    def add_arguments(self, parser):
        """Take the positionals ``ID`` and ``NAME`` and ``--payload JSON``."""
        parser.add_argument("workflow_id", metavar="ID", help="The workflow id.")
        parser.add_argument("name", metavar="NAME", help="The signal's name, e.g. approval.")
        parser.add_argument(
            "--payload", metavar="JSON",
            help='The signal\'s payload as JSON, e.g. \'{"by": "ann"}\'. Default: null.',
        )

    def handle(self, *args, workflow_id, name, payload, **options):
        """Store the signal in the run's inbox (sender ``manage.py``) and print its inbox id.

        Exits non-zero when ``--payload`` is not JSON (or too large), no run has that id, or its
        run has ended.
        """
        data = self.parse_json(payload, "--payload")
        accepted = self.executor.signal(
            workflow_id, Signal(name=name, payload=data, sender_id="manage.py")
        )
        self.stdout.write(self.style.SUCCESS(
            f"Signal {name!r} accepted by workflow {workflow_id!r} (inbox #{accepted.id})."
        ))
