"""The workflow admin: watch, start, signal, cancel and query runs, and answer human tasks.

The pages read the configured store (``get_executor().store``) and act through the executor, so
they show the same thing whatever store is configured (``django``, ``memory``, ``redis``...). The
``WorkflowState`` model is registered for its place on the admin index and its permissions; its
changelist, change and add views are replaced by the views of ``admin_views``.

Permissions: viewing needs the model's view permission; acting needs
``beluga_workflows.start_workflow``, ``signal_workflow`` (signals and human-task answers) or
``cancel_workflow``. Buttons show only to those who may use them and form URLs answer 403 to
everyone else.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.contrib.contenttypes.models import ContentType
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse

from .admin_human import HumanTaskViews
from .admin_views import WorkflowViews
from .models import WorkflowState

__all__ = ["WorkflowStateAdmin"]


@admin.register(WorkflowState)
class WorkflowStateAdmin(WorkflowViews, HumanTaskViews, admin.ModelAdmin):
    """Workflow runs, read from the configured store (see the module docstring)."""

    # -- permissions ----------------------------------------------------------------------------

    def _perm(self, request: HttpRequest, codename: str) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._perm(request, "start_workflow")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # runs change only through their workflow, signals and cancels

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._perm(request, "view_workflowstate") or self._perm(request, "change_workflowstate")

    def has_signal_permission(self, request: HttpRequest) -> bool:
        return self._perm(request, "signal_workflow")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return self._perm(request, "cancel_workflow")

    def permissions(self, request: HttpRequest) -> dict[str, bool]:
        """What the user may do, for the templates."""
        return {
            "can_start": self.has_add_permission(request),
            "can_signal": self.has_signal_permission(request),
            "can_cancel": self.has_cancel_permission(request),
        }

    # -- URLs -----------------------------------------------------------------------------------

    def get_urls(self) -> list:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"

        def route(pattern: str, view: Any, name: str | None = None) -> Any:
            return path(pattern, self.admin_site.admin_view(view),
                        name=f"{prefix}_{name}" if name else None)

        return [
            route("", self.changelist_view, "changelist"),
            route("start/", self.add_view, "add"),
            route("human-tasks/", self.human_tasks_view, "human_tasks"),
            route("<path:object_id>/change/", self.change_view, "change"),
            route("<path:object_id>/signal/", self.signal_view, "signal"),
            route("<path:object_id>/cancel/", self.cancel_view, "cancel"),
            route("<path:object_id>/answer/", self.answer_view, "answer"),
            route("<path:object_id>/", self.redirect_to_change),
        ]

    def url(self, name: str, workflow_id: str | None = None) -> str:
        """The URL of one of these pages (``changelist``, ``change``, ``signal``...)."""
        args = () if workflow_id is None else (quote(workflow_id),)
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}",
                       args=args)

    def redirect_to_change(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return HttpResponseRedirect(self.url("change", unquote(object_id)))

    # -- the admin log ("Recent actions") -------------------------------------------------------

    def log(self, request: HttpRequest, workflow_id: str, message: str, *, added: bool = False) -> None:
        """Record who did what to which run in the admin log (shown under "Recent actions")."""
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type_id=ContentType.objects.get_for_model(self.model, for_concrete_model=False).pk,
            object_id=workflow_id,
            object_repr=workflow_id[:200],
            action_flag=ADDITION if added else CHANGE,
            change_message=message,
        )
