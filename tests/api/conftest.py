"""API test fixtures: the memory store and local executor, users with tokens, a client per role."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from beluga_workflows.executor import get_executor

from . import flows  # noqa: F401 - registers the test workflows


@pytest.fixture(autouse=True)
def workflow_backend(request, settings):
    """The local executor on a fresh store: a memory store, or the ``store`` fixture's when the
    test asks for it (then it runs once per store backend). Restoring the settings afterwards
    resets (and closes) the executor."""
    options = {"sweep_interval": 0.2}
    if "store" in request.fixturenames:
        options["store"] = request.getfixturevalue("store")
    settings.BELUGA_WORKFLOWS = {
        "STORE": {"BACKEND": "memory", "OPTIONS": {}},
        "EXECUTOR": {"BACKEND": "local", "OPTIONS": options},
        "HOOKS": [],
    }
    yield settings


def make_user(username: str, **flags) -> tuple:
    user = get_user_model().objects.create_user(username, password="pw", **flags)
    return user, Token.objects.create(user=user).key


@pytest.fixture
def staff_user(db):
    return make_user("staff", is_staff=True)


@pytest.fixture
def plain_user(db):
    return make_user("plain")


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def staff(staff_user) -> APIClient:
    """A client authenticated by token as a staff user."""
    return token_client(staff_user[1])


@pytest.fixture
def plain(plain_user) -> APIClient:
    """A client authenticated by token as an ordinary (non-staff) user."""
    return token_client(plain_user[1])


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


def url(workflow_id: str = "", suffix: str = "", *, safe: str = "/") -> str:
    """The API URL of a workflow (``safe=""`` percent-encodes its slashes too)."""
    if not workflow_id:
        return "/api/workflows/"
    return f"/api/workflows/{quote(workflow_id, safe=safe)}/{suffix}"


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def start(client: APIClient, workflow_type: str, **body) -> dict:
    response = client.post(url(), {"workflow_type": workflow_type, **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def waiting_for_signal(workflow_id: str) -> dict:
    """Wait until the run waits in ``receive_signal`` and return its state."""
    store = get_executor().store
    return wait_until(
        lambda: (s := store.load(workflow_id, with_history=False)) and s.wait_kind == "signal" and s,
        what=f"{workflow_id!r} to wait for a signal",
    )


def result_of(workflow_id: str, timeout: float = 10.0):
    return get_executor().get_handle(workflow_id).result(timeout=timeout)


def ended(workflow_id: str, timeout: float = 10.0):
    """Wait for the run to end; return its state."""
    handle = get_executor().get_handle(workflow_id)
    return get_executor().wait(handle.id, handle.run_id, timeout)
