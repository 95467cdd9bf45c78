"""Fixtures of the Temporal tests: the dev server, worker processes, the temporal executor.

The Temporal server is the one ``bin/test`` starts (``temporal server start-dev`` on
``BELUGA_TEST_TEMPORAL_TARGET``, default ``127.0.0.1:7233``): a missing server fails the run with
the reason, it never skips. Workers are real processes (``manage.py workflows_temporal_worker``
with ``tests.temporal.settings``), each test session on task queues of its own; activities
append to a ledger file those processes share, so tests count executions across crashes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from beluga_workflows import EventType, Signal, WorkflowFilter, WorkflowOptions

from . import workflows  # noqa: F401 - registers the test workflows in this process too

ROOT = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("BELUGA_TEST_TEMPORAL_TARGET", "127.0.0.1:7233")
SESSION = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """``condition()``'s first truthy value, polled until ``timeout`` seconds; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def temporal_server() -> str:
    host, _, port = TARGET.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"no Temporal server at {TARGET} ({exc}): bin/test starts one "
                    f"(temporal server start-dev --headless --ip 127.0.0.1 --port 7233)")
    return TARGET


class WorkerProcess:
    """A ``workflows_temporal_worker`` process polling ``queue``."""

    def __init__(self, queue: str, ledger: Path, *args: str, env: dict[str, str] | None = None):
        self.queue = queue
        self.lines: list[str] = []
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "DJANGO_SETTINGS_MODULE": "tests.temporal.settings",
            "BELUGA_TEST_TEMPORAL_TARGET": TARGET, "BELUGA_TEST_TEMPORAL_QUEUE": queue,
            "BELUGA_TEST_TEMPORAL_LEDGER": str(ledger), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "workflows_temporal_worker", "--task-queue", queue,
             "--max-workers", "8", *args],
            cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: any("polling" in line for line in self.lines) or
                 self.process.poll() is not None, 60, f"the worker on {queue} to start")
        if self.process.poll() is not None:
            pytest.fail("the worker exited:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def kill(self) -> None:
        """kill -9: no shutdown, in-flight tasks die with it."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def ledger(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("temporal") / "ledger.txt"
    path.touch()
    return path


def read_ledger(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture(scope="session")
def start_worker(temporal_server, ledger):
    """``start_worker(queue, *args, env=...)``: a worker process, stopped at the session's end."""
    started: list[WorkerProcess] = []

    def start(queue: str, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(queue, ledger, *args, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def queue() -> str:
    """The task queue of the session's shared worker."""
    return f"beluga-test-{SESSION}"


@pytest.fixture(scope="session")
def worker(start_worker, queue) -> WorkerProcess:
    return start_worker(queue)


def temporal_settings(task_queue: str) -> dict:
    options = {"target": TARGET, "namespace": "default", "task_queue": task_queue}
    return {"STORE": {"BACKEND": "temporal", "OPTIONS": dict(options)},
            "EXECUTOR": {"BACKEND": "temporal", "OPTIONS": dict(options)}, "HOOKS": []}


@pytest.fixture
def executor(settings, worker, queue):
    """The temporal executor of ``tests.temporal.settings``, on the shared worker's queue."""
    from beluga_workflows import get_executor

    settings.BELUGA_WORKFLOWS = temporal_settings(queue)
    return get_executor()


@pytest.fixture
def unique() -> str:
    """An id prefix no other test uses."""
    return f"t-{SESSION}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def runs(executor, unique):
    """Three ended runs (two completed, one failed) and one open, ids starting ``unique``."""
    handles = [executor.execute("temporal.sleeper", WorkflowOptions(id=f"{unique}-done-{n}",
                                                                    input=0.05)) for n in range(2)]
    failed = executor.execute("temporal.failing", WorkflowOptions(id=f"{unique}-failed",
                                                                  input={"id": unique}))
    executor.execute("orders.process", WorkflowOptions(id=f"{unique}-open", input={
        "id": unique, "total": 5}))
    for handle in handles:
        handle.result(timeout=20)
    with pytest.raises(Exception):  # noqa: B017 - it fails: any of our errors
        failed.result(timeout=20)
    store = executor.store
    wait_for(lambda: store.count(WorkflowFilter(workflow_id_prefix=unique)) == 4
             and store.count(WorkflowFilter(workflow_id_prefix=unique, status="running")) == 1,
             20, "visibility to list the four runs")
    wait_for(lambda: any(e.type is EventType.ACTIVITY_COMPLETED
                         for e in store.history(f"{unique}-open")), 20, "the charge")
    yield unique
    executor.signal(f"{unique}-open", Signal(name="approval", payload="done"))  # let it end
