"""Runtimes (executor backends), chosen in settings the way stores are.

``BELUGA_WORKFLOWS["EXECUTOR"] = {"BACKEND": "celery", "OPTIONS": {...}}`` where ``BACKEND`` is a
registered name (``celery``, ``local``, or one added with ``register``) or the dotted path of a
``WorkflowExecutor`` subclass, and ``OPTIONS`` are its keyword arguments. A runtime says how a run
reaches a worker (``schedule``) and how the periodic sweep hands over due runs (``sweep``); every
operation on runs is the engine's ``WorkflowExecutor``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..conf import ConfiguredSingleton, import_backend, retention_seconds, workflow_settings
from ..engine.errors import InvalidInputError
from ..engine.executor import WorkflowExecutor
from ..engine.hooks import Hooks, compose_hooks

__all__ = [
    "EXECUTOR_ALIASES",
    "configured_hooks",
    "create_executor",
    "get_executor",
    "list_executors",
    "new",
    "register",
    "reset_executor",
]

# The runtimes shipped with the app: name -> dotted path of the executor class.
EXECUTOR_ALIASES = {
    "celery": "beluga_workflows.runtimes.celery.CeleryExecutor",
    "django_tasks": "beluga_workflows.runtimes.django_tasks.DjangoTasksExecutor",  # the tasks extra
    "local": "beluga_workflows.runtimes.local.LocalExecutor",
    "temporal": "beluga_workflows.runtimes.temporal.TemporalExecutor",  # the temporal extra
}

Factory = Callable[[dict[str, Any]], WorkflowExecutor]

_factories: dict[str, Factory] = {}
_factories_lock = threading.Lock()


def register(name: str, factory: Factory) -> None:
    """Make ``new(name, config)`` build executors with ``factory(config)``."""
    if not isinstance(name, str) or not name:
        raise InvalidInputError("executor name must be a non-empty string")
    if not callable(factory):
        raise InvalidInputError("executor factory must be callable")
    with _factories_lock:
        _factories[name] = factory


def executor_class(path: str) -> type[WorkflowExecutor]:
    """The executor class at dotted ``path``.

    Raises:
        ImproperlyConfigured: it cannot be imported, or it is not a ``WorkflowExecutor``.
    """
    return import_backend("EXECUTOR", path, WorkflowExecutor)


def _alias_factory(path: str) -> Factory:
    def build(config: dict[str, Any]) -> WorkflowExecutor:
        return executor_class(path)(**config)  # imported only when chosen

    return build


for _name, _path in EXECUTOR_ALIASES.items():
    register(_name, _alias_factory(_path))


def new(name: str, config: dict[str, Any] | None = None) -> WorkflowExecutor:
    """Build an executor of registered kind ``name`` (or dotted path) from ``config`` (its options).

    Raises:
        InvalidInputError: no executor of that name is registered (and it is no dotted path).
        ImproperlyConfigured: the runtime needs an extra that is not installed.
    """
    with _factories_lock:
        factory = _factories.get(name)
    if factory is None:
        if isinstance(name, str) and "." in name:
            factory = _alias_factory(name)
        else:
            raise InvalidInputError(
                f"unknown executor {name!r}; registered: {', '.join(list_executors())}"
            )
    return factory(dict(config or {}))


def list_executors() -> list[str]:
    """The registered executor names, sorted."""
    with _factories_lock:
        return sorted(_factories)


def configured_hooks() -> Hooks:
    """The hooks of ``BELUGA_WORKFLOWS["HOOKS"]`` (dotted paths), then the Django-signal hooks."""
    from ..signals import signal_hooks

    hooks: list[Hooks] = []
    for value in workflow_settings.imported("HOOKS"):
        if callable(value) and not isinstance(value, Hooks):
            value = value()
        if not isinstance(value, Hooks):
            raise ImproperlyConfigured(f'BELUGA_WORKFLOWS["HOOKS"]: {value!r} is not a Hooks object')
        hooks.append(value)
    hooks.append(signal_hooks)
    return compose_hooks(*hooks)


def create_executor() -> WorkflowExecutor:
    """A new executor as ``BELUGA_WORKFLOWS`` configures it, on the configured store."""
    from ..stores import get_store

    config = workflow_settings.EXECUTOR
    if not isinstance(config, dict):
        raise ImproperlyConfigured('BELUGA_WORKFLOWS["EXECUTOR"] must be a dict with "BACKEND"')
    options = dict(config.get("OPTIONS") or {})
    options.setdefault("store", get_store)
    options.setdefault("lease_seconds", float(workflow_settings.LEASE_SECONDS))
    options.setdefault("in_place_wait", float(workflow_settings.IN_PLACE_WAIT))
    options.setdefault("max_payload_bytes", workflow_settings.MAX_PAYLOAD_BYTES)
    options.setdefault("max_history_events", workflow_settings.MAX_HISTORY_EVENTS)
    options.setdefault("retention", retention_seconds(workflow_settings.RETENTION))
    try:
        executor = new(config.get("BACKEND", "celery"), options)
    except InvalidInputError as exc:
        raise ImproperlyConfigured(f'BELUGA_WORKFLOWS["EXECUTOR"]["BACKEND"]: {exc}') from exc
    except TypeError as exc:
        raise ImproperlyConfigured(f'BELUGA_WORKFLOWS["EXECUTOR"]["OPTIONS"]: {exc}') from exc
    executor.add_hooks(configured_hooks())
    return executor


_configured = ConfiguredSingleton(create_executor, lambda executor: executor.close())


def get_executor() -> WorkflowExecutor:
    """The configured executor, built once per process (again after the settings change)."""
    return _configured.get()


def reset_executor() -> None:
    """Close the configured executor; the next ``get_executor()`` builds it anew."""
    _configured.reset()
