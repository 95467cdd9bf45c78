"""``WorkflowStateAdmin``: the run pages and the human-task pages, under the model's admin URLs."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path

from .events import EventPages
from .flow import FlowControlPages
from .human_tasks import HumanTaskPages
from .lifecycle import LifecyclePages
from .workflows import WorkflowPages

__all__ = ["WorkflowStateAdmin"]


class WorkflowStateAdmin(WorkflowPages, LifecyclePages, HumanTaskPages, EventPages,
                         FlowControlPages):
    """Workflow runs, read from the configured store (see ``beluga_workflows.admin``).

    The page classes stand on ``WorkflowAdminBase``; this class only routes their views.
    """

    def get_urls(self) -> list[URLPattern]:
        """The admin's own URLs for this model: list, start, human tasks, events, flow control,
        and per run (by a quoted id that may hold ``/``) its page, signal, cancel, resume, fork and
        answer forms.
        """
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"

        def route(pattern: str, view: Any, name: str | None = None) -> URLPattern:
            return path(pattern, self.admin_site.admin_view(view),
                        name=f"{prefix}_{name}" if name else None)

        return [
            route("", self.changelist_view, "changelist"),
            route("start/", self.add_view, "add"),
            route("human-tasks/", self.human_tasks_view, "human_tasks"),
            route("events/", self.events_view, "events"),
            route("flow-control/", self.flow_control_view, "flow_control"),
            route("<path:object_id>/change/", self.change_view, "change"),
            route("<path:object_id>/signal/", self.signal_view, "signal"),
            route("<path:object_id>/cancel/", self.cancel_view, "cancel"),
            route("<path:object_id>/resume/", self.resume_view, "resume"),
            route("<path:object_id>/fork/", self.fork_view, "fork"),
            route("<path:object_id>/answer/", self.answer_view, "answer"),
            route("<path:object_id>/", self.redirect_to_change),
        ]
