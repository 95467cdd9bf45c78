"""Engine errors map to HTTP statuses with a {"detail", "code"} body."""

from __future__ import annotations

import pytest

from beluga_workflows.api.exceptions import api_exception_for
from beluga_workflows.errors import (
    ConflictError,
    InvalidInputError,
    StoreError,
    WorkflowAlreadyExistsError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from beluga_workflows.executor import get_executor

from .conftest import url


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (WorkflowNotFoundError("x"), 404),
        (WorkflowNotRunningError("x"), 409),
        (WorkflowAlreadyExistsError("x"), 409),
        (ConflictError("x"), 409),
        (InvalidInputError("x"), 400),
        (StoreError("x"), 503),
    ],
)
def test_engine_errors_map_by_class(error, status):
    exc = api_exception_for(error)
    assert exc.status_code == status
    assert exc.detail == {"detail": "x", "code": error.code}


def test_errors_without_an_http_meaning_are_not_mapped():
    assert api_exception_for(WorkflowFailedError("x")) is None


def test_an_unavailable_store_is_503(staff, monkeypatch):
    store = get_executor().store

    def unavailable(*args, **kwargs):
        raise StoreError("connection refused")

    monkeypatch.setattr(store, "list", unavailable)
    monkeypatch.setattr(store, "load", unavailable)
    for response in (staff.get(url()), staff.get(url("x"))):
        assert response.status_code == 503
        assert response.json() == {"detail": "connection refused", "code": "provider_unavailable"}
