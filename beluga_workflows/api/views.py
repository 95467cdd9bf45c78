"""Views of the REST API: parse the request, call the executor, present the answer.

Each operation (start, signal, cancel, query, ...) is the executor's; a view only turns HTTP into
its arguments and its result or ``WorkflowError`` into HTTP (see ``exceptions``).
"""

from __future__ import annotations

import functools
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from ..engine.errors import InvalidInputError, WorkflowError
from ..engine.executor import MAX_ID_LENGTH, WorkflowExecutor, validate_workflow_id
from ..engine.types import Signal, WorkflowFilter, WorkflowOptions
from ..human import (
    NO_HUMAN_TASK,
    answer_human_task,
    count_pending_human_tasks,
    list_pending_human_tasks,
    pending_human_task,
)
from ..runtimes import get_executor
from .exceptions import BadRequest, NotFound, api_exception_for, summarize_errors
from .fields import WORKFLOW_ID_PATTERN
from .permissions import permissions_for
from .routing import choose_reading
from .serializers import (
    ErrorSerializer,
    HistoryEventSerializer,
    HistoryPageSerializer,
    HistoryQuerySerializer,
    HumanAnswerAcceptedSerializer,
    HumanAnswerSerializer,
    HumanTaskListQuerySerializer,
    HumanTaskPageSerializer,
    HumanTaskSerializer,
    ListQuerySerializer,
    QueryResultSerializer,
    SignalAcceptedSerializer,
    SignalRequestSerializer,
    StartWorkflowSerializer,
    WorkflowPageSerializer,
    WorkflowSerializer,
)

__all__ = [
    "HumanTaskListView",
    "WorkflowCancelView",
    "WorkflowDetailView",
    "WorkflowHistoryView",
    "WorkflowHumanTaskView",
    "WorkflowListView",
    "WorkflowQueryView",
    "WorkflowSignalView",
]

URL_NAMESPACE = "beluga_workflows_api"

WORKFLOW_ID = OpenApiParameter(
    "workflow_id",
    {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": WORKFLOW_ID_PATTERN},
    OpenApiParameter.PATH,
    description="The workflow id. It may contain `/`, spaces and any unicode; percent-encode "
                "what a URL path cannot hold (`%`, `?`, `#`, spaces).",
    examples=[OpenApiExample("order", value="order-123")],
)
# The same parameter with an example run that asks a person (so the docs show a task).
HUMAN_TASK_WORKFLOW_ID = OpenApiParameter(
    WORKFLOW_ID.name, WORKFLOW_ID.type, WORKFLOW_ID.location, description=WORKFLOW_ID.description,
    examples=[OpenApiExample("review", value="review-123")],
)
QUERY_TYPE = OpenApiParameter(
    "query_type", OpenApiTypes.STR, OpenApiParameter.PATH,
    description="`status`, `result`, `history`, or a query handler the workflow sets.",
)
_DESCRIPTIONS = {
    200: "OK.",
    201: "Started: the run is recorded and scheduled.",
    202: "Accepted.",
    400: "The request is not valid; `detail` says why (and `errors` names the fields).",
    401: "No valid credentials were given.",
    403: "These credentials do not allow this.",
    404: "No workflow with that id.",
    409: "Conflict: the id's run is still open (start, resume, fork) or has ended (signal, "
         "cancel).",
    429: "The workflow's rate limit refuses this start (code `rate_limited`); nothing was "
         "started. `Retry-After` gives the seconds until a start of the same key conforms.",
    503: "The workflow store is unavailable; retry later.",
}


_RATE_LIMITED = OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[429])
# The header of a 429 answer (a response header: ``response=[429]``).
RETRY_AFTER = OpenApiParameter(
    "Retry-After", int, OpenApiParameter.HEADER, response=[429],
    description="Seconds until a start of the same key conforms to the rate limit.",
)
_HUMAN_TASK_404 = OpenApiResponse(
    ErrorSerializer, description="No workflow with that id, or its run waits for no human task "
                                 "(it was answered or timed out; code `no_human_task`).",
)


def _responses(**codes: Any) -> dict[int, OpenApiResponse]:
    """The documented answers: ``r200=Serializer`` (or an ``OpenApiResponse``) etc., plus 401,
    403 and 503 everywhere."""
    responses = {int(code[1:]): serializer for code, serializer in codes.items()}
    for code in (401, 403, 503):
        responses[code] = ErrorSerializer
    return {code: (serializer if isinstance(serializer, OpenApiResponse)
                   else OpenApiResponse(serializer, description=_DESCRIPTIONS[code]))
            for code, serializer in sorted(responses.items())}


def _page_links(request: Request, offset: int, limit: int, count: int
                ) -> tuple[str | None, str | None]:
    """The ``next`` and ``previous`` URLs of an offset page of ``count`` items."""
    url = request.build_absolute_uri()
    next_url = replace_query_param(url, "offset", offset + limit) if offset + limit < count else None
    previous_url = None
    if offset > 0:
        previous_url = (replace_query_param(url, "offset", offset - limit)
                        if offset - limit > 0 else remove_query_param(url, "offset"))
    return next_url, previous_url


def _sender(request: Request) -> str:
    """Who sends a signal or an answer, as recorded with it."""
    return f"api:{request.user.get_username()}" if request.user.is_authenticated else "api"


class WorkflowAPIView(APIView):
    """What every workflow view shares: permissions, 401 challenges, engine errors, id routing.

    Attributes:
        operation: this view's name in ``routing`` ("detail", "history", ...).
        workflow_action: what a write does ("start", "signal", "cancel"), for permission classes.
    """

    operation = ""
    workflow_action: str | None = None
    parser_classes = [JSONParser]  # JSON in: inputs and payloads are JSON values

    def dispatch(self, request, *args: Any, **kwargs: Any):
        """Handle the request as the operation its URL really names.

        A workflow id may contain ``/``, so the route Django matched may be another operation's:
        ``routing.choose_reading`` picks the reading, and the view of that operation answers.
        """
        # An id may contain "/", so the route Django matched may not be the one meant: see routing.
        if "workflow_id" in kwargs:
            reading = choose_reading(self.operation, kwargs, request.method)
            if reading.operation != self.operation:
                return views_by_operation()[reading.operation].as_view()(request,
                                                                         **reading.kwargs)
            kwargs = reading.kwargs
        return super().dispatch(request, *args, **kwargs)

    def get_permissions(self):
        """``API_READ_PERMISSION_CLASSES`` for safe methods, ``API_WRITE_PERMISSION_CLASSES``
        otherwise; every one must allow the request.
        """
        return permissions_for(self.request.method)

    def get_authenticate_header(self, request: Request) -> str | None:
        """The first ``WWW-Authenticate`` challenge any authenticator offers, so a request
        without credentials gets 401 whenever one can be answered; ``None`` (a 403) otherwise.
        """
        # Answer 401 with a challenge when any authenticator can give one (DRF asks only the
        # first, and SessionAuthentication has none), 403 otherwise.
        for authenticator in self.get_authenticators():
            header = authenticator.authenticate_header(request)
            if header:
                return header
        return None

    def handle_exception(self, exc: Exception) -> Response:
        """Answer an engine error with its status and ``{"detail", "code"}`` body (400, 404,
        409, 429 with ``Retry-After``, 503: see ``exceptions``); anything else is DRF's to handle.
        """
        if isinstance(exc, WorkflowError):
            exc = api_exception_for(exc, now=self.executor.clock.now()) or exc
        return super().handle_exception(exc)

    # -- helpers for subclasses -----------------------------------------------------------------

    @property
    def executor(self) -> WorkflowExecutor:
        """The configured executor (``get_executor()``), built once per process."""
        return get_executor()

    @staticmethod
    def parse(serializer_class: type[Serializer], data: Any) -> dict[str, Any]:
        """Validated data, or a 400 naming each invalid field."""
        serializer = serializer_class(data=data)
        if not serializer.is_valid():
            raise BadRequest(summarize_errors(serializer.errors), errors=serializer.errors)
        return serializer.validated_data

    @staticmethod
    def workflow_id(kwargs: dict[str, Any]) -> str:
        """The URL's workflow id; one no workflow can have is a 404."""
        workflow_id = kwargs["workflow_id"]
        try:
            return validate_workflow_id(workflow_id)
        except InvalidInputError as exc:
            raise NotFound(f"no workflow can have the id {workflow_id!r}: {exc}") from None


class WorkflowListView(WorkflowAPIView):
    """``/workflows/``: list runs, start a run."""

    operation = "list"
    workflow_action = "start"

    @extend_schema(
        operation_id="workflows_list",
        summary="List workflows",
        description="The latest run of each workflow id, newest first, a page at a time.",
        parameters=[ListQuerySerializer],
        responses=_responses(r200=WorkflowPageSerializer, r400=ErrorSerializer),
        tags=["workflows"],
    )
    def get(self, request: Request) -> Response:
        """List the latest run of each id, newest first, by ``status``, ``workflow_type`` and
        ``parent_id`` (a run's children).

        Answers 200 with a page (``count``, ``next``, ``previous``, ``results``); 400 for a bad
        query parameter.
        """
        params = self.parse(ListQuerySerializer, request.query_params)
        limit, offset = params["limit"], params["offset"]
        workflow_filter = WorkflowFilter(
            status=params.get("status"), workflow_type=params.get("workflow_type") or None,
            parent_id=params.get("parent_id") or None, limit=limit, offset=offset,
        )
        store = self.executor.store
        states = store.list(workflow_filter)
        count = store.count(workflow_filter)
        next_url, previous_url = _page_links(request, offset, limit, count)
        return Response({
            "count": count,
            "next": next_url,
            "previous": previous_url,
            "results": WorkflowSerializer(states, many=True).data,
        })

    @extend_schema(
        operation_id="workflows_start",
        summary="Start a workflow",
        description="Record a new run and schedule it; answers at once, without waiting for it.",
        request=StartWorkflowSerializer,
        responses=_responses(r201=WorkflowSerializer, r400=ErrorSerializer, r409=ErrorSerializer,
                             r429=_RATE_LIMITED),
        parameters=[RETRY_AFTER],
        examples=[OpenApiExample(
            "hello", request_only=True,
            value={"workflow_type": "demo.hello", "id": "hello/ann", "input": "Ann",
                   "timeout": 60},
        )],
        tags=["workflows"],
    )
    def post(self, request: Request) -> Response:
        """Record a new run and schedule it, without waiting for it.

        Answers 201 with the run and a ``Location`` header; 400 for an invalid body or an
        unregistered type; 409 while a run of the id is still open; 429 (with ``Retry-After``)
        when the workflow's ``RateLimit`` refuses the start.
        """
        data = self.parse(StartWorkflowSerializer, request.data)
        handle = self.executor.execute(
            data["workflow_type"],
            WorkflowOptions(id=data.get("id"), input=data.get("input"),
                            timeout=data.get("timeout")),
        )
        state = handle.state()
        location = reverse(f"{URL_NAMESPACE}:workflow-detail",
                           kwargs={"workflow_id": handle.id})
        return Response(WorkflowSerializer(state).data, status=status.HTTP_201_CREATED,
                        headers={"Location": location})


class WorkflowDetailView(WorkflowAPIView):
    """``/workflows/{id}/``: one workflow."""

    operation = "detail"

    @extend_schema(
        operation_id="workflows_retrieve",
        summary="Show a workflow",
        parameters=[WORKFLOW_ID],
        responses=_responses(r200=WorkflowSerializer, r404=ErrorSerializer),
        tags=["workflows"],
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        handle = self.executor.get_handle(self.workflow_id(self.kwargs))
        return Response(WorkflowSerializer(handle.state()).data)


class WorkflowHistoryView(WorkflowAPIView):
    """``/workflows/{id}/history/``: the run's events in order, paginated by sequence number."""

    operation = "history"

    @extend_schema(
        operation_id="workflows_history",
        summary="A workflow's history",
        description="The latest run's events in order. Follow `next` (or pass `after` = the last "
                    "`id` you have) for the following page.",
        parameters=[WORKFLOW_ID, HistoryQuerySerializer],
        responses=_responses(r200=HistoryPageSerializer, r400=ErrorSerializer,
                             r404=ErrorSerializer),
        tags=["workflows"],
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        """Page through the run's events by number: up to ``limit`` of them after ``after``.

        Answers 200 with the events and a ``next`` link when more follow; 400 for a bad query
        parameter; 404 for an unknown id.
        """
        handle = self.executor.get_handle(self.workflow_id(self.kwargs))
        params = self.parse(HistoryQuerySerializer, request.query_params)
        limit = params["limit"]
        # One event more than the page tells whether a next page exists.
        events = self.executor.store.history(handle.id, after=params["after"], limit=limit + 1)
        next_url = None
        if len(events) > limit:
            events = events[:limit]
            next_url = replace_query_param(request.build_absolute_uri(), "after", events[-1].id)
        return Response({
            "workflow_id": handle.id,
            "run_id": handle.run_id,
            "next": next_url,
            "results": HistoryEventSerializer(events, many=True).data,
        })


class WorkflowSignalView(WorkflowAPIView):
    """``/workflows/{id}/signal/``: send a signal to the open run."""

    operation = "signal"
    workflow_action = "signal"

    @extend_schema(
        operation_id="workflows_signal",
        summary="Signal a workflow",
        description="Put a signal in the run's inbox. Once accepted (202) it is never lost and "
                    "is received once, in order with other signals of its name.",
        parameters=[WORKFLOW_ID],
        request=SignalRequestSerializer,
        responses=_responses(r202=SignalAcceptedSerializer, r400=ErrorSerializer,
                             r404=ErrorSerializer, r409=ErrorSerializer),
        examples=[OpenApiExample("approval", request_only=True,
                                 value={"name": "approval", "payload": {"by": "ann"}})],
        tags=["workflows"],
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        """File a signal in the open run's inbox (the sender is ``api:<username>``).

        Answers 202 with the signal and its inbox id; 400 for an invalid body; 404 for an
        unknown id; 409 when the run has ended.
        """
        workflow_id = self.workflow_id(self.kwargs)
        data = self.parse(SignalRequestSerializer, request.data)
        accepted = self.executor.signal(
            workflow_id,
            Signal(name=data["name"], payload=data.get("payload"), sender_id=_sender(request)),
        )
        body = {"workflow_id": workflow_id, **accepted.to_dict()}
        return Response(SignalAcceptedSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class WorkflowCancelView(WorkflowAPIView):
    """``/workflows/{id}/cancel/``: request cancellation of the open run."""

    operation = "cancel"
    workflow_action = "cancel"

    @extend_schema(
        operation_id="workflows_cancel",
        summary="Cancel a workflow",
        description="Request cancellation: the workflow's next step raises a cancel error it may "
                    "clean up after. Answers with the workflow as it is now.",
        parameters=[WORKFLOW_ID],
        request=None,
        responses=_responses(r202=WorkflowSerializer, r404=ErrorSerializer,
                             r409=ErrorSerializer),
        tags=["workflows"],
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        """Request cancellation of the open run.

        Answers 202 with the run as it is now; 404 for an unknown id; 409 when it has ended.
        """
        workflow_id = self.workflow_id(self.kwargs)
        self.executor.cancel(workflow_id)
        state = self.executor.get_handle(workflow_id).state()
        return Response(WorkflowSerializer(state).data, status=status.HTTP_202_ACCEPTED)


class WorkflowQueryView(WorkflowAPIView):
    """``/workflows/{id}/query/{query_type}/``: ask the run a question."""

    operation = "query"

    @extend_schema(
        operation_id="workflows_query",
        summary="Query a workflow",
        parameters=[WORKFLOW_ID, QUERY_TYPE],
        responses=_responses(r200=QueryResultSerializer, r400=ErrorSerializer,
                             r404=ErrorSerializer),
        tags=["workflows"],
    )
    def get(self, request: Request, workflow_id: str, query_type: str) -> Response:
        answer = self.executor.query(self.workflow_id(self.kwargs), query_type)
        return Response(QueryResultSerializer({"result": answer}).data)


class HumanTaskListView(WorkflowAPIView):
    """``/human-tasks/``: the ``HumanActivity`` requests waiting for a person."""

    operation = "human_task_list"

    @extend_schema(
        operation_id="human_tasks_list",
        summary="List pending human tasks",
        description="The requests of `HumanActivity` steps waiting for a person's answer, one per "
                    "waiting run, the newest runs first, a page at a time. A task answered while "
                    "the page is read is left out of it.",
        parameters=[HumanTaskListQuerySerializer],
        responses=_responses(r200=HumanTaskPageSerializer, r400=ErrorSerializer),
        tags=["human tasks"],
    )
    def get(self, request: Request) -> Response:
        """List the pending human tasks, one per waiting run, newest runs first.

        Answers 200 with a page (``count``, ``next``, ``previous``, ``results``); 400 for a bad
        query parameter.
        """
        params = self.parse(HumanTaskListQuerySerializer, request.query_params)
        limit, offset = params["limit"], params["offset"]
        workflow_type = params.get("workflow_type") or None
        store = self.executor.store
        waiting = list_pending_human_tasks(store, workflow_type=workflow_type, offset=offset,
                                           limit=limit)
        count = count_pending_human_tasks(store, workflow_type=workflow_type)
        # A run answered since the store listed it has no task any more: left out of the page.
        tasks = [run.task for run in waiting if run.task is not None]
        next_url, previous_url = _page_links(request, offset, limit, count)
        return Response({
            "count": count,
            "next": next_url,
            "previous": previous_url,
            "results": HumanTaskSerializer(tasks, many=True).data,
        })


class WorkflowHumanTaskView(WorkflowAPIView):
    """``/workflows/{id}/human-task/``: the request the run waits for; answer it."""

    operation = "human_task"
    workflow_action = "signal"  # an answer is a signal: the same permission as the admin's

    @extend_schema(
        operation_id="workflows_human_task",
        summary="A workflow's pending human task",
        description="The `HumanActivity` request the run waits for a person to answer.",
        parameters=[HUMAN_TASK_WORKFLOW_ID],
        responses=_responses(r200=HumanTaskSerializer, r404=_HUMAN_TASK_404),
        tags=["human tasks"],
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        """Show the ``HumanActivity`` request the run waits for a person to answer.

        Answers 200 with the task; 404 for an unknown id, or (code ``no_human_task``) a run that
        waits for no human task.
        """
        workflow_id = self.workflow_id(self.kwargs)
        state = self.executor.store.load(workflow_id)
        if state is None:
            raise NotFound(f"no workflow with id {workflow_id!r}")
        task = pending_human_task(state, state.history)
        if task is None:
            raise NotFound(f"workflow {workflow_id!r} waits for no human task "
                           f"({state.status.value})", code=NO_HUMAN_TASK)
        return Response(HumanTaskSerializer(task).data)

    @extend_schema(
        operation_id="workflows_answer_human_task",
        summary="Answer a workflow's human task",
        description="Answer the request the run waits for; the workflow resumes with "
                    "`{\"decision\", \"feedback\", \"modified\"}`. Once accepted (202) the answer "
                    "is never lost. Pass the task's `request_id` so an answer to a request the "
                    "run has moved on from is refused.",
        parameters=[HUMAN_TASK_WORKFLOW_ID],
        request=HumanAnswerSerializer,
        responses=_responses(
            r202=HumanAnswerAcceptedSerializer,
            r400=OpenApiResponse(
                ErrorSerializer, description="The body is not valid, the decision is not one "
                "of the task's choices, or the run now waits for another request than "
                "`request_id` (code `stale_human_task`).",
            ),
            r404=_HUMAN_TASK_404,
            r409=OpenApiResponse(ErrorSerializer, description="The run has ended."),
        ),
        examples=[OpenApiExample("approve", request_only=True,
                                 value={"decision": "approve", "feedback": "fine by me"})],
        tags=["human tasks"],
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        """Answer the pending human task; the answer is filed as a signal, so it is never lost.

        Answers 202 with the accepted answer; 400 for an invalid body, a decision not offered or
        a stale ``request_id``; 404 when there is no task to answer; 409 when the run has ended.
        """
        workflow_id = self.workflow_id(self.kwargs)
        data = self.parse(HumanAnswerSerializer, request.data)
        accepted = answer_human_task(
            workflow_id, data["decision"], data.get("feedback", ""), data["modified"],
            request_id=data["request_id"], sender_id=_sender(request), executor=self.executor,
        )
        body = {"workflow_id": workflow_id, "request_id": accepted.name, **accepted.payload,
                "sent_at": accepted.sent_at, "sender_id": accepted.sender_id}
        return Response(HumanAnswerAcceptedSerializer(body).data, status=status.HTTP_202_ACCEPTED)


@functools.cache
def views_by_operation() -> dict[str, type[WorkflowAPIView]]:
    """The view of each operation a URL below ``workflows/{id}/`` names (see ``routing``)."""
    from .lifecycle import WorkflowForkView, WorkflowResumeView  # they stand on this module

    return {view.operation: view for view in (
        WorkflowListView, WorkflowDetailView, WorkflowHistoryView, WorkflowSignalView,
        WorkflowCancelView, WorkflowResumeView, WorkflowForkView, WorkflowQueryView,
        WorkflowHumanTaskView)}
