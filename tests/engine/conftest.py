"""Engine test fixtures: executors built on the shared ``store`` fixture and closed afterwards."""

from __future__ import annotations

import pytest

from beluga_workflows.runtimes.local import LocalExecutor
from beluga_workflows.testing import WorkflowEnvironment


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
