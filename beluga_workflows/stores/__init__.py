"""Store backends, chosen in settings the way Django chooses cache backends.

``BELUGA_WORKFLOWS["STORE"] = {"BACKEND": "django", "OPTIONS": {...}}`` where ``BACKEND`` is an
alias (``memory``, ``django``, ``redis``, ``nats``, ``inngest``, ``dapr``, ``kafka``) or the dotted path of a
``WorkflowStore`` subclass, and ``OPTIONS`` are its keyword arguments.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..conf import ConfiguredSingleton, import_backend, workflow_settings
from .base import WorkflowStore

__all__ = ["STORE_ALIASES", "WorkflowStore", "create_store", "get_store", "reset_store"]

STORE_ALIASES = {
    "memory": "beluga_workflows.stores.memory.MemoryStore",
    "django": "beluga_workflows.stores.django.DjangoStore",
    "redis": "beluga_workflows.stores.redis.RedisStore",
    "nats": "beluga_workflows.stores.nats.NatsStore",
    "inngest": "beluga_workflows.stores.inngest.InngestStore",
    "dapr": "beluga_workflows.stores.dapr.DaprStore",
    "temporal": "beluga_workflows.stores.temporal.TemporalStore",
    "kafka": "beluga_workflows.stores.kafka.KafkaStore",
}

# The extra that brings each store's client library, for the error when it is missing.
STORE_EXTRAS = {"redis": "redis", "nats": "nats", "inngest": "http", "dapr": "http",
                "temporal": "temporal", "kafka": "kafka"}


def store_class(backend: Any) -> type[WorkflowStore]:
    """The store class named by ``backend`` (alias or dotted path).

    Raises:
        ImproperlyConfigured: naming ``BELUGA_WORKFLOWS["STORE"]["BACKEND"]``.
    """
    if not isinstance(backend, str) or not backend:
        raise ImproperlyConfigured(
            'BELUGA_WORKFLOWS["STORE"]["BACKEND"] must be a store alias or a dotted path'
        )
    return import_backend(
        "STORE", STORE_ALIASES.get(backend, backend), WorkflowStore, label=backend,
        extra=STORE_EXTRAS.get(backend),
        hint=f"; use one of {', '.join(STORE_ALIASES)} or a dotted path to a WorkflowStore subclass")


def create_store(config: dict[str, Any] | None = None) -> WorkflowStore:
    """A new store from a ``{"BACKEND", "OPTIONS"}`` dict (default: the configured one)."""
    config = workflow_settings.STORE if config is None else config
    if not isinstance(config, dict):
        raise ImproperlyConfigured('BELUGA_WORKFLOWS["STORE"] must be a dict with "BACKEND"')
    cls = store_class(config.get("BACKEND", "django"))
    options = config.get("OPTIONS") or {}
    if not isinstance(options, dict):
        raise ImproperlyConfigured('BELUGA_WORKFLOWS["STORE"]["OPTIONS"] must be a dict')
    try:
        return cls(**options)
    except TypeError as exc:
        raise ImproperlyConfigured(
            f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"] are not valid for {cls.__name__}: {exc}'
        ) from exc


_configured = ConfiguredSingleton(create_store, lambda store: store.close())


def get_store() -> WorkflowStore:
    """The configured store, built once per process (again after the settings change)."""
    return _configured.get()


def reset_store() -> None:
    """Close the configured store; the next ``get_store()`` builds it anew."""
    _configured.reset()
