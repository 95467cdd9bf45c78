"""API errors: engine errors become DRF exceptions with a status code and ``{"detail", "code"}``.

==============================  ======
engine error                    status
==============================  ======
``WorkflowNotFoundError``       404
``WorkflowNotRunningError``     409    (checked before its base ``InvalidInputError``)
``WorkflowAlreadyExistsError``  409
``ConflictError``               409    (a concurrent writer won; retrying may succeed)
``InvalidInputError``           400    (but 404 with code ``no_human_task``: nothing to answer,
                                       and 409 with code ``conflict``: the run's state forbids
                                       it, e.g. resuming an open or completed run)
``RateLimitExceededError``      429    (with ``Retry-After``: the seconds until a start conforms)
``StoreError``                  503
==============================  ======
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.settings import api_settings

from ..engine.errors import (
    ConflictError,
    InvalidInputError,
    RateLimitExceededError,
    StoreError,
    WorkflowAlreadyExistsError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ..human import NO_HUMAN_TASK

__all__ = [
    "BadRequest",
    "Conflict",
    "NotFound",
    "ServiceUnavailable",
    "TooManyRequests",
    "WorkflowAPIException",
    "api_exception_for",
    "summarize_errors",
]


class WorkflowAPIException(APIException):
    """An API error whose body is ``{"detail": message, "code": code}`` (+ ``errors``)."""

    def __init__(self, detail: str, code: str | None = None, errors: dict[str, Any] | None = None):
        code = code or self.default_code
        body: dict[str, Any] = {"detail": " ".join(str(detail).split()), "code": code}
        if errors:
            body["errors"] = errors
        super().__init__(body, code)


class BadRequest(WorkflowAPIException):
    """400 ``invalid_input``: a malformed request, or a value the engine refused."""
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request is not valid."
    default_code = "invalid_input"


class NotFound(WorkflowAPIException):
    """404 ``not_found``: no workflow with that id (``no_human_task``: no task to answer)."""
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = "No such workflow."
    default_code = "not_found"


class Conflict(WorkflowAPIException):
    """409 ``conflict``: the run's state forbids it (open for a start, a resume or a fork,
    completed for a resume, ended for a signal or cancel), or a concurrent writer won.
    """
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The workflow is not in a state that allows this."
    default_code = "conflict"


class ServiceUnavailable(WorkflowAPIException):
    """503 ``provider_unavailable``: the workflow store cannot be reached; retry later."""
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The workflow store is unavailable."
    default_code = "provider_unavailable"


class TooManyRequests(WorkflowAPIException):
    """429 ``rate_limited``: the workflow's ``RateLimit`` refuses this start; nothing was started.

    Attributes:
        wait: whole seconds (at least 1) until a start of the same key conforms, which DRF sends
            as the ``Retry-After`` header; ``None`` when unknown.
    """
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "The workflow's rate limit is reached; retry later."
    default_code = "rate_limited"

    def __init__(self, detail: str, code: str | None = None, errors: dict[str, Any] | None = None,
                 *, retry_at: datetime | None = None, now: datetime | None = None):
        super().__init__(detail, code, errors)
        self.wait = None
        if retry_at is not None:
            seconds = (retry_at - (now or timezone.now())).total_seconds()
            self.wait = max(1, math.ceil(seconds))


# Most specific first: WorkflowNotRunningError is an InvalidInputError, ConflictError a StoreError.
_MAPPING: tuple[tuple[type[WorkflowError], type[WorkflowAPIException]], ...] = (
    (WorkflowNotFoundError, NotFound),
    (WorkflowNotRunningError, Conflict),
    (WorkflowAlreadyExistsError, Conflict),
    (ConflictError, Conflict),
    (InvalidInputError, BadRequest),
    (StoreError, ServiceUnavailable),
)


# Codes that name a missing resource more precisely than their class does.
_BY_CODE: dict[str, type[WorkflowAPIException]] = {
    NO_HUMAN_TASK: NotFound,  # answering a run that waits for no human task: no such task
    "conflict": Conflict,  # an InvalidInputError the run's state causes (resume, fork)
}


def api_exception_for(error: WorkflowError, now: datetime | None = None) -> APIException | None:
    """The API exception standing for an engine error, or ``None`` when it has no HTTP meaning.

    ``now``: the executor's clock, which a rate limit's ``retry_at`` is counted from (default:
    the wall clock).
    """
    if error.code in _BY_CODE:
        api_class = _BY_CODE[error.code]
        return api_class(str(error) or api_class.default_detail, error.code)
    if isinstance(error, RateLimitExceededError):
        return TooManyRequests(str(error) or TooManyRequests.default_detail, error.code,
                               retry_at=error.retry_at, now=now)
    for error_class, api_class in _MAPPING:
        if isinstance(error, error_class):
            return api_class(str(error) or api_class.default_detail, error.code)
    return None


def summarize_errors(errors: Any) -> str:
    """One line naming each invalid field of a serializer's ``errors``."""
    if isinstance(errors, dict):
        return "; ".join(
            summarize_errors(value) if field == api_settings.NON_FIELD_ERRORS_KEY
            else f"{field}: {summarize_errors(value)}"
            for field, value in errors.items()
        )
    if isinstance(errors, list):
        return " ".join(summarize_errors(item) for item in errors)
    return str(errors)
