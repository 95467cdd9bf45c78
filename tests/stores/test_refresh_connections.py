"""``refresh_connections`` (what a worker runs between tasks) on a real PostgreSQL connection with
``CONN_HEALTH_CHECKS``: a quiet reused connection passes without Django's ``SELECT 1``; one whose
backend the server ended is seen on its socket, checked, and replaced before it is used."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from django.db import connections

from beluga_workflows.runtimes._connections import refresh_connections

ALIAS = "postgres"


@pytest.fixture
def checked_connection(monkeypatch):
    """The alias's connection, persistent and health-checked, with its ``SELECT 1`` checks counted."""
    connection = connections[ALIAS]
    saved = {key: connection.settings_dict.get(key) for key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS")}
    connection.close()
    connection.settings_dict.update(CONN_MAX_AGE=None, CONN_HEALTH_CHECKS=True)
    checks: list[bool] = []
    usable = connection.is_usable

    def counted() -> bool:
        checks.append(usable())
        return checks[-1]

    monkeypatch.setattr(connection, "is_usable", counted)
    connection.ensure_connection()
    try:
        yield connection, checks
    finally:
        connection.close()
        connection.settings_dict.update(saved)


def backend_pid(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(databases=[ALIAS], transaction=True)
def test_a_quiet_connection_is_reused_without_a_round_trip(checked_connection):
    connection, checks = checked_connection
    first = backend_pid(connection)
    for _ in range(5):
        refresh_connections()
        assert connection.health_check_done
        assert backend_pid(connection) == first
    assert checks == []  # no SELECT 1 was sent


@pytest.mark.django_db(databases=[ALIAS], transaction=True)
def test_a_connection_the_server_ended_is_checked_and_replaced(checked_connection):
    connection, checks = checked_connection
    first = backend_pid(connection)
    settings = connection.settings_dict
    with psycopg.connect(host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432,
                         user=settings["USER"] or "postgres", dbname="postgres",
                         autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone()[0]
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN | select.POLLHUP)
    deadline = time.monotonic() + 10
    while not poller.poll(20):  # the server's notice reaches the socket
        assert time.monotonic() < deadline, "the terminated backend's socket never became readable"

    refresh_connections()
    assert not connection.health_check_done  # left to Django's check
    second = backend_pid(connection)  # the check fails, Django reconnects, the query runs
    assert checks == [False]
    assert second != first
