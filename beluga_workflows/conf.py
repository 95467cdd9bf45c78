"""Settings of beluga_workflows: the ``BELUGA_WORKFLOWS`` dict, read lazily, with defaults.

``workflow_settings.STORE`` etc. read ``settings.BELUGA_WORKFLOWS`` on first use and again after
``override_settings`` changes it (the ``setting_changed`` signal), as DRF's settings do. Without a
configured Django project the defaults apply, so the engine can be used from plain scripts.
"""

from __future__ import annotations

from typing import Any

from django.core.signals import setting_changed

__all__ = ["DEFAULTS", "workflow_settings"]

DEFAULTS: dict[str, Any] = {
    # Where runs live: an alias (memory, django, redis, nats, inngest, dapr) or a dotted path.
    "STORE": {"BACKEND": "django", "OPTIONS": {}},
    # Who runs them: "celery", "local" or another registered executor name.
    "EXECUTOR": {"BACKEND": "celery", "OPTIONS": {}},
    # Dotted paths to Hooks objects fired in the worker that runs the workflow.
    "HOOKS": [],
    # Seconds a worker's claim on a run lasts without renewal; a dead worker's runs wait this long.
    "LEASE_SECONDS": 30.0,
    # Retry backoffs up to this many seconds are waited in place rather than by suspending.
    "IN_PLACE_WAIT": 1.0,
    # Largest encoded input, result, signal payload or error accepted, in bytes.
    "MAX_PAYLOAD_BYTES": 2 * 1024 * 1024,
    # Seconds between recovery sweeps (Celery beat entry / local runtime).
    "RECOVER_INTERVAL": 5.0,
    # REST API: dotted paths to DRF permission classes for reads (list, detail, history, query)
    # and for writes (start, signal, cancel). Every class must allow the request.
    "API_READ_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "API_WRITE_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "rest_framework.permissions.IsAdminUser",
    ],
}


class WorkflowSettings:
    """Attribute access to ``BELUGA_WORKFLOWS`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _user(self) -> dict[str, Any]:
        from django.conf import settings

        if not settings.configured:
            return {}
        value = getattr(settings, "BELUGA_WORKFLOWS", None) or {}
        if not isinstance(value, dict):
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("BELUGA_WORKFLOWS must be a dict")
        return value

    def as_dict(self) -> dict[str, Any]:
        if self._cache is None:
            merged = dict(DEFAULTS)
            merged.update(self._user())
            self._cache = merged
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.as_dict()[name]
        except KeyError:
            raise AttributeError(f"no beluga_workflows setting {name!r}") from None

    def reload(self) -> None:
        self._cache = None


workflow_settings = WorkflowSettings()

_reset_callbacks: list = []


def on_reload(callback) -> None:
    """Call ``callback()`` whenever ``BELUGA_WORKFLOWS`` changes (caches of stores/executors)."""
    _reset_callbacks.append(callback)


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "BELUGA_WORKFLOWS":
        workflow_settings.reload()
        for callback in _reset_callbacks:
            callback()


setting_changed.connect(_setting_changed)
