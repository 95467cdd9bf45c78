"""Shared fixtures: ``store`` runs a test once per store backend that holds the engine's guarantees.

The ``django-*`` params use the real databases of ``tests/settings.py`` (SQLite as ``default``,
PostgreSQL as ``postgres``) in transactional mode, so threads with their own connections see each
other's commits. Their database access is declared at collection time (pytest-django creates only
the test databases that collected tests declare). When the PostgreSQL server cannot be reached the
run stops with the reason: a missing server is never a skipped test (``bin/test`` starts it).

The document stores run on real servers too (``tests/stores/backends.py``): ``redis`` and ``nats``
on the Redis and NATS JetStream servers, ``inngest`` and ``dapr`` on small HTTP servers the tests
start, each test in a key prefix / bucket / server of its own, removed afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import tempfile

import pytest

from beluga_workflows.stores.memory import MemoryStore

from .stores.backends import DOCUMENT_BACKENDS, make_document_store, unreachable

# Each backend: its param id -> the database alias it needs (None: no database).
STORE_DATABASES: dict[str, str | None] = {
    "memory": None,
    "django-sqlite": "default",
    "django-postgres": "postgres",
}
STORE_BACKENDS = [
    "memory",
    "django-sqlite",
    pytest.param("django-postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("nats", marks=pytest.mark.nats),
    pytest.param("kafka", marks=pytest.mark.kafka),
    "dapr",
    "inngest",
]


def make_store(kind: str, request: pytest.FixtureRequest):
    if kind == "memory":
        return MemoryStore()
    if kind.startswith("django-"):
        from beluga_workflows.stores.django import DjangoStore

        return DjangoStore(using=STORE_DATABASES[kind])
    if kind in DOCUMENT_BACKENDS:
        store, clean = make_document_store(kind)
        request.addfinalizer(clean)
        return store
    raise LookupError(kind)


def pytest_configure(config):
    config.addinivalue_line("markers", "redis: needs the Redis server")
    config.addinivalue_line("markers", "nats: needs the NATS server with JetStream")
    config.addinivalue_line("markers", "kafka: needs a Kafka-protocol broker (tansu)")


@pytest.fixture(params=STORE_BACKENDS)
def store(request):
    """A fresh, empty store of each backend in turn."""
    instance = make_store(request.param, request)
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, django_db_keepdb):
    """Name test databases after this process, so concurrent sessions never collide.

    SQLite test databases become files (WAL, as configured) instead of Django's shared-cache
    in-memory default: its table locks fail at once instead of waiting, which is not how the
    store runs in production and defeats the concurrency tests. ``plain_memory`` is the exception:
    it stays pytest-django's default (in memory, shared cache), which the store must handle too.
    """
    if django_db_keepdb:
        return
    from django.conf import settings

    for alias, config in settings.DATABASES.items():
        test = config.setdefault("TEST", {})
        # Each test database stands alone, so a session may create "postgres" without "default".
        test.setdefault("DEPENDENCIES", [])
        if config["ENGINE"] == "django.db.backends.sqlite3":
            if alias != "plain_memory" and test.get("NAME") in (None, "", ":memory:"):
                test["NAME"] = os.path.join(tempfile.gettempdir(),
                                            f"beluga_test_{alias}_{os.getpid()}.sqlite3")
            continue
        test["NAME"] = f"{test.get('NAME') or 'test_' + config['NAME']}_{os.getpid()}"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, plus: end the sessions that worker threads left open before the drop.

    Runtime threads (thread pools, the lease keeper) keep their own connections to the test
    databases; PostgreSQL refuses to drop a database that has sessions.
    """
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for connection in connections.all():
            config = connection.settings_dict
            if connection.vendor != "postgresql" or config["NAME"] != config["TEST"].get("NAME"):
                continue  # not a test database this session created
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


def pytest_sessionfinish(session, exitstatus):
    """Remove the SQLite WAL files that threads' open connections left beside the test databases."""
    if not session.config.getvalue("reuse_db"):
        pattern = os.path.join(tempfile.gettempdir(), f"beluga_test_*_{os.getpid()}.sqlite3-*")
        for path in glob.glob(pattern):
            with contextlib.suppress(OSError):
                os.remove(path)


@functools.cache
def postgres_unreachable() -> str:
    """Why the test PostgreSQL server cannot be used ('' when it can)."""
    from django.conf import settings

    config = settings.DATABASES.get("postgres")
    if not config:
        return "no 'postgres' database in the test settings"
    try:
        import psycopg

        psycopg.connect(
            dbname="postgres", user=config.get("USER") or None,
            password=config.get("PASSWORD") or None, host=config.get("HOST") or None,
            port=config.get("PORT") or None, connect_timeout=3,
        ).close()
    except Exception as exc:  # noqa: BLE001 - any failure: stop, saying why
        return f"PostgreSQL at {config.get('HOST')}:{config.get('PORT')} unreachable: {exc}"
    return ""


def pytest_collection_modifyitems(config, items):
    """Give tests of a ``django-*`` store param transactional access to that store's database."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("store") if callspec else None
        if kind in DOCUMENT_BACKENDS and unreachable(kind):
            # Never a skip standing in for a missing server: bin/test starts Redis and NATS.
            raise pytest.UsageError(f"{unreachable(kind)}; run bin/test, which starts it")
        alias = STORE_DATABASES.get(kind) if isinstance(kind, str) else None
        if alias is None:
            continue
        if alias == "postgres" and postgres_unreachable():
            # Never a skip standing in for a missing server: bin/test starts PostgreSQL.
            raise pytest.UsageError(f"{postgres_unreachable()}; run bin/test, which starts it")
        databases = {alias}
        existing = item.get_closest_marker("django_db")
        if existing is not None:
            wanted = existing.kwargs.get("databases") or ["default"]
            if wanted == "__all__":
                continue
            databases.update(wanted)
        marker = pytest.mark.django_db(transaction=True, databases=sorted(databases))
        item.add_marker(marker, append=False)
