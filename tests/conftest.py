"""Shared fixtures: ``store`` runs a test once per store backend that holds the engine's guarantees."""

from __future__ import annotations

import pytest

from beluga_workflows.stores.memory import MemoryStore

# Each entry: (id, factory(request) -> store). Backends that need a database add their params here.
STORE_BACKENDS = ["memory"]


def make_store(kind: str, request: pytest.FixtureRequest):
    if kind == "memory":
        return MemoryStore()
    raise LookupError(kind)


@pytest.fixture(params=STORE_BACKENDS)
def store(request):
    """A fresh, empty store of each backend in turn."""
    instance = make_store(request.param, request)
    yield instance
    instance.close()
