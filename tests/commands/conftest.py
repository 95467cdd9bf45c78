"""Command test fixtures: the memory store and local executor, and a runner for commands."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command

from beluga_workflows.executor import get_executor

from . import flows  # noqa: F401 - registers the test workflows

BACKEND = {
    "STORE": {"BACKEND": "memory", "OPTIONS": {}},
    "EXECUTOR": {"BACKEND": "local", "OPTIONS": {"sweep_interval": 0.2}},
    "HOOKS": [],
}


@pytest.fixture
def workflow_backend(settings):
    """A fresh memory store and local executor per test (the settings change resets both).

    Not autouse: other command tests in this package choose their own backend.
    """
    settings.BELUGA_WORKFLOWS = dict(BACKEND)
    yield settings


def run(*args: str) -> str:
    """Run a command as ``manage.py`` would get it and return what it printed."""
    out = StringIO()
    call_command(*args, stdout=out, no_color=True)
    return out.getvalue()


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def waiting_for_signal(workflow_id: str):
    store = get_executor().store
    return wait_until(
        lambda: (s := store.load(workflow_id, with_history=False)) and s.wait_kind == "signal" and s,
        what=f"{workflow_id!r} to wait for a signal",
    )


def ended(workflow_id: str, timeout: float = 10.0):
    handle = get_executor().get_handle(workflow_id)
    return get_executor().wait(handle.id, handle.run_id, timeout)
