"""Fixtures of the Celery integration tests: real PostgreSQL, a real Redis broker, real workers.

- ``shared_database`` (session): the PostgreSQL database of the ``celery`` alias, created and
  migrated (``manage.py migrate`` in a subprocess) for this session and dropped at its end. The
  test process and the workers both use it; pytest-django's throwaway test databases are not
  involved, so the tests reach it with ``django_db_blocker.unblock()``.
- ``cluster`` (per test): empties that database and this session's Redis keys, then hands the test
  a ``Cluster`` that starts, kills (``kill -9`` of the whole process group) and restarts Celery
  worker processes (``--pool prefork --concurrency 1`` each: "2 workers" = 2 processes that run
  workflows; parametrized indirectly with ``"threads:4"``, a pool of 4 threads each, as
  ``test_workers``, ``test_outages`` and ``test_hosts`` do) and a Celery beat process, and an
  executor that sends to them.

Each session works under a prefix of its own (Redis keys, Celery queue, database name), so two
sessions on one machine never share work. Without the servers the tests fail, saying which server
is missing (``bin/test`` starts them).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[2]
ALIAS = "celery"
REDIS_URL = os.environ.get("BELUGA_TEST_CELERY_REDIS_URL", "redis://127.0.0.1:6379/11")
SESSION = uuid.uuid4().hex[:8]
PREFIX = f"beluga-test-{SESSION}"
QUEUE = f"{PREFIX}:queue"
# The workers' pool: prefork of one process each, or BELUGA_TEST_CELERY_POOL=threads:4 (a pool of
# 4 threads in each worker process: several runs in flight per process).
POOL, _, _concurrency = os.environ.get("BELUGA_TEST_CELERY_POOL", "prefork:1").partition(":")
POOL_CONCURRENCY = int(_concurrency or 1)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str],
             interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


def _unavailable(reason: str) -> None:
    # A missing server is a failure, never a skip: bin/test installs and starts every server.
    pytest.fail(f"{reason} (the Celery integration tests need it: bin/test starts it)")


def _database_url(settings_dict: dict[str, Any], name: str) -> str:
    user = quote(settings_dict.get("USER") or "postgres", safe="")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{name}"


def _admin_connection(settings_dict: dict[str, Any]):
    import psycopg

    return psycopg.connect(
        host=settings_dict.get("HOST") or "127.0.0.1", port=settings_dict.get("PORT") or 5432,
        user=settings_dict.get("USER") or "postgres", password=settings_dict.get("PASSWORD") or None,
        dbname="postgres", autocommit=True, connect_timeout=5,
    )


def _drop_stale_databases(admin, base: str) -> None:
    """Drop databases left by sessions of this suite whose process is gone (killed runs)."""
    rows = admin.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{base}\\_%",)
    ).fetchall()
    for (name,) in rows:
        pid = name.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def shared_database(django_db_blocker, redis_client) -> str:
    """Create and migrate this session's shared PostgreSQL database; its URL for the workers."""
    import psycopg
    from django.db import connections

    settings_dict = connections[ALIAS].settings_dict
    name = settings_dict["NAME"]
    try:
        admin = _admin_connection(settings_dict)
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL is not reachable for the Celery tests: {exc}")
    with admin:
        _drop_stale_databases(admin, name.rsplit("_", 1)[0])
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(settings_dict, name)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO, env=_base_env(url), capture_output=True, text=True, timeout=300,
    )
    assert migrate.returncode == 0, f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}"
    yield url
    with django_db_blocker.unblock():
        connections[ALIAS].close()
    with _admin_connection(settings_dict) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _base_env(database_url: str, broker_url: str = REDIS_URL) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BELUGA_", "CELERY_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "tests.celery.worker_settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "BELUGA_TEST_REDIS_URL": REDIS_URL,
        "BELUGA_TEST_PREFIX": PREFIX,
        "BELUGA_TEST_QUEUE": QUEUE,
        "BELUGA_EXECUTOR": "celery",
        "BELUGA_STORE": "django",
        "BELUGA_LOG_LEVEL": "ERROR",
    })
    return env


class Cluster:
    """Worker and beat processes around the shared database, and an executor sending to them."""

    def __init__(self, database_url: str, redis_client, log_dir: Path, *,
                 broker_url: str = REDIS_URL, alias: str = ALIAS, pool: str = "") -> None:
        from celery import Celery

        from beluga_workflows.runtimes.celery import CeleryExecutor
        from beluga_workflows.stores.django import DjangoStore

        self.redis = redis_client
        self.log_dir = log_dir
        # The workers' pool ("prefork:1" unless the test or BELUGA_TEST_CELERY_POOL says).
        name, _, size = (pool or f"{POOL}:{POOL_CONCURRENCY}").partition(":")
        self.pool, self.concurrency = name, int(size or 1)
        self.env = _base_env(database_url, broker_url)
        self.env.update({
            "BELUGA_VAR_DIR": str(log_dir / "var"),
            "BELUGA_LEASE_SECONDS": "30",
            "BELUGA_RECOVER_INTERVAL": "1",
        })
        self.app = Celery("beluga-tests", broker=broker_url, set_as_current=False)
        self.app.conf.update(task_default_queue=QUEUE, task_serializer="json",
                             accept_content=["json"], broker_connection_retry_on_startup=True)
        self.alias = alias
        self.store = DjangoStore(using=alias)
        self.executor = CeleryExecutor(store=self.store, app=self.app)
        self.workers: list[subprocess.Popen] = []
        self.beat: subprocess.Popen | None = None
        self.killed_groups: set[int] = set()
        self._generation = 0

    # -- configuration --------------------------------------------------------------------------

    def configure(self, **env: Any) -> None:
        """Set environment variables of the processes started from now on."""
        self.env.update({k: str(v) for k, v in env.items()})

    # -- processes ------------------------------------------------------------------------------

    def _spawn(self, args: list[str], log_name: str, host: Any = None) -> subprocess.Popen:
        """Start a Celery process (inside test host ``host``'s namespace, if given)."""
        log = open(self.log_dir / log_name, "ab")  # noqa: SIM115 - closed with the process
        command = [sys.executable, "-m", "celery", "--quiet", "-A", "beluga_project", *args]
        env = self.env
        if host is not None:  # it reaches the servers over its own link only
            command = host.command(command)
            env = {k: v.replace("127.0.0.1", host.address) if k.endswith("_URL") else v
                   for k, v in self.env.items()}
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        proc.log = log  # type: ignore[attr-defined]
        return proc

    def start_workers(self, count: int = 2, *, wait: bool = True, host: Any = None
                      ) -> list[subprocess.Popen]:
        """Start ``count`` worker processes (``self.pool``: by default a prefork pool of one), by
        default until they consume.

        ``host``: a ``hosts.TestHost`` to run them in (its namespace, its link).
        """
        self._generation += 1
        names = [f"w{i}-g{self._generation}-{SESSION}@localhost" for i in range(count)]
        started = [
            self._spawn(["worker", "--pool", self.pool, "--concurrency", str(self.concurrency),
                         "-n", name,
                         "-Q", QUEUE, "--without-gossip", "--without-mingle",
                         "--without-heartbeat", "--loglevel", "WARNING"],
                        f"worker-{name.split('@')[0]}.log", host)
            for name in names
        ]
        self.workers.extend(started)
        if wait:
            wait_for(lambda: all(self.redis.sismember(f"{PREFIX}:ready", n) for n in names), 60,
                     lambda: f"workers {names} to start\n{self.log_tail()}", interval=0.1)
        return started

    def kill_workers(self) -> list[int]:
        """``kill -9`` each worker's process group (main process and pool child); their pgids."""
        killed = []
        for proc in self.workers:
            if proc.poll() is None:
                _kill_group(proc, signal.SIGKILL)
                killed.append(proc.pid)
        for proc in self.workers:
            _reap(proc)
        self.killed_groups.update(killed)
        self.workers = []
        return killed

    def start_beat(self) -> None:
        schedule = self.log_dir / f"beat-schedule-{uuid.uuid4().hex[:6]}"
        self.beat = self._spawn(["beat", "-s", str(schedule), "--max-interval", "1",
                                 "--loglevel", "WARNING"], "beat.log")

    def stop_beat(self) -> None:
        if self.beat is not None:
            _kill_group(self.beat, signal.SIGKILL)
            _reap(self.beat)
            self.beat = None

    def stop(self) -> None:
        self.kill_workers()
        self.stop_beat()

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    # -- runs -----------------------------------------------------------------------------------

    def start(self, workflow_type: str, inputs: Iterable[Any], *, id_prefix: str) -> list[str]:
        from beluga_workflows import WorkflowOptions

        ids = []
        for n, data in enumerate(inputs):
            handle = self.executor.execute(workflow_type,
                                           WorkflowOptions(id=f"{id_prefix}-{n:04d}", input=data))
            ids.append(handle.id)
        return ids

    def count(self, status: str | None = None, **filters: Any) -> int:
        from beluga_workflows import WorkflowFilter

        return self.store.count(WorkflowFilter(status=status, **filters))

    def wait_ended(self, total: int, timeout: float) -> float:
        """Wait until no run is open (``total`` runs in all); seconds it took."""
        started = time.monotonic()
        wait_for(lambda: self.count("running") == 0 and self.count() == total, timeout,
                 lambda: f"all {total} runs to end: {self.describe_open()}\n{self.log_tail()}",
                 interval=0.2)
        return time.monotonic() - started

    def describe_open(self, shown: int = 5) -> str:
        """The open runs, for a failure message."""
        from beluga_workflows import WorkflowFilter

        open_runs = self.store.list(WorkflowFilter(status="running"))
        lines = [f"{len(open_runs)} still running, {self.count('completed')} completed"]
        for state in open_runs[:shown]:
            lines.append(f"  {state.workflow_id}: lease={state.lease_owner!r} until "
                         f"{state.lease_expires_at} wake_at={state.wake_at} wait={state.wait_kind}"
                         f"/{state.wait_name} wake_seq={state.wake_seq} now={self.executor.clock.now()}")
        return "\n".join(lines)

    def effects(self, workflow_id: str, step: int) -> list[tuple[int, int, str]]:
        """Executions of one activity step: ``(process group, pid, token)`` in order."""
        entries = self.redis.lrange(f"{PREFIX}:fx:{workflow_id}:{step}", 0, -1)
        return [(int(g), int(p), t) for g, p, t in (e.split(":") for e in entries)]

    def check_steps_ran_once(self, ids: Iterable[str], steps: int, *, faulty: set[int],
                             late: bool = False) -> list[tuple[str, int]]:
        """Assert that every run completed and that no recorded step ran again.

        A step may have run twice only when one execution was in flight in a process group of
        ``faulty`` (killed, or cut off). A killed process leaves nothing behind, so the recorded
        execution is the last one; a process cut off from the network (``late``) may finish the
        execution it had started, and its side effect may land after the others recorded the
        step (its own write of the outcome is then fenced off). Returns the steps that ran twice.
        """
        repeated = []
        for workflow_id in ids:
            state = self.store.load(workflow_id)
            assert state.status.value == "completed", (workflow_id, state.error)
            tokens = [e.result["token"] for e in state.history
                      if e.type.value == "activity_completed"]
            assert state.result == tokens
            for i in range(steps):
                runs = self.effects(workflow_id, i)
                assert runs, f"{workflow_id} step {i} never ran"
                if not late:  # a recorded step never runs again
                    assert runs[-1][2] == tokens[i], (
                        f"{workflow_id} step {i} ran after it was recorded")
                assert [r[2] for r in runs].count(tokens[i]) == 1
                if len(runs) > 1:
                    # Every other execution was in flight in a faulty process group.
                    others = [r for r in runs if r[2] != tokens[i]]
                    assert all(group in faulty for group, _, _ in others), runs
                    assert len(runs) == 2, f"{workflow_id} step {i} ran {len(runs)} times: {runs}"
                    repeated.append((workflow_id, i))
        return repeated

    def clean(self) -> None:
        """Empty the shared database's tables and this session's Redis keys."""
        from django.apps import apps
        from django.db import connections

        tables = [m._meta.db_table for m in apps.get_app_config("beluga_workflows").get_models()]
        with connections[self.alias].cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        keys = list(self.redis.scan_iter(f"{PREFIX}*", count=1000))
        for n in range(0, len(keys), 500):
            self.redis.delete(*keys[n:n + 500])


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGKILL)
        proc.wait(timeout=30)
    proc.log.close()  # type: ignore[attr-defined]


@pytest.fixture
def cluster(request, shared_database, redis_client, django_db_blocker, tmp_path):
    """A clean shared database and Redis, and a ``Cluster`` to start workers on them.

    Parametrized indirectly (``"threads:4"``...), its workers run that pool."""
    with django_db_blocker.unblock():
        c = Cluster(shared_database, redis_client, tmp_path, pool=getattr(request, "param", ""))
        c.clean()
        try:
            yield c
        finally:
            c.stop()
            print(c.log_tail(15))
            from django.db import connections

            connections[ALIAS].close()
            c.app.close()


@pytest.fixture
def rng(request) -> random.Random:
    """A random generator seeded per test (the seed is printed, to replay a failure)."""
    seed = os.environ.get("BELUGA_TEST_SEED") or uuid.uuid4().hex[:8]
    print(f"random seed: {seed} (BELUGA_TEST_SEED={seed} replays it)")
    return random.Random(f"{seed}-{request.node.name}")
