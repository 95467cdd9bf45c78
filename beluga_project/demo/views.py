"""Async demo views (served under ASGI: ``beluga_project.asgi``): start a workflow, signal it and
await its result with the executor's async twins, never blocking the event loop.

- ``POST /demo/async/runs/`` ``{"workflow": "demo.hello", "input": ..., "id"?}`` → 201
  ``{"id", "run_id"}`` (only the demo's ``demo.*`` workflows);
- ``POST /demo/async/runs/<id>/signal/`` ``{"name", "payload"?}`` → 202;
- ``GET /demo/async/runs/<id>/result/?timeout=30`` → 200 ``{"status", "result"}`` once it ended
  (504 while it is still running after ``timeout`` seconds, 409 if it failed or was canceled).

JSON endpoints without CSRF protection, as a demo of the API; a site would guard them.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from beluga_workflows import (
    InvalidInputError,
    Signal,
    WorkflowCanceledError,
    WorkflowError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowOptions,
    WorkflowTimeoutError,
    get_executor,
)

MAX_WAIT = 60.0


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as exc:
        raise InvalidInputError(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInputError("the body must be a JSON object")
    return body


def _refused(exc: WorkflowError) -> JsonResponse:
    status = 404 if isinstance(exc, WorkflowNotFoundError) else 400
    return JsonResponse({"error": str(exc), "code": getattr(exc, "code", "")}, status=status)


@csrf_exempt
@require_POST
async def start_run(request: HttpRequest) -> JsonResponse:
    """Start a demo workflow; answers once the run is recorded."""
    try:
        body = _body(request)
        name = body.get("workflow", "demo.hello")
        if not isinstance(name, str) or not name.startswith("demo."):
            raise InvalidInputError("workflow must name one of the demo's workflows (demo.*)")
        handle = await get_executor().aexecute(name, WorkflowOptions(id=body.get("id"),
                                                                     input=body.get("input")))
    except WorkflowError as exc:
        return _refused(exc)
    return JsonResponse({"id": handle.id, "run_id": handle.run_id}, status=201)


@csrf_exempt
@require_POST
async def signal_run(request: HttpRequest, workflow_id: str) -> JsonResponse:
    """Send a signal to the run; answers once it is accepted (never lost from then on)."""
    try:
        body = _body(request)
        await get_executor().asignal(workflow_id, Signal(name=body.get("name", ""),
                                                         payload=body.get("payload")))
    except WorkflowError as exc:
        return _refused(exc)
    return JsonResponse({"id": workflow_id, "accepted": True}, status=202)


@require_GET
async def run_result(request: HttpRequest, workflow_id: str) -> JsonResponse:
    """Await the run's end (at most ``?timeout=`` seconds) and answer its result."""
    try:
        timeout = min(float(request.GET.get("timeout", "30")), MAX_WAIT)
    except ValueError:
        return JsonResponse({"error": "timeout must be a number of seconds"}, status=400)
    try:
        handle = await get_executor().aget_handle(workflow_id)
        result = await handle.aresult(timeout=timeout)
    except TimeoutError:
        return JsonResponse({"id": workflow_id, "status": "running"}, status=504)
    except (WorkflowFailedError, WorkflowCanceledError, WorkflowTimeoutError) as exc:
        return JsonResponse({"id": workflow_id, "status": (await handle.astatus()).value,
                             "error": str(exc)}, status=409)
    except WorkflowError as exc:
        return _refused(exc)
    return JsonResponse({"id": workflow_id, "status": "completed", "result": result})
