"""The admin's human-task pages: the pending ``HumanActivity`` requests and the form answering one.

The list is ``list_pending_human_tasks``'s, the API's too: the open runs the store lists with
wait kind ``"human"``, each request's title, description, data and choices read from its run's
history (one ``store.history`` call per listed task, bounded by the page size). Answers go
through ``answer_human_task``, i.e. a signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from ..engine.errors import WorkflowError
from ..human import (
    WaitingRun,
    answer_human_task,
    count_pending_human_tasks,
    list_pending_human_tasks,
    pending_human_task,
)
from .base import WorkflowAdminBase
from .forms import HumanAnswerForm

if TYPE_CHECKING:
    from ..stores.base import WorkflowStore

__all__ = ["HumanTaskPages", "PendingHumanTasks"]

TASKS_PER_PAGE = 20


@dataclass
class PendingHumanTasks:
    """The pending human tasks as ``Paginator`` counts and slices them (one list per page)."""

    store: WorkflowStore

    def count(self) -> int:
        """How many open runs wait for a human answer (one ``count_pending_human_tasks``)."""
        return count_pending_human_tasks(self.store)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: slice) -> list[WaitingRun]:
        start = index.start or 0
        return list_pending_human_tasks(self.store, offset=start, limit=index.stop - start)


class HumanTaskPages(WorkflowAdminBase):
    """The "Human tasks" list and the answer form of ``WorkflowStateAdmin``."""

    def human_tasks_view(self, request: HttpRequest) -> HttpResponse:
        """The "Human tasks" list: a page of the pending requests, each with links to its run
        and its answer form.

        Raises:
            PermissionDenied: the user may not view runs (403).
        """
        self.require_view(request)
        pages = self.paginate(request, PendingHumanTasks(self.store), TASKS_PER_PAGE)
        rows = [{"state": run.state, "task": run.task,
                 "url": self.url("change", run.state.workflow_id),
                 "answer_url": self.url("answer", run.state.workflow_id)}
                for run in pages["page"].object_list]
        return self.render(request, "human_tasks.html", "Human tasks", rows=rows, **pages)

    def answer_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The answer form of a run's pending human task; a valid POST answers it (a signal),
        logs it and redirects to the list. A refused answer, a missing run or one without a task is
        shown on the page.

        Raises:
            PermissionDenied: the user may not signal runs (403).
        """
        self.require(request, self.has_signal_permission)
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
        return self.render(
            request, "human_answer.html", task.title if task else f"Answer {workflow_id}",
            form=form, task=task, state=state, workflow_id=workflow_id, problem=problem,
            page_url=self.url("change", workflow_id),
        )
