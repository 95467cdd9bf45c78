"""Views that continue an ended run (API.md §11): resume it, or fork it from one of its steps.

Both start a new run through the executor (``resume``, ``fork``), so writes need what a start
needs (``workflow_action = "start"``). An ``InvalidInputError`` with code ``conflict`` (an open
run, a completed run to resume) answers 409, as ``exceptions`` maps it.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from ..engine.errors import InvalidInputError
from ..engine.registry import registered_workflows
from .exceptions import BadRequest
from .serializers import ErrorSerializer, ForkWorkflowSerializer, WorkflowSerializer
from .views import URL_NAMESPACE, WORKFLOW_ID, WorkflowAPIView, _responses

__all__ = ["WorkflowForkView", "WorkflowResumeView"]

_RESUME_409 = OpenApiResponse(
    ErrorSerializer, description="The run is still open or has completed (only a failed, "
                                 "canceled or timed-out run resumes), or another run of the id "
                                 "opened meanwhile.",
)
_FORK_409 = OpenApiResponse(
    ErrorSerializer, description="The run is still open (fork an ended run), or a run of the "
                                 "new `id` is open.",
)


class WorkflowResumeView(WorkflowAPIView):
    """``/workflows/{id}/resume/``: continue a failed, canceled or timed-out run."""

    operation = "resume"
    workflow_action = "start"  # a resumed run is a new run: the permission of a start

    @extend_schema(
        operation_id="workflows_resume",
        summary="Resume an ended workflow",
        description="Start a new run of the id that replays the steps the failed, canceled or "
                    "timed-out run finished (they do not run again) and runs the step that "
                    "failed, and what follows, again. It keeps the run's input; its first "
                    "event records `{\"resumed_from\": <old run id>}`. Answers with the new "
                    "run.",
        parameters=[WORKFLOW_ID],
        request=None,
        responses=_responses(r202=WorkflowSerializer, r404=ErrorSerializer, r409=_RESUME_409),
        tags=["workflows"],
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        """Resume the ended run as a new run of the same id.

        Answers 202 with the new run; 404 for an unknown id; 409 when the run is open or
        completed, or another run of the id opened meanwhile.
        """
        handle = self.executor.resume(self.workflow_id(self.kwargs))
        return Response(WorkflowSerializer(handle.state()).data, status=status.HTTP_202_ACCEPTED)


class WorkflowForkView(WorkflowAPIView):
    """``/workflows/{id}/fork/``: a new run of an ended run, replaying its first steps."""

    operation = "fork"
    workflow_action = "start"

    @extend_schema(
        operation_id="workflows_fork",
        summary="Fork an ended workflow",
        description="Start a new run (of the ended run's workflow and input, under a new id) "
                    "that replays the events before `from_event` and runs on from there; the "
                    "ended run is left as it is. The new run's first event records "
                    "`{\"forked_from\": {\"workflow_id\", \"run_id\", \"from_event\"}}`.",
        parameters=[WORKFLOW_ID],
        request=ForkWorkflowSerializer,
        responses=_responses(
            r201=OpenApiResponse(WorkflowSerializer, description="Forked: the new run is "
                                 "recorded and scheduled; `Location` is its URL."),
            r400=OpenApiResponse(ErrorSerializer, description="The body is not valid: "
                                 "`from_event` is no step's first event of the run, or `id` is "
                                 "no valid workflow id (`errors` names the field)."),
            r404=ErrorSerializer, r409=_FORK_409,
        ),
        examples=[OpenApiExample("retry from step 3", request_only=True,
                                 value={"from_event": 6, "id": "order-123-retry"})],
        tags=["workflows"],
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        """Fork the ended run from ``from_event`` (default: the start) as ``id``.

        Answers 201 with the new run and a ``Location`` header; 400 for an invalid body or a
        ``from_event`` inside a step or past the history; 404 for an unknown id; 409 when the run
        is open or a run of ``id`` is.
        """
        workflow_id = self.workflow_id(self.kwargs)
        data = self.parse(ForkWorkflowSerializer, request.data)
        from_event = data.get("from_event")
        try:
            handle = self.executor.fork(workflow_id, from_event=from_event, id=data.get("id"))
        except InvalidInputError as exc:
            raise self._refusal(exc, workflow_id, from_event) from None
        location = reverse(f"{URL_NAMESPACE}:workflow-detail", kwargs={"workflow_id": handle.id})
        return Response(WorkflowSerializer(handle.state()).data, status=status.HTTP_201_CREATED,
                        headers={"Location": location})

    def _refusal(self, exc: InvalidInputError, workflow_id: str, from_event: int | None
                 ) -> Exception:
        """The answer to a refused fork: a 400 naming ``from_event`` when it was the cause,
        else the engine error as it is (a conflict, an unregistered workflow type).

        The id was validated already, so an ``invalid_input`` refusal of a run whose type is
        registered is about ``from_event``.
        """
        if exc.code != InvalidInputError.code or from_event is None:
            return exc
        state = self.executor.store.load(workflow_id, with_history=False)
        if state is None or state.workflow_type not in registered_workflows():
            return exc
        message = str(exc)
        detail = message if message.startswith("from_event") else f"from_event: {message}"
        return BadRequest(detail, errors={"from_event": [message]})
