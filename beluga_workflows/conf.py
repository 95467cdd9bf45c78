"""Settings of beluga_workflows: the ``BELUGA_WORKFLOWS`` dict, read lazily, with defaults.

``workflow_settings.STORE`` etc. read ``settings.BELUGA_WORKFLOWS`` on first use and again after
``override_settings`` changes it (the ``setting_changed`` signal), as DRF's settings do. Keys named
in ``IMPORT_STRINGS`` hold dotted paths: they are imported here, once per settings value, and
handed out as the objects they name. Without a configured Django project the defaults apply, so
the engine can be used from plain scripts.

``ConfiguredSingleton`` is the one lazy, reset-on-change holder of "the configured X" (the store,
the executor).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

__all__ = [
    "DEFAULTS",
    "IMPORT_STRINGS",
    "ConfiguredSingleton",
    "import_backend",
    "on_reload",
    "retention_seconds",
    "workflow_settings",
]

DEFAULTS: dict[str, Any] = {
    # Where runs live: an alias (memory, django, redis, nats, inngest, dapr, kafka) or a dotted path.
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
    # A run about to record more history events fails (HistoryTooLongError, naming
    # ctx.continue_as_new); None: no limit.
    "MAX_HISTORY_EVENTS": 50_000,
    # Seconds between recovery sweeps (Celery beat entry / local runtime).
    "RECOVER_INTERVAL": 5.0,
    # How long ended runs are kept: a duration (seconds, a timedelta, or "30d"); the recovery
    # sweep deletes runs that ended longer ago, in bounded batches. None keeps every run.
    "RETENTION": None,
    # REST API: dotted paths to DRF permission classes for reads (list, detail, history, query)
    # and for writes (start, signal, cancel). Every class must allow the request.
    "API_READ_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "API_WRITE_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "rest_framework.permissions.IsAdminUser",
    ],
}

# Settings whose values are lists of dotted paths (or the objects themselves).
IMPORT_STRINGS = ("HOOKS", "API_READ_PERMISSION_CLASSES", "API_WRITE_PERMISSION_CLASSES")


def _import_list(key: str, value: Any) -> list[Any]:
    """The objects a list of dotted paths names (objects given as such pass through).

    Raises:
        ImproperlyConfigured: naming ``BELUGA_WORKFLOWS[key]`` and the path that failed.
    """
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ImproperlyConfigured(f'BELUGA_WORKFLOWS["{key}"] must be a list of dotted paths')
    objects = []
    for path in value:
        try:
            objects.append(import_string(path) if isinstance(path, str) else path)
        except ImportError as exc:
            raise ImproperlyConfigured(f'BELUGA_WORKFLOWS["{key}"]: cannot import {path!r}: {exc}'
                                       ) from exc
    return objects


def import_backend(section: str, path: str, base: type, *, label: str | None = None,
                   extra: str | None = None, hint: str = "") -> type:
    """The class at dotted ``path`` that ``BELUGA_WORKFLOWS[section]["BACKEND"]`` names.

    Args:
        base: the class it must subclass.
        label: how the setting spelled it (an alias), for messages; default ``path``.
        extra: the extra that brings its library, named when the import fails.
        hint: appended to the message when the import fails for another reason.

    Raises:
        ImproperlyConfigured: it cannot be imported, or it is not a subclass of ``base``.
    """
    setting = f'BELUGA_WORKFLOWS["{section}"]["BACKEND"] = {label or path!r}'
    try:
        cls = import_string(path)
    except ImportError as exc:
        if extra is not None:
            raise ImproperlyConfigured(
                f'{setting} needs a library that is not installed ({exc}): '
                f'pip install "beluga-workflows[{extra}]"') from exc
        raise ImproperlyConfigured(f"{setting} cannot be imported ({exc}){hint}") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ImproperlyConfigured(f"{setting} is not a {base.__name__} subclass")
    return cls


def retention_seconds(value: Any) -> float | None:
    """``BELUGA_WORKFLOWS["RETENTION"]`` as seconds (``None``: keep every run), read by the
    rules of every duration (``engine/durations.py``).

    Raises:
        ImproperlyConfigured: not a duration, or not a positive one, naming the setting.
    """
    from .engine.errors import InvalidInputError
    from .engine.types import to_seconds

    try:
        seconds = to_seconds(value, 'BELUGA_WORKFLOWS["RETENTION"]')
    except InvalidInputError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    if seconds is not None and seconds <= 0:
        raise ImproperlyConfigured('BELUGA_WORKFLOWS["RETENTION"] must be a positive duration '
                                   '(or None to keep every run)')
    return seconds


class WorkflowSettings:
    """Attribute access to ``BELUGA_WORKFLOWS`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None
        self._imported: dict[str, list[Any]] = {}

    def user_settings(self) -> dict[str, Any]:
        """``settings.BELUGA_WORKFLOWS`` as the site wrote it (``{}`` without a configured site)."""
        from django.conf import settings

        if not settings.configured:
            return {}
        value = getattr(settings, "BELUGA_WORKFLOWS", None) or {}
        if not isinstance(value, dict):
            raise ImproperlyConfigured("BELUGA_WORKFLOWS must be a dict")
        return value

    def as_dict(self) -> dict[str, Any]:
        """Every setting: the site's values over the defaults."""
        if self._cache is None:
            merged = dict(DEFAULTS)
            merged.update(self.user_settings())
            self._cache = merged
        return self._cache

    def imported(self, key: str) -> list[Any]:
        """The objects the dotted paths of ``key`` (one of ``IMPORT_STRINGS``) name, imported once.

        Raises:
            ImproperlyConfigured: the value is not a list, or a path cannot be imported.
        """
        if key not in IMPORT_STRINGS:
            raise KeyError(key)
        if key not in self._imported:
            self._imported[key] = _import_list(key, self.as_dict()[key])
        return self._imported[key]

    def unknown_keys(self) -> list[str]:
        """Keys of ``BELUGA_WORKFLOWS`` that no setting has (typos), sorted."""
        return sorted(k for k in self.user_settings() if k not in DEFAULTS)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.as_dict()[name]
        except KeyError:
            raise AttributeError(f"no beluga_workflows setting {name!r}") from None

    def reload(self) -> None:
        """Forget what was read: the next access reads ``BELUGA_WORKFLOWS`` again."""
        self._cache = None
        self._imported = {}


workflow_settings = WorkflowSettings()

_reset_callbacks: list[Callable[[], None]] = []


def on_reload(callback: Callable[[], None]) -> None:
    """Call ``callback()`` whenever ``BELUGA_WORKFLOWS`` changes (caches of stores/executors)."""
    _reset_callbacks.append(callback)


_T = TypeVar("_T")


class ConfiguredSingleton(Generic[_T]):
    """The configured instance of something, built on first use and rebuilt after a settings change.

    Args:
        build: makes the instance from the current settings.
        close: how to release an instance that is dropped (after a change or ``reset()``).
    """

    def __init__(self, build: Callable[[], _T], close: Callable[[_T], None]) -> None:
        self._build = build
        self._close = close
        self._lock = threading.Lock()
        self._value: _T | None = None
        on_reload(self.reset)

    def get(self) -> _T:
        """The instance, built once per process (thread-safe)."""
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def reset(self) -> None:
        """Drop (and close) the instance; the next ``get()`` builds a new one."""
        with self._lock:
            value, self._value = self._value, None
        if value is not None:
            self._close(value)


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "BELUGA_WORKFLOWS":
        workflow_settings.reload()
        for callback in _reset_callbacks:
            callback()


setting_changed.connect(_setting_changed)
