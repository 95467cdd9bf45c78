"""Admin test fixtures: the configured executor on the store under test, users with chosen permissions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from beluga_workflows.executor import WorkflowExecutor, get_executor, register

from . import workflows  # noqa: F401 - registers the workflows the tests start

ACT_PERMISSIONS = ("start_workflow", "signal_workflow", "cancel_workflow")


class InlineExecutor(WorkflowExecutor):
    """Advances a scheduled run at once, in the calling thread (the request's, in client tests).

    No threads: the client tests are deterministic on every store, SQLite included. Future
    wake-ups are left alone (nothing here waits on timers).
    """

    name = "admin-tests-inline"

    def schedule(self, workflow_id: str, *, at=None, queue=None) -> None:
        if at is None or at <= self.clock.now():
            self.run(workflow_id)


register(InlineExecutor.name, lambda config: InlineExecutor(**config))


@pytest.fixture
def executor(store, settings):
    """The executor the admin uses (``get_executor()``), on the store under test."""
    settings.BELUGA_WORKFLOWS = {
        "STORE": {"BACKEND": "memory", "OPTIONS": {}},
        "EXECUTOR": {"BACKEND": InlineExecutor.name, "OPTIONS": {"store": store}},
        "HOOKS": [],
    }
    configured = get_executor()
    assert configured.store is store
    return configured
    # Restoring the settings afterwards resets (and closes) the executor.


def make_user(username: str, *codenames: str, staff: bool = True) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=staff)
    perms = Permission.objects.filter(content_type__app_label="beluga_workflows",
                                      codename__in=codenames)
    assert perms.count() == len(codenames), codenames
    user.user_permissions.add(*perms)
    return user


@pytest.fixture
def operator(db) -> User:
    """Staff who may view, start, signal and cancel."""
    return make_user("operator", "view_workflowstate", *ACT_PERMISSIONS)


@pytest.fixture
def viewer(db) -> User:
    """Staff who may only look."""
    return make_user("viewer", "view_workflowstate")


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def waiting(executor, workflow_id: str, kind: str = "signal"):
    """Wait until the run is suspended on a wait of ``kind``; return its state."""
    def check():
        state = executor.store.load(workflow_id, with_history=False)
        return state if state is not None and state.wait_kind == kind and not state.lease_owner else None

    return wait_for(check, f"{workflow_id} to wait for a {kind}")


def ended(executor, workflow_id: str):
    """Wait until the run has ended; return its state."""
    def check():
        state = executor.store.load(workflow_id, with_history=False)
        return state if state is not None and not state.is_open else None

    return wait_for(check, f"{workflow_id} to end")
