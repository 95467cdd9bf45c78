"""The run pages that continue an ended run (API.md §11): resume it, or fork it from a step.

Both start a new run, so they need ``beluga_workflows.start_workflow``. Resume asks for a
confirmation (the new run replaces the ended one under its id), then calls
``executor.resume``; a refusal comes back as an error message on the run page, having changed
nothing. Fork shows the run's steps, one row per operation with its first event, each a point
to fork from (``fork_points``), and an optional new id; the engine judges what is submitted and
its refusal is shown on the form.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from ..engine.errors import InvalidInputError, WorkflowAlreadyExistsError, WorkflowError
from ..engine.registry import registered_workflows
from ..engine.types import HistoryEvent, WorkflowState, WorkflowStatus
from .base import WorkflowAdminBase
from .forms import ForkForm

__all__ = ["RESUMABLE", "STEP_EVENTS", "ForkPoint", "LifecyclePages", "fork_points"]

# The fork page reads at most this many events of a run (as the run page's chart does).
STEP_EVENTS = 5000
# The ended statuses a run can be resumed from (a completed run can only be forked).
RESUMABLE = frozenset({WorkflowStatus.FAILED, WorkflowStatus.CANCELED, WorkflowStatus.TIMED_OUT})


@dataclass(frozen=True)
class ForkPoint:
    """One step (operation) of a run, as the fork page lists it.

    Attributes:
        op: the step's number.
        first: the id of its first event, the ``from_event`` that forks from it.
        last: the id of its last event.
        kind: its first event's type (``activity_started``, ``timer_started``...).
        name: the activity, timer, signal or child it is about.
        at: when it began.
        inside: the step whose events lie on both sides of ``first`` (parallel steps), so no
            fork can start here; ``0`` when a fork can.
    """

    op: int
    first: int
    last: int
    kind: str
    name: str
    at: datetime
    inside: int = 0


def fork_points(history: list[HistoryEvent]) -> list[ForkPoint]:
    """The steps of ``history`` in order, each with whether a fork can start at its first event.

    The rule is ``engine.lifecycle.forked_history``'s (which judges the fork itself): the first
    event of a step none of whose steps has events on both sides of it. A sweep over the steps
    in order of their first event finds, for each, the earlier step reaching furthest.
    """
    ops: dict[int, list[HistoryEvent]] = {}
    for event in history:
        if event.op:
            ops.setdefault(event.op, []).append(event)
    steps = sorted(ops.items(), key=lambda item: item[1][0].id)
    points = []
    reach, reacher = 0, 0  # the furthest last event id of the steps begun so far, and whose
    for op, events in steps:
        first, last = events[0], events[-1]
        inside = reacher if reach >= first.id else 0
        name = next((e.name for e in events if e.name), "")
        points.append(ForkPoint(op, first.id, last.id, first.type.value, name, first.timestamp,
                                inside))
        if last.id > reach:
            reach, reacher = last.id, op
    return points


class LifecyclePages(WorkflowAdminBase):
    """The resume confirmation and the fork form of ``WorkflowStateAdmin``."""

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The resume confirmation; a POST resumes the run, logs it and redirects to the run
        page with a success message, or with the executor's refusal as an error message (an
        open or completed run, a run opened meanwhile), nothing changed.

        Raises:
            PermissionDenied: the user may not start runs (403).
        """
        self.require(request, self.has_add_permission)
        workflow_id = unquote(object_id)
        state, missing = self.load_or_redirect(request, workflow_id)
        if missing:
            return missing
        page = HttpResponseRedirect(self.url("change", workflow_id))
        if request.method == "POST":
            try:
                handle = self.executor.resume(workflow_id)
            except WorkflowError as exc:
                messages.error(request, f"Could not resume “{workflow_id}”: {exc}")
                return page
            self.log(request, workflow_id, f"Resumed run {state.run_id} as run {handle.run_id}.")
            messages.success(request, f"Resumed workflow “{workflow_id}”: the finished steps are "
                                      f"replayed and the rest runs again (run {handle.run_id}).")
            return page
        return self.render(request, "resume_confirmation.html", "Resume this run?", state=state,
                           workflow_id=workflow_id, problem=_resume_problem(state),
                           page_url=self.url("change", workflow_id))

    def fork_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The fork form: the run's steps, each a point to fork from, and an optional new id. A
        valid POST forks the run, logs it and redirects to the new run's page; a refusal (the
        run is open, the step cannot be forked from, the new id's run is open) is shown on the
        form.

        Raises:
            PermissionDenied: the user may not start runs (403).
        """
        self.require(request, self.has_add_permission)
        workflow_id = unquote(object_id)
        state, missing = self.load_or_redirect(request, workflow_id)
        if missing:
            return missing
        state = replace(state, history=self.store.history(workflow_id, limit=STEP_EVENTS))
        points = fork_points(state.history)
        if request.method == "POST":
            form = ForkForm(request.POST)
            if form.is_valid():
                handle = self._fork(request, form, state)
                if handle is not None:
                    return HttpResponseRedirect(self.url("change", handle.id))
        else:
            form = ForkForm(initial={"from_event": request.GET.get("from_event", "")})
        chosen = str(form["from_event"].value() or "")
        return self.render(request, "fork.html", f"Fork {workflow_id}", state=state,
                           workflow_id=workflow_id, form=form, points=points, chosen=chosen,
                           problem="" if not state.is_open else (
                               "This run is still running: fork it once it has ended (or "
                               "cancel it first)."),
                           page_url=self.url("change", workflow_id))

    def _fork(self, request: HttpRequest, form: ForkForm, state: WorkflowState):
        """Fork ``state``'s run as the valid ``form`` says; the new run's handle, or ``None``
        with the refusal on the form."""
        workflow_id = state.workflow_id
        from_event, new_id = form.cleaned_data["from_event"], form.cleaned_data["new_id"]
        try:
            handle = self.executor.fork(workflow_id, from_event=from_event, id=new_id)
        except WorkflowAlreadyExistsError as exc:
            form.add_error("new_id", str(exc))
        except InvalidInputError as exc:
            # The form checked the id; of a registered type, another refusal is the event's.
            about_event = (exc.code == InvalidInputError.code and from_event is not None
                           and state.workflow_type in registered_workflows())
            form.add_error("from_event" if about_event else None, str(exc))
        except WorkflowError as exc:
            form.add_error(None, str(exc))
        else:
            where = f"event {from_event}" if from_event else "the start"
            self.log(request, handle.id, f"Forked from “{workflow_id}” at {where}.", added=True)
            messages.success(request, f"Forked “{workflow_id}” from {where} as “{handle.id}”.")
            return handle
        return None


def _resume_problem(state: WorkflowState) -> str:
    """Why the run cannot be resumed (shown instead of the button), or ``""``."""
    if state.is_open:
        return "This run is still running: only an ended run can be resumed."
    if state.status not in RESUMABLE:
        return ("This run has completed: only a failed, canceled or timed-out run can be "
                "resumed (fork it to run it again).")
    return ""
