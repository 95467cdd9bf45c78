"""``manage.py workflows_temporal_worker [--task-queue Q]``: run the Temporal worker of our workflows.

It polls the task queue of the ``temporal`` executor (``BELUGA_WORKFLOWS["EXECUTOR"]["OPTIONS"]``:
``target``, ``namespace``, ``task_queue``) for every registered workflow (the ``workflows.py``
modules of installed apps) and activity, until SIGINT or SIGTERM.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from ...conf import workflow_settings
from ..base import WorkflowCommand


class Command(WorkflowCommand):
    help = "Run the Temporal worker of the temporal executor's workflows and activities."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--task-queue", help="the task queue to poll (default: the "
                            "executor's OPTIONS['task_queue'], else 'beluga')")
        parser.add_argument("--max-workers", type=int, default=8,
                            help="activities run at once, on a thread pool (default 8)")
        parser.add_argument("--max-cached-workflows", type=int, default=None,
                            help="runs kept in memory between workflow tasks (0: replay every "
                                 "task from the history; default: the SDK's)")

    def handle(self, *args: Any, **options: Any) -> None:
        from ...runtimes.temporal.connection import require_temporal

        require_temporal()
        from ...engine.registry import registered_workflows
        from ...runtimes.temporal.worker import run_worker

        config = workflow_settings.EXECUTOR if isinstance(workflow_settings.EXECUTOR, dict) else {}
        opts = dict(config.get("OPTIONS") or {}) if config.get("BACKEND") == "temporal" else {}
        target = opts.get("target", "127.0.0.1:7233")
        namespace = opts.get("namespace", "default")
        task_queue = options["task_queue"] or opts.get("task_queue", "beluga")
        if options["max_workers"] < 1:
            raise CommandError("--max-workers must be at least 1")
        workflows = registered_workflows()

        def ready() -> None:
            self.stdout.write(f"temporal worker polling {task_queue!r} on {target} (namespace "
                              f"{namespace!r}): {len(workflows)} workflow type(s)", ending="\n")
            self.stdout.flush()

        try:
            run_worker(target, namespace, task_queue, ready=ready,
                       max_workers=options["max_workers"],
                       max_cached_workflows=options["max_cached_workflows"])
        except RuntimeError as exc:  # the SDK's "failed client connect"
            raise CommandError(f"cannot reach the Temporal server at {target}: {exc}") from exc
