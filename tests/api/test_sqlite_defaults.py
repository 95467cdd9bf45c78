"""The REST flow on pytest-django's default SQLite test database (in memory, shared cache), with
the django store and the local executor: a new user's first test of their own site.

Before, starting a workflow and signalling it failed about 3 times in 5 with "database table is
locked" from the run's thread (a shared-cache database reports a locked table at once, with no
busy timeout), leaving the run stuck until its lease ran out.
"""

from __future__ import annotations

import pytest

from .conftest import ended, start, url, waiting_for_signal

ROUNDS = 20


@pytest.fixture
def plain_memory_store(settings):
    settings.BELUGA_WORKFLOWS = {
        "STORE": {"BACKEND": "django", "OPTIONS": {"using": "plain_memory"}},
        "EXECUTOR": {"BACKEND": "local", "OPTIONS": {"sweep_interval": 0.2}},
        "HOOKS": [],
    }
    from django.db import connections

    connection = connections["plain_memory"]
    assert connection.is_in_memory_db()  # pytest-django's test database
    assert connection.settings_dict.get("OPTIONS", {}) == {}
    return settings


@pytest.fixture(scope="module", autouse=True)
def end_the_in_memory_database():
    """Django never closes an in-memory database's connection (that would drop the database), and
    pytest-django's flush after the test reopens it: end it once this module is done (its only
    user), or later tests' ``close_old_connections()`` would find it open outside their database
    access."""
    yield
    from django.db import connections

    connection = connections["plain_memory"]
    if connection.connection is not None:
        connection.connection.close()
        connection.connection = None


@pytest.mark.django_db(databases=["default", "plain_memory"], transaction=True)
def test_start_signal_complete_passes_20_times_in_a_row(plain_memory_store, staff):
    for n in range(ROUNDS):
        workflow_id = f"plain-{n}"
        start(staff, "tests.api.approval", id=workflow_id)
        waiting_for_signal(workflow_id)
        response = staff.post(url(workflow_id, "signal/"),
                              {"name": "approval", "payload": {"by": "ann", "n": n}}, format="json")
        assert response.status_code == 202, (n, response.content)
        state = ended(workflow_id, timeout=30)
        assert state.status.value == "completed", (n, state.error)
        detail = staff.get(url(workflow_id)).json()
        assert detail["status"] == "completed"
        assert detail["result"]["approval"] == {"by": "ann", "n": n}, detail
