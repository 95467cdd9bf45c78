"""``manage.py workflows_start TYPE``: start a workflow and print its id (and result with --wait)."""

from __future__ import annotations

import shlex

from django.core.management.base import CommandError

from beluga_workflows.engine.registry import registered_workflows
from beluga_workflows.engine.types import MAX_DURATION_SECONDS, WorkflowOptions
from beluga_workflows.management.base import WorkflowCommand

DEFAULT_WAIT = 300.0


class Command(WorkflowCommand):
    """``workflows_start TYPE``: start a workflow, print its id, and with ``--wait`` its result."""
    @property
    def help(self) -> str:  # names the types registered in this process
        """The command's help text, naming the workflow types registered in this process."""
        return (
            "Start a run of the workflow registered as TYPE and print its id on one line. The "
            "run is recorded and handed to the configured executor; the command returns at once "
            "unless --wait is given, in which case it waits for the run to end and prints its "
            "result as one line of JSON (a failed, canceled or timed-out run exits non-zero). "
            f"Registered types: {', '.join(registered_workflows()) or '(none)'}."
        )

    def add_arguments(self, parser):
        """Take the positional ``TYPE`` and ``--id``, ``--input``, ``--timeout``, ``--wait`` and
        ``--wait-timeout``.
        """
        parser.add_argument(
            "workflow_type", metavar="TYPE",
            help="The workflow's registered name, e.g. demo.process_order.",
        )
        parser.add_argument(
            "--id", dest="workflow_id", metavar="ID",
            help="The workflow id (any printable text up to 255 characters, '/' and unicode "
                 "included). Default: a generated wf-<uuid>. An id whose run is still open is "
                 "refused; one whose run has ended starts a new run.",
        )
        parser.add_argument(
            "--input", metavar="JSON",
            help='The workflow\'s input as JSON, e.g. \'{"total": 42}\'. Default: null.',
        )
        parser.add_argument(
            "--timeout", metavar="SECONDS",
            help="End the run timed_out if it has not finished this many seconds after its start.",
        )
        parser.add_argument(
            "--wait", action="store_true",
            help="Wait for the run to end and print its result as JSON.",
        )
        parser.add_argument(
            "--wait-timeout", metavar="SECONDS", default=str(DEFAULT_WAIT),
            help=f"With --wait, give up waiting after this many seconds (default: {DEFAULT_WAIT:g};"
                 " 0: no limit). The run itself goes on.",
        )

    def handle(self, *args, workflow_type, workflow_id, input, timeout, wait, wait_timeout,
               **options):
        """Start a run of ``TYPE``, print its id, and with ``--wait`` block until it ends and print
        its result as one line of JSON.

        Exits non-zero when an argument is malformed, ``TYPE`` is not registered, the id's run
        is still open, or (with ``--wait``) the run fails, is canceled, times out or is still
        running after ``--wait-timeout``.
        """
        data = self.parse_json(input, "--input")
        seconds = self.parse_seconds(timeout, "--timeout", maximum=MAX_DURATION_SECONDS)
        wait_limit = self.parse_seconds(wait_timeout, "--wait-timeout", allow_zero=True)
        handle = self.executor.execute(
            workflow_type, WorkflowOptions(id=workflow_id, input=data, timeout=seconds)
        )
        self.stdout.write(handle.id)
        if not wait:
            return
        try:
            result = handle.result(timeout=wait_limit or None)
        except TimeoutError:
            raise CommandError(
                f"workflow {handle.id!r} is still running after {wait_limit:g} s; it goes on "
                f"(see: manage.py workflows_show {shlex.quote(handle.id)})"
            ) from None
        self.stdout.write(self.dumps(result))
