"""Authentication and permissions: 401 for anonymous, 403 for non-staff writes, settings."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from beluga_workflows.api.permissions import permissions_for

from .conftest import make_user, start, token_client, url, waiting_for_signal

ENDPOINTS = [
    ("get", "/api/workflows/"),
    ("post", "/api/workflows/"),
    ("get", "/api/workflows/wf-1/"),
    ("get", "/api/workflows/wf-1/history/"),
    ("post", "/api/workflows/wf-1/signal/"),
    ("post", "/api/workflows/wf-1/cancel/"),
    ("get", "/api/workflows/wf-1/query/status/"),
]


@pytest.fixture
def running(staff) -> str:
    start(staff, "tests.api.approval", id="wf-1")
    waiting_for_signal("wf-1")
    return "wf-1"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_anonymous_gets_401_with_a_token_challenge(anonymous, running, method, path):
    if method == "get":
        response = anonymous.get(path)
    else:
        response = anonymous.post(path, {"workflow_type": "tests.api.echo", "name": "x"},
                                  format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_a_bad_token_is_401(running):
    response = token_client("not-a-token").get(url())
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


@pytest.mark.parametrize(("method", "path"), [e for e in ENDPOINTS if e[0] == "get"])
def test_any_authenticated_user_reads(plain, running, method, path):
    assert plain.get(path).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/workflows/", {"workflow_type": "tests.api.echo"}),
        ("/api/workflows/wf-1/signal/", {"name": "approval"}),
        ("/api/workflows/wf-1/cancel/", None),
    ],
)
def test_non_staff_users_may_not_write(plain, running, path, body):
    response = plain.post(path, body, format="json")
    assert response.status_code == 403
    assert "permission" in response.json()["detail"]
    assert waiting_for_signal("wf-1")  # nothing changed


def test_session_authentication_works(staff_user, anonymous):
    anonymous.force_login(staff_user[0])
    response = anonymous.post(url(), {"workflow_type": "tests.api.echo", "input": 1}, format="json")
    assert response.status_code == 201


def test_session_users_need_the_csrf_token_to_write(staff_user):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff_user[0])
    response = client.post(url(), {"workflow_type": "tests.api.echo"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_write_permissions_are_configurable(workflow_backend, plain, running):
    workflow_backend.BELUGA_WORKFLOWS = {
        **workflow_backend.BELUGA_WORKFLOWS,
        "API_WRITE_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    }
    response = plain.post(url(), {"workflow_type": "tests.api.echo"}, format="json")
    assert response.status_code == 201


def test_read_permissions_are_configurable(workflow_backend, plain, staff):
    workflow_backend.BELUGA_WORKFLOWS = {
        **workflow_backend.BELUGA_WORKFLOWS,
        "API_READ_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    }
    assert plain.get(url()).status_code == 403
    assert staff.get(url()).status_code == 200


def test_model_permission_class_follows_the_admin_permissions(workflow_backend, db, monkeypatch):
    workflow_backend.BELUGA_WORKFLOWS = {
        **workflow_backend.BELUGA_WORKFLOWS,
        "API_WRITE_PERMISSION_CLASSES": [
            "rest_framework.permissions.IsAuthenticated",
            "beluga_workflows.api.permissions.HasWorkflowModelPermission",
        ],
    }
    staff_user, staff_key = make_user("staff-without-perms", is_staff=True)
    denied = token_client(staff_key).post(url(), {"workflow_type": "tests.api.echo"},
                                          format="json")
    assert denied.status_code == 403
    assert denied.json()["detail"] == "You do not have the permission to start workflows."

    granted: list[str] = []
    user_class = type(staff_user)
    monkeypatch.setattr(user_class, "has_perm",
                        lambda self, perm, obj=None: granted.append(perm) or True)
    allowed = token_client(staff_key).post(url(), {"workflow_type": "tests.api.echo"},
                                           format="json")
    assert allowed.status_code == 201
    assert granted == ["beluga_workflows.start_workflow"]


def test_a_bad_permission_setting_names_the_setting(workflow_backend):
    workflow_backend.BELUGA_WORKFLOWS = {
        **workflow_backend.BELUGA_WORKFLOWS,
        "API_WRITE_PERMISSION_CLASSES": ["no.such.Permission"],
    }
    with pytest.raises(ImproperlyConfigured, match="API_WRITE_PERMISSION_CLASSES"):
        permissions_for("POST")
