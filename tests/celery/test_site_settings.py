"""Workers on a site's own settings: Django's default ``CONN_MAX_AGE = 0``, ``DEBUG = True`` and
Celery's own connection handling (``CELERY_DB_REUSE_MAX`` unset), instead of the example project's.

Before, every activation opened a new database connection (Celery's Django fixup closes them
after each task, and ``CONN_MAX_AGE = 0`` makes each one obsolete at once): on PostgreSQL that
halved throughput. A worker now keeps the store's connection open across activations.
"""

from __future__ import annotations

import pytest

from . import workflows as test_workflows  # noqa: F401 - registers the test workflows
from .conftest import PREFIX, wait_for

# Where the workers count the connections they open (tests.celery.workflows.count_connection).
CONNECTIONS_KEY = f"{PREFIX}:connections"

pytestmark = [pytest.mark.celery, pytest.mark.postgres]

RUNS = 30
STEPS = 10


def test_workers_on_django_defaults_keep_their_connection_and_warn_about_debug(cluster):
    cluster.configure(CONN_MAX_AGE=0, CELERY_DB_REUSE_MAX=0, DEBUG="true",
                      BELUGA_LOG_LEVEL="WARNING")
    cluster.start_workers(2)
    opened_at_start = int(cluster.redis.get(CONNECTIONS_KEY) or 0)
    ids = cluster.start("celery_tests.steps", [{"steps": STEPS}] * RUNS, id_prefix="defaults")
    cluster.wait_ended(RUNS, timeout=120)
    assert cluster.count("completed") == RUNS
    opened = int(cluster.redis.get(CONNECTIONS_KEY) or 0) - opened_at_start
    # One per pool process (and its lease keeper thread, when a lease needs renewing): a handful,
    # not one per activation (each run takes at least one; before, each opened a connection).
    assert opened <= 6, f"{opened} connections opened for {RUNS} runs"
    assert all(cluster.store.load(i, with_history=False).status.value == "completed" for i in ids)
    wait_for(lambda: "DEBUG = True in this Celery worker" in cluster.log_tail(200), 10,
             "the workers to warn about DEBUG = True")
    print(f"{RUNS} runs of {STEPS} steps on Django's default settings opened {opened} database "
          f"connections in the workers")
