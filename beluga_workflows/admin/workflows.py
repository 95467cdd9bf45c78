"""The workflow admin's run pages: list (with counts and the cancel action), start, run page,
signal, cancel.

Every page reads the configured store through the store contract (``list``, ``count``,
``count_by_status``, ``load``, ``history``) and acts through the executor, never through ORM
querysets, so the admin works for every store. The list page costs a fixed number of store calls
whatever the number of rows: one ``list`` for the page, one ``count_by_status`` for the dashboard
(which also gives the total when no other filter is set), one ``count`` otherwise, and one
``count`` of pending human tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone

from ..engine.errors import (
    InvalidInputError,
    WorkflowAlreadyExistsError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ..engine.executor import BUILTIN_QUERIES
from ..engine.registry import get_workflow, registered_workflows
from ..engine.types import Signal, WorkflowFilter, WorkflowOptions, WorkflowState, WorkflowStatus
from ..human import count_pending_human_tasks, human_task_of
from .base import WorkflowAdminBase
from .forms import QueryForm, SignalForm, StartWorkflowForm
from .lifecycle import RESUMABLE, STEP_EVENTS, fork_points

if TYPE_CHECKING:
    from ..stores.base import WorkflowStore

__all__ = ["StoreQuery", "WorkflowPages", "describe_wait", "elapsed"]

LIST_PER_PAGE = 50
HISTORY_PER_PAGE = 200


def describe_wait(state: WorkflowState, now: Any = None) -> dict[str, Any]:
    """What an open run waits for, for display: ``{"kind", "name", "until"}`` (kind ``""`` when ended).

    ``kind`` is ``working`` while a worker holds its lease, ``scheduled`` before a worker first
    picked it up, else the wait kind the run recorded (``signal``, ``timer``, ``retry``, ``human``).
    """
    if not state.is_open:
        return {"kind": "", "name": "", "until": None}
    now = now or timezone.now()
    if state.lease_owner and state.lease_expires_at and state.lease_expires_at > now:
        return {"kind": "working", "name": "", "until": None}
    if not state.wait_kind:
        return {"kind": "scheduled", "name": "", "until": state.wake_at}
    return {"kind": state.wait_kind, "name": state.wait_name, "until": state.wait_until}


def elapsed(state: WorkflowState, now: Any = None) -> float | None:
    """Seconds from the run's start to its end, or to ``now`` while it is open."""
    if state.is_open:
        return ((now or timezone.now()) - state.created_at).total_seconds()
    return state.duration


@dataclass
class StoreQuery:
    """A store listing that ``Paginator`` can count and slice (one ``store.list`` per page)."""

    store: WorkflowStore
    filter: WorkflowFilter
    total: int | None = None

    def count(self) -> int:
        """How many runs match (one ``store.count``, remembered; or the ``total`` given)."""
        if self.total is None:
            self.total = self.store.count(self.filter)
        return self.total

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: slice) -> list[WorkflowState]:
        start = index.start or 0
        if self.total == 0:
            return []
        return self.store.list(replace(self.filter, offset=start, limit=index.stop - start))


class WorkflowPages(WorkflowAdminBase):
    """The list, start, run, signal and cancel pages of ``WorkflowStateAdmin``."""

    # -- the list ---------------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """The run list: a page of runs by status, type, id prefix, (``?wait=``) what open
        runs wait for (``concurrency``, ``signal``...) and (``?parent=``) whose children they
        are, with the status counts and the pending human tasks; each child links to its
        parent, each parent to the list of its children. A POST with ``action`` is the
        cancel-selected action.

        Raises:
            PermissionDenied: the user may not view runs (403).
        """
        self.require_view(request)
        if request.method == "POST" and "action" in request.POST:
            return self.cancel_selected_view(request)
        status = request.GET.get("status") or None
        if status not in {s.value for s in WorkflowStatus}:
            status = None
        workflow_type = request.GET.get("type") or None
        search = request.GET.get("q", "").strip()
        wait_kind = request.GET.get("wait", "").strip() or None
        parent = request.GET.get("parent", "").strip() or None
        flt = WorkflowFilter(status=status, workflow_type=workflow_type,
                             workflow_id_prefix=search or None, wait_kind=wait_kind,
                             parent_id=parent)
        counts = self.store.count_by_status()
        total = sum(counts.values())
        query = StoreQuery(self.store, flt)
        if any("\x00" in (text or "") for text in (workflow_type, search, wait_kind, parent)):
            query.total = 0  # no run's id, type or wait holds NUL (nor can a database store it)
        elif workflow_type is None and not search and not wait_kind and not parent:
            query.total = counts[status] if status else total  # the dashboard counted it
        pages = self.paginate(request, query, LIST_PER_PAGE)
        now = timezone.now()
        listed = pages["page"].object_list
        children = self.store.count_children(s.workflow_id for s in listed)
        changelist = self.url("changelist")
        rows = [{"state": s, "wait": describe_wait(s, now), "elapsed": elapsed(s, now),
                 "url": self.url("change", s.workflow_id),
                 "parent_url": self.url("change", s.parent_id) if s.parent_id else "",
                 "children": children.get(s.workflow_id, 0),
                 "children_url": f"{changelist}?{urlencode({'parent': s.workflow_id})}"}
                for s in listed]
        types = registered_workflows()
        if workflow_type and workflow_type not in types:
            types = sorted([*types, workflow_type])
        return self.render(
            request, "change_list.html", "Workflow runs",
            rows=rows, **pages, total=total,
            counts=[(s.value, counts.get(s.value, 0)) for s in WorkflowStatus],
            status=status or "", workflow_type=workflow_type or "", search=search,
            wait=wait_kind or "", parent=parent or "",
            parent_url=self.url("change", parent) if parent else "",
            statuses=[(s.value, s.value.replace("_", " ").capitalize()) for s in WorkflowStatus],
            types=types, human_count=count_pending_human_tasks(self.store),
            params=urlencode({k: v for k, v in (("status", status), ("type", workflow_type),
                                                ("q", search), ("wait", wait_kind),
                                                ("parent", parent)) if v}),
            start_url=self.url("add"),
        )

    def cancel_selected_view(self, request: HttpRequest) -> HttpResponse:
        """The list action: confirm, then request cancel of the selected runs, skipping ended ones."""
        back = HttpResponseRedirect(request.get_full_path())
        if request.POST.get("action") != "cancel_selected":
            messages.warning(request, "No action selected.")
            return back
        self.require(request, self.has_cancel_permission)
        ids = request.POST.getlist("_selected_action")
        if not ids:
            messages.warning(request, "Items must be selected in order to perform actions on them. "
                                      "No items have been changed.")
            return back
        states = [(wf_id, self.store.load(wf_id, with_history=False)) for wf_id in ids]
        open_ids = [wf_id for wf_id, s in states if s is not None and s.is_open]
        skipped = [wf_id for wf_id, s in states if s is None or not s.is_open]
        if request.POST.get("post") != "yes":
            return self.render(
                request, "cancel_selected_confirmation.html", "Are you sure?", ids=ids,
                skipped=skipped, to_cancel=[s for _, s in states if s is not None and s.is_open],
            )
        canceled = []
        for wf_id in open_ids:
            try:
                self.executor.cancel(wf_id)
            except (WorkflowNotRunningError, WorkflowNotFoundError):
                skipped.append(wf_id)  # it ended meanwhile
                continue
            canceled.append(wf_id)
            self.log(request, wf_id, "Requested cancel (list action).")
        if canceled:
            messages.success(request, f"Requested cancel of {_runs(len(canceled))}: "
                                      f"{', '.join(canceled)}.")
        if skipped:
            messages.warning(request, f"Skipped {_runs(len(skipped))} that had already ended or "
                                      f"no longer exist: {', '.join(skipped)}.")
        return back

    # -- starting ---------------------------------------------------------------------------------

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
                 ) -> HttpResponse:
        """The start form; a valid POST starts the run, logs it and redirects to its page. An open
        run of the id, or another refusal of the executor, is shown on the form.

        Raises:
            PermissionDenied: the user may not start runs (403).
        """
        self.require(request, self.has_add_permission)
        if request.method == "POST":
            form = StartWorkflowForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    handle = self.executor.execute(data["workflow_type"], WorkflowOptions(
                        id=data["id"], input=data["input"], timeout=data["timeout"]))
                except WorkflowAlreadyExistsError as exc:
                    form.add_error("id", str(exc))
                except WorkflowError as exc:
                    form.add_error(None, str(exc))
                else:
                    self.log(request, handle.id, f"Started {data['workflow_type']}.", added=True)
                    messages.success(request, f"Started workflow “{handle.id}”.")
                    return HttpResponseRedirect(self.url("change", handle.id))
        else:
            form = StartWorkflowForm(initial={"workflow_type": request.GET.get("type", "")})
        return self.render(request, "start.html", "Start a workflow", form=form,
                           has_types=bool(registered_workflows()))

    # -- one run ----------------------------------------------------------------------------------

    def load_or_redirect(self, request: HttpRequest, workflow_id: str
                         ) -> tuple[WorkflowState | None, HttpResponse | None]:
        """The run (without history), or a redirect to the list saying it does not exist."""
        state = self.store.load(workflow_id, with_history=False)
        if state is None:
            messages.warning(request, f"Workflow with id “{workflow_id}” doesn’t exist. "
                                      f"Perhaps it was deleted?")
            return None, HttpResponseRedirect(self.url("changelist"))
        return state, None

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        """The run page: its fields, a page of its history (``?after=``), its pending human task
        and the answer to a query asked with ``?query=``; on an ended run, the Resume and Fork
        buttons and a "fork" link on each event a fork can start at, for those who may start
        runs. A missing run redirects to the list.

        Raises:
            PermissionDenied: the user may not view runs (403).
        """
        self.require_view(request)
        workflow_id = unquote(object_id)
        state, missing = self.load_or_redirect(request, workflow_id)
        if missing:
            return missing
        try:
            after = max(int(request.GET.get("after", 0)), 0)
        except ValueError:
            after = 0
        events = self.store.history(workflow_id, after=after, limit=HISTORY_PER_PAGE + 1)
        more = len(events) > HISTORY_PER_PAGE
        events = events[:HISTORY_PER_PAGE]
        query_form = QueryForm(request.GET if "query" in request.GET else None)
        answer = None
        if query_form.is_bound and query_form.is_valid():
            try:
                answer = {"value": self.executor.query(workflow_id, query_form.cleaned_data["query"])}
            except WorkflowError as exc:
                query_form.add_error("query", str(exc))
        error = state.error or {}
        fork_from: set[int] = set()
        if not state.is_open and self.has_add_permission(request):
            # The chart reads the whole history anyway: read it once, for the "fork" links too.
            state = replace(state, history=self.store.history(workflow_id, limit=STEP_EVENTS))
            fork_from = {p.first for p in fork_points(state.history) if not p.inside}
        return self.render(
            request, "change_form.html", f"Workflow {workflow_id}", state=state,
            wait=describe_wait(state), elapsed=elapsed(state),
            events=events, after=after, next_after=events[-1].id if more else None,
            query_form=query_form, answer=answer, builtin_queries=BUILTIN_QUERIES,
            error_summary=f"{error.get('type', 'Error')}: {error.get('message', '')}" if error else "",
            traceback=error.get("traceback", ""), task=human_task_of(self.store, state),
            signal_url=self.url("signal", workflow_id), cancel_url=self.url("cancel", workflow_id),
            answer_url=self.url("answer", workflow_id), page_url=self.url("change", workflow_id),
            resume_url=self.url("resume", workflow_id), fork_url=self.url("fork", workflow_id),
            can_resume=state.status in RESUMABLE, fork_from=fork_from,
            trigger=self.trigger_of(state),
        )

    def trigger_of(self, state: WorkflowState) -> dict[str, str] | None:
        """The event that started ``state`` (``{"name", "id", "url"}``), for a run of a workflow
        triggered by events whose input is such an event; ``None`` otherwise."""
        try:
            definition = get_workflow(state.workflow_type)
        except WorkflowError:
            return None
        names = {trigger.event for trigger in definition.triggers}
        data = state.input
        if not (names and isinstance(data, dict) and data.get("name") in names
                and isinstance(data.get("id"), str)):
            return None
        return {"name": data["name"], "id": data["id"],
                "url": f"{self.url('events')}?{urlencode({'event': data['id']})}"}

    def signal_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The signal form; a valid POST sends the signal, logs it and redirects to the run page.
        A refusal (no such run, ended) is shown on the form.

        Raises:
            PermissionDenied: the user may not signal runs (403).
        """
        self.require(request, self.has_signal_permission)
        workflow_id = unquote(object_id)
        state = self.store.load(workflow_id, with_history=False)
        if request.method == "POST":
            form = SignalForm(request.POST)
            if form.is_valid():
                name, payload = form.cleaned_data["name"], form.cleaned_data["payload"]
                try:
                    self.executor.signal(workflow_id, Signal(name=name, payload=payload,
                                                             sender_id=self.sender(request)))
                except WorkflowError as exc:
                    form.add_error(None, str(exc))
                else:
                    self.log(request, workflow_id, f"Sent signal “{name}”.")
                    messages.success(request, f"Sent signal “{name}” to “{workflow_id}”.")
                    return HttpResponseRedirect(self.url("change", workflow_id))
        else:
            waiting = state is not None and state.is_open and state.wait_kind == "signal"
            form = SignalForm(initial={"name": state.wait_name if waiting else ""})
        return self.render(request, "signal.html", f"Send a signal to {workflow_id}", form=form,
                           state=state, workflow_id=workflow_id,
                           problem=_problem(state, workflow_id, "receive signals"),
                           page_url=self.url("change", workflow_id))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The cancel confirmation; a POST requests cancellation, logs it and redirects to the run
        page. A refusal (no such run, ended) is shown on the page.

        Raises:
            PermissionDenied: the user may not cancel runs (403).
        """
        self.require(request, self.has_cancel_permission)
        workflow_id = unquote(object_id)
        state = self.store.load(workflow_id, with_history=False)
        error = ""
        if request.method == "POST":
            try:
                self.executor.cancel(workflow_id)
            except (WorkflowNotFoundError, InvalidInputError) as exc:
                error = str(exc)
            else:
                self.log(request, workflow_id, "Requested cancel.")
                messages.success(request, f"Requested cancel of “{workflow_id}”: it ends as "
                                          f"canceled once its workflow has cleaned up.")
                return HttpResponseRedirect(self.url("change", workflow_id))
        return self.render(request, "cancel_confirmation.html", "Are you sure?", state=state,
                           workflow_id=workflow_id, error=error,
                           problem=_problem(state, workflow_id, "be canceled"),
                           page_url=self.url("change", workflow_id))


def _problem(state: WorkflowState | None, workflow_id: str, what: str) -> str:
    """Why a run cannot ``what`` (shown above its form), or ``""``."""
    if state is None:
        return f"There is no workflow with id “{workflow_id}”."
    if not state.is_open:
        return f"This run has ended ({state.status.value.replace('_', ' ')}); it cannot {what}."
    return ""


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"
