"""What every workflow admin page stands on: the store and executor, permissions, URLs, the log.

``WorkflowAdminBase`` declares everything the run pages (``workflows``) and the human-task pages
(``human_tasks``) use, so each page class depends on this base only, never on the other one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ..runtimes import get_executor

if TYPE_CHECKING:
    from ..engine.executor import WorkflowExecutor
    from ..stores.base import WorkflowStore

__all__ = ["TEMPLATES", "WorkflowAdminBase"]

TEMPLATES = "admin/beluga_workflows/"


class WorkflowAdminBase(admin.ModelAdmin):
    """The base of the workflow admin's page classes.

    Pages read ``store`` and act through ``executor`` (the configured ones, so every store
    backend works), check the permissions below before acting, render with ``render`` (the
    common ``page_context`` included), link with ``url`` and record what people did with ``log``.
    """

    # -- the configured engine --------------------------------------------------------------------

    @property
    def executor(self) -> WorkflowExecutor:
        """The configured executor (``get_executor()``): every operation goes through it."""
        return get_executor()

    @property
    def store(self) -> WorkflowStore:
        """The executor's store: what every page reads."""
        return self.executor.store

    # -- permissions ------------------------------------------------------------------------------

    def _perm(self, request: HttpRequest, codename: str) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Starting a run: the ``start_workflow`` permission."""
        return self._perm(request, "start_workflow")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: the admin has no edit form for runs."""
        return False  # runs change only through their workflow, signals and cancels

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: the admin deletes no runs."""
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Viewing runs: ``view_workflowstate`` or ``change_workflowstate``."""
        return self._perm(request, "view_workflowstate") or self._perm(request, "change_workflowstate")

    def has_signal_permission(self, request: HttpRequest) -> bool:
        """Signals and human-task answers (an answer is a signal)."""
        return self._perm(request, "signal_workflow")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        """Requesting cancellation: the ``cancel_workflow`` permission."""
        return self._perm(request, "cancel_workflow")

    def permissions(self, request: HttpRequest) -> dict[str, bool]:
        """What the user may do, for the templates (which show only the buttons they may use)."""
        return {
            "can_start": self.has_add_permission(request),
            "can_signal": self.has_signal_permission(request),
            "can_cancel": self.has_cancel_permission(request),
        }

    def require_view(self, request: HttpRequest) -> None:
        """Raise ``PermissionDenied`` (403) unless the user may view runs."""
        self.require(request, self.has_view_permission)

    @staticmethod
    def require(request: HttpRequest, has_permission: Callable[[HttpRequest], bool]) -> None:
        """Raise ``PermissionDenied`` (403) unless ``has_permission(request)``."""
        if not has_permission(request):
            raise PermissionDenied

    # -- URLs -------------------------------------------------------------------------------------

    def url(self, name: str, workflow_id: str | None = None) -> str:
        """The URL of one of the pages (``changelist``, ``change``, ``signal``, ``answer``...)."""
        args = () if workflow_id is None else (quote(workflow_id),)
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}",
                       args=args)

    def redirect_to_change(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """``<id>/`` leads to the run page ``<id>/change/``, as the admin's own URLs do."""
        return HttpResponseRedirect(self.url("change", unquote(object_id)))

    # -- rendering --------------------------------------------------------------------------------

    def page_context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        """The context every page's template gets: the admin site's, permissions, common links."""
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": title,
            "has_view_permission": True,
            **self.permissions(request),
            "changelist_url": self.url("changelist"),
            "human_tasks_url": self.url("human_tasks"),
            "events_url": self.url("events"),
            "flow_control_url": self.url("flow_control"),
            **extra,
        }

    def render(self, request: HttpRequest, template: str, title: str, **extra: Any) -> HttpResponse:
        """The page ``template`` (a name under ``admin/beluga_workflows/``) with ``page_context``."""
        return TemplateResponse(request, TEMPLATES + template,
                                self.page_context(request, title, **extra))

    @staticmethod
    def paginate(request: HttpRequest, listing: Any, per_page: int) -> dict[str, Any]:
        """The page ``?p=`` of ``listing`` (sliceable, with ``count()``), for ``_pagination.html``:
        ``page``, ``paginator`` and ``page_range``."""
        page: Page = Paginator(listing, per_page).get_page(request.GET.get("p"))
        return {
            "page": page, "paginator": page.paginator,
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2,
                                                               on_ends=1),
        }

    # -- who did what -----------------------------------------------------------------------------

    def sender(self, request: HttpRequest) -> str:
        """Who sends a signal or an answer from the admin, as recorded with it."""
        return f"admin:{request.user.get_username()}"

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
