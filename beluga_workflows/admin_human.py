"""The admin's human-task pages: the pending ``HumanActivity`` requests and the form answering one.

Pending requests are the open runs the store lists with wait kind ``"human"``; each request's
title, description, data and choices come from its run's history (one ``store.history`` call per
listed task, bounded by the page size). Answers go through ``answer_human_task``, i.e. a signal.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from .engine.errors import WorkflowError
from .engine.types import WorkflowFilter, WorkflowState, WorkflowStatus
from .forms import HumanAnswerForm
from .human import HUMAN_WAIT_KIND, HumanTask, answer_human_task, pending_human_task

__all__ = ["HumanTaskViews"]

TASKS_PER_PAGE = 20
TEMPLATES = "admin/beluga_workflows/"


class HumanTaskViews:
    """Mixed into ``WorkflowStateAdmin``: the "Human tasks" list and the answer form."""

    def human_task_of(self, state: WorkflowState) -> HumanTask | None:
        """The task ``state`` waits for (reads its history), or ``None``."""
        if state.wait_kind != HUMAN_WAIT_KIND or not state.is_open:
            return None
        return pending_human_task(state, self.store.history(state.workflow_id))

    def human_tasks_view(self, request: HttpRequest) -> HttpResponse:
        self.require_view(request)
        from .admin_views import StoreQuery

        flt = WorkflowFilter(status=WorkflowStatus.RUNNING, wait_kind=HUMAN_WAIT_KIND)
        page = Paginator(StoreQuery(self.store, flt), TASKS_PER_PAGE).get_page(request.GET.get("p"))
        rows = []
        for state in page.object_list:
            task = self.human_task_of(state)
            rows.append({"state": state, "task": task, "url": self.url("change", state.workflow_id),
                         "answer_url": self.url("answer", state.workflow_id)})
        context = self.page_context(
            request, "Human tasks", rows=rows, page=page, paginator=page.paginator,
            page_range=page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        )
        return TemplateResponse(request, TEMPLATES + "human_tasks.html", context)

    def answer_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_signal_permission(request):
            raise PermissionDenied
        workflow_id = unquote(object_id)
        state = self.store.load(workflow_id)
        task = pending_human_task(state, state.history) if state is not None else None
        choices = task.choices if task is not None else []
        if request.method == "POST":
            form = HumanAnswerForm(request.POST, choices=choices or request.POST.getlist("decision"))
            if form.is_valid():
                data = form.cleaned_data
                try:
                    answer_human_task(
                        workflow_id, data["decision"], data["feedback"], data["modified"],
                        request_id=data["request_id"], sender_id=self.sender(request),
                        executor=self.executor,
                    )
                except WorkflowError as exc:
                    form.add_error(None, str(exc))
                else:
                    self.log(request, workflow_id,
                             f"Answered human task “{task.title if task else data['request_id']}”: "
                             f"{data['decision']}.")
                    messages.success(request, f"Answered “{workflow_id}”: {data['decision']}. "
                                              f"The workflow resumes with your answer.")
                    return HttpResponseRedirect(self.url("human_tasks"))
        else:
            initial: dict[str, Any] = {"request_id": task.request_id if task else ""}
            if request.GET.get("decision") in choices:
                initial["decision"] = request.GET["decision"]
            if task is not None:
                initial["modified"] = task.data
            form = HumanAnswerForm(initial=initial, choices=choices)
        problem = ""
        if state is None:
            problem = f"There is no workflow with id “{workflow_id}”."
        elif task is None:
            problem = ("This run waits for no human task (it was answered, timed out, or the run "
                       f"has ended: {state.status.value.replace('_', ' ')}).")
        context = self.page_context(
            request, task.title if task else f"Answer {workflow_id}", form=form, task=task,
            state=state, workflow_id=workflow_id, problem=problem,
            page_url=self.url("change", workflow_id),
        )
        return TemplateResponse(request, TEMPLATES + "human_answer.html", context)
