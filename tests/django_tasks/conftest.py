"""Fixtures of the django_tasks integration tests: real ``manage.py db_worker`` processes on a
real PostgreSQL database and on a SQLite file, the ORM task backend (``django-tasks-db``) as queue.

- ``shared_db`` (session, per database kind): the database of the ``django_tasks_pg`` or
  ``django_tasks_sqlite`` alias, created and migrated (``manage.py migrate`` in a subprocess) for
  this session and dropped at its end. The test process and the workers both use it.
- ``tasks_cluster`` (per test, ``postgres`` and ``sqlite``): empties that database and this
  session's Redis keys, then hands the test a ``TasksCluster`` that starts, kills (``kill -9``)
  and restarts ``db_worker`` processes, and an executor that enqueues into the same database.

Activities record their executions in Redis (``tests/celery/workflows.py``). Without the servers
the tests fail, saying which server is missing (``bin/test`` starts them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from tests.celery import conftest as celery_conftest
from tests.celery.conftest import (
    PREFIX,
    REDIS_URL,
    REPO,
    Cluster,
    _admin_connection,
    _database_url,
    _drop_stale_databases,
    _unavailable,
    wait_for,  # noqa: F401 - the tests import it from here
)

redis_client = celery_conftest.redis_client  # the fixture, shared with the Celery tests

ALIASES = {"postgres": "django_tasks_pg", "sqlite": "django_tasks_sqlite"}


class TaskTablesRouter:
    """Sends the ORM task backend's rows to the database the workers of this test read."""

    alias = "default"

    def db_for_read(self, model, **hints):
        return self.alias if model._meta.app_label == "django_tasks_database" else None

    db_for_write = db_for_read


def _env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BELUGA_", "CELERY_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "tests.django_tasks.worker_settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url,
        "BELUGA_TEST_REDIS_URL": REDIS_URL,
        "BELUGA_TEST_PREFIX": PREFIX,
        "BELUGA_EXECUTOR": "django_tasks",
        "BELUGA_STORE": "django",
        "BELUGA_LOG_LEVEL": "ERROR",
        "BELUGA_LEASE_SECONDS": "3",
        "BELUGA_RECOVER_INTERVAL": "1",
        "BELUGA_TEST_SWEEP_GRACE": "30",
    })
    return env


@pytest.fixture(scope="session", params=["postgres", "sqlite"])
def shared_db(request, django_db_blocker, redis_client) -> tuple[str, str]:
    """Create and migrate this session's database of one kind; ``(alias, url for the workers)``."""
    from django.db import connections

    kind = request.param
    alias = ALIASES[kind]
    settings_dict = connections[alias].settings_dict
    name = settings_dict["NAME"]
    if kind == "postgres":
        import psycopg

        try:
            admin = _admin_connection(settings_dict)
        except psycopg.Error as exc:
            _unavailable(f"PostgreSQL is not reachable for the django_tasks tests: {exc}")
        with admin:
            _drop_stale_databases(admin, name.rsplit("_", 1)[0])
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        url = _database_url(settings_dict, name)
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(name + suffix).unlink(missing_ok=True)
        url = f"sqlite:///{name}"
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                             cwd=REPO, env=_env(url), capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}"
    yield alias, url
    with django_db_blocker.unblock():
        connections[alias].close()
    if kind == "postgres":
        with _admin_connection(settings_dict) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(name + suffix).unlink(missing_ok=True)


class TasksCluster(Cluster):
    """``db_worker`` processes around the shared database, and an executor enqueueing to them."""

    def __init__(self, alias: str, database_url: str, redis_client, log_dir: Path) -> None:
        from beluga_workflows.runtimes.django_tasks import DjangoTasksExecutor
        from beluga_workflows.stores.django import DjangoStore

        self.redis = redis_client
        self.log_dir = log_dir
        self.alias = alias
        self.kind = "sqlite" if "sqlite" in alias else "postgres"
        self.env = _env(database_url)
        self.env["BELUGA_VAR_DIR"] = str(log_dir / "var")
        self.store = DjangoStore(using=alias)
        self.executor = DjangoTasksExecutor(store=self.store, lease_seconds=3, sweep_interval=1)
        self.workers: list[subprocess.Popen] = []
        self.killed_groups: set[int] = set()
        self._generation = 0

    def start_workers(self, count: int = 2, **_: Any) -> list[subprocess.Popen]:
        """Start ``count`` ``manage.py db_worker`` processes (one task at a time each)."""
        self._generation += 1
        started = []
        for i in range(count):
            log = open(self.log_dir / f"db_worker-{i}-g{self._generation}.log", "ab")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "db_worker", "--no-reload", "--no-startup-delay",
                 "--interval", "0.05", "--queue-name", "default", "-v", "0",
                 "--worker-id", f"w{i}-g{self._generation}"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
            proc.log = log  # type: ignore[attr-defined]
            started.append(proc)
        self.workers.extend(started)
        return started

    def stop(self) -> None:
        self.kill_workers()

    def task_rows(self, **filters: Any) -> int:
        from django_tasks_db.models import DBTaskResult

        return DBTaskResult.objects.using(self.alias).filter(**filters).count()

    def clean(self) -> None:
        """Empty the shared database's tables (runs and task rows) and this session's Redis keys."""
        from django.apps import apps
        from django.db import connections

        models = [*apps.get_app_config("beluga_workflows").get_models(),
                  *apps.get_app_config("django_tasks_database").get_models()]
        tables = [m._meta.db_table for m in models]
        with connections[self.alias].cursor() as cursor:
            if self.kind == "postgres":
                cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            else:
                for table in tables:
                    cursor.execute(f'DELETE FROM "{table}"')
        keys = list(self.redis.scan_iter(f"{PREFIX}*", count=1000))
        for n in range(0, len(keys), 500):
            self.redis.delete(*keys[n:n + 500])


@pytest.fixture
def tasks_cluster(shared_db, redis_client, django_db_blocker, tmp_path):
    """A clean shared database (PostgreSQL or SQLite) and Redis, and a ``TasksCluster`` on them."""
    alias, url = shared_db
    TaskTablesRouter.alias = alias
    with django_db_blocker.unblock(), override_settings(
            DATABASE_ROUTERS=[TaskTablesRouter()],
            TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}}):
        c = TasksCluster(alias, url, redis_client, tmp_path)
        c.clean()
        try:
            yield c
        finally:
            c.stop()
            print(c.log_tail(15))
            from django.db import connections

            with contextlib.suppress(Exception):
                connections[alias].close()


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
