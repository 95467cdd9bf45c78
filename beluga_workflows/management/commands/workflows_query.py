"""``manage.py workflows_query ID TYPE``: ask a workflow a question and print the answer as JSON."""

from __future__ import annotations

from beluga_workflows.management.base import WorkflowCommand


class Command(WorkflowCommand):
    """``workflows_query ID TYPE``: ask a workflow a question and print the answer as JSON."""
    help = (
        "Query the workflow ID and print the answer as JSON. TYPE is a built-in query (status, "
        "result, history) or the name of a handler the workflow set with ctx.set_query_handler. "
        "An unknown id or query type exits non-zero."
    )

    def add_arguments(self, parser):
        """Take two positionals: ``ID``, the workflow id, and ``TYPE``, the query."""
        parser.add_argument("workflow_id", metavar="ID", help="The workflow id.")
        parser.add_argument(
            "query_type", metavar="TYPE",
            help="status, result, history, or one of the workflow's query handlers.",
        )

    def handle(self, *args, workflow_id, query_type, **options):
        """Print the answer to query ``TYPE`` of workflow ``ID`` as indented JSON.

        Exits non-zero when no run has that id, the workflow has no query of that type, or its
        handler fails.
        """
        answer = self.executor.query(workflow_id, query_type)
        self.stdout.write(self.dumps(answer, indent=2))
