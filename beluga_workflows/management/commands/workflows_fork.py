"""``manage.py workflows_fork ID``: a new run of an ended run, replaying its first steps."""

from __future__ import annotations

from django.core.management.base import CommandError

from beluga_workflows.management.base import WorkflowCommand


class Command(WorkflowCommand):
    """``workflows_fork ID [--from-event N] [--new-id ID]``: fork an ended run; print the new id."""
    help = (
        "Start a new run of the ended workflow ID's workflow and input that replays its events "
        "before --from-event (the steps they record are not run again) and runs on from there; "
        "the ended run is left as it is. Prints the new run's workflow id alone on one line. An "
        "unknown id, a run still open, an event that does not begin a step, or a new id whose "
        "run is open exits non-zero."
    )

    def add_arguments(self, parser):
        """Take the positional ``ID`` and ``--from-event``, ``--new-id``."""
        parser.add_argument("workflow_id", metavar="ID", help="The ended workflow's id.")
        parser.add_argument(
            "--from-event", metavar="N",
            help="The id of the event to go live at: the first event of a step, from 2 "
                 "(workflows_show ID --json gives each event's id and its step, op). Default: "
                 "from the start, replaying nothing.",
        )
        parser.add_argument(
            "--new-id", metavar="ID",
            help="The new run's workflow id. Default: <ID>-fork-<8 hex digits>. ID itself "
                 "replaces the ended run; an id whose run is open is refused.",
        )

    def handle(self, *args, workflow_id, from_event, new_id, **options):
        """Fork the ended run of ``ID`` and print the new run's workflow id.

        Exits non-zero (``CommandError``) when ``--from-event`` is not a whole number or does
        not begin a step of the run, no run has that id, its run is open, ``--new-id`` is no
        valid id, or a run of it is open.
        """
        event = None
        if from_event is not None:
            try:
                event = int(from_event)
            except ValueError:
                raise CommandError(
                    f"--from-event must be a whole number (an event id), not {from_event!r}"
                ) from None
        handle = self.executor.fork(workflow_id, from_event=event, id=new_id)
        self.stdout.write(handle.id)
