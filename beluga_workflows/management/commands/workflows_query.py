"""``manage.py workflows_query ID TYPE``: ask a workflow a question and print the answer as JSON."""

from __future__ import annotations

from beluga_workflows.management.base import WorkflowCommand


class Command(WorkflowCommand):
    help = (
        "Query the workflow ID and print the answer as JSON. TYPE is a built-in query (status, "
        "result, history) or the name of a handler the workflow set with ctx.set_query_handler. "
        "An unknown id or query type exits non-zero."
    )

    def add_arguments(self, parser):
        parser.add_argument("workflow_id", metavar="ID", help="The workflow id.")
        parser.add_argument(
            "query_type", metavar="TYPE",
            help="status, result, history, or one of the workflow's query handlers.",
        )

    def handle(self, *args, workflow_id, query_type, **options):
        answer = self.executor.query(workflow_id, query_type)
        self.stdout.write(self.dumps(answer, indent=2))
