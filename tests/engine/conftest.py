"""Engine test fixtures: executors built on the shared ``store`` fixture and closed afterwards.

The engine suite runs on every store that supports compare-and-set. The document stores (``redis``,
``nats``, ``dapr``) run the durable-execution modules below, not the ones about input validation,
hooks or the public names, which never reach a store's own code; ``inngest`` (no compare-and-set:
its contract tests assert that limitation) is not an engine store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from beluga_workflows.runtimes.local import LocalExecutor
from beluga_workflows.testing import WorkflowEnvironment

DURABLE_MODULES = {
    "test_activities.py", "test_cancel_timeout.py", "test_concurrency.py",
    "test_crash_recovery.py", "test_determinism.py", "test_executor_api.py", "test_retries.py",
    "test_parallel.py", "test_signals.py", "test_timers.py", "test_versioning.py",
    "test_continue_as_new.py",
}
DOCUMENT_ENGINE_STORES = {"redis", "nats", "dapr", "kafka"}
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    """Deselect engine tests on a document store outside the durable-execution modules."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("store") if callspec else None
        path = Path(str(item.fspath))
        if path.parent == HERE and (
                kind == "inngest"
                or (kind in DOCUMENT_ENGINE_STORES and path.name not in DURABLE_MODULES)):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def env(store):
    """A time-skipping environment on the store under test."""
    with WorkflowEnvironment(store=store) as environment:
        yield environment


@pytest.fixture
def make_local(store):
    """Build ``LocalExecutor`` s on the store under test (or another given one); all closed at teardown."""
    built: list[LocalExecutor] = []

    def make(**options) -> LocalExecutor:
        options.setdefault("store", store)
        options.setdefault("max_workers", 4)
        options.setdefault("lease_seconds", 5.0)
        options.setdefault("sweep_interval", 0.05)
        executor = LocalExecutor(**options)
        built.append(executor)
        return executor

    yield make
    for executor in built:
        executor.close()
