"""Database connections between units of work in a worker (a Celery task, a django_tasks job).

``close_old_connections`` is what Django does around a request: close connections past their
``CONN_MAX_AGE`` or broken, and, with ``CONN_HEALTH_CHECKS``, have the next use of each reused
connection first send ``SELECT 1``. A worker runs many short units of work, and that round trip
is one statement in seven of a 10-step workflow's activation (one in three of a timer's wake-up).

``refresh_connections()`` does the same, but first looks at each reused connection's socket
without a round trip: a connection whose server went away (restart, shutdown, crash) has its
socket readable (the server's "terminating connection" notice, or end of file) or in error, and
keeps Django's ``SELECT 1``, which finds it broken and replaces it. A quiet socket of an idle
connection passes the check as it stands. A failure the socket cannot show (a link cut without
either side noticing) is found by the next statement, as it is found by ``SELECT 1`` an instant
after it passed.
"""

from __future__ import annotations

import select

from django.db import close_old_connections, connections

try:
    import psycopg
    from psycopg import pq
except ImportError:  # pragma: no cover - psycopg 2 or another driver: Django's check
    psycopg = None

__all__ = ["refresh_connections"]

_TROUBLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def _quiet(raw: object) -> bool:
    """Whether ``raw`` (a psycopg 3 connection) is idle with nothing waiting on its socket."""
    if psycopg is None or not isinstance(raw, psycopg.Connection) or raw.closed:
        return False
    if raw.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    poller = select.poll()
    try:
        poller.register(raw.fileno(), _TROUBLE)
    except (OSError, ValueError, psycopg.Error):
        return False
    return not poller.poll(0)


def refresh_connections() -> None:
    """``close_old_connections()``, with the health check of quiet connections done locally."""
    close_old_connections()
    for connection in connections.all(initialized_only=True):
        if (connection.connection is not None and connection.health_check_enabled
                and not connection.health_check_done and _quiet(connection.connection)):
            connection.health_check_done = True
