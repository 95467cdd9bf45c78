"""System checks: ``manage.py check`` reports a wrong ``BELUGA_WORKFLOWS`` with a hint."""

from __future__ import annotations

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

# Executors whose runs may be advanced by more than one process.
_SINGLE_PROCESS_EXECUTORS = {"local"}


@checks.register("beluga_workflows")
def check_settings(app_configs=None, **kwargs):
    """Check ``BELUGA_WORKFLOWS``: unknown keys (``W002``), a store that cannot be built
    (``E001``) or reached (``E004``) or lacks what a multi-process executor needs (``W001``),
    an unregistered executor (``E002``), Celery not installed for the celery executor
    (``E005``), the temporal extra missing (``E009``) or its server unreachable (``E010``),
    the django_tasks combination (``E020``-``E022``, ``W020``, ``W021``),
    a lease that is not a positive number (``E003``), a ``RETENTION`` that is not a positive
    duration or that the store cannot purge (``E007``), a bad ``MAX_HISTORY_EVENTS``
    (``E008``).

    Returns the messages; the store it builds for the check is closed again.
    """
    from .conf import workflow_settings
    from .runtimes import list_executors

    errors = _check_keys(workflow_settings) + _check_store(workflow_settings)
    executor = workflow_settings.EXECUTOR
    backend = executor.get("BACKEND") if isinstance(executor, dict) else None
    if backend not in list_executors():
        errors.append(checks.Error(
            f"BELUGA_WORKFLOWS['EXECUTOR']['BACKEND'] = {backend!r} is not a registered executor",
            hint=f"Use one of: {', '.join(list_executors())}.", id="beluga_workflows.E002"))
    elif backend == "celery":
        errors += _check_celery()
    elif backend == "temporal":
        errors += _check_temporal(executor.get("OPTIONS") or {})
    elif backend == "django_tasks":
        from .runtimes.django_tasks import check_django_tasks

        errors += check_django_tasks(executor.get("OPTIONS") or {})
    errors += _check_retention(workflow_settings)
    lease = workflow_settings.LEASE_SECONDS
    if not isinstance(lease, (int, float)) or lease <= 0:
        errors.append(checks.Error("BELUGA_WORKFLOWS['LEASE_SECONDS'] must be a positive number",
                                   hint="The default is 30.", id="beluga_workflows.E003"))
    most = workflow_settings.MAX_HISTORY_EVENTS
    if most is not None and (isinstance(most, bool) or not isinstance(most, int) or most < 10):
        errors.append(checks.Error(
            f"BELUGA_WORKFLOWS['MAX_HISTORY_EVENTS'] = {most!r} must be a whole number of at "
            f"least 10, or None (no limit)", hint="The default is 50000.",
            id="beluga_workflows.E008"))
    return errors


def _check_keys(workflow_settings) -> list[checks.CheckMessage]:
    """Every key of ``BELUGA_WORKFLOWS`` is a setting (a typo would be silently ignored)."""
    import difflib

    from .conf import DEFAULTS

    messages: list[checks.CheckMessage] = []
    for key in workflow_settings.unknown_keys():
        close = difflib.get_close_matches(key, DEFAULTS, n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        messages.append(checks.Warning(
            f"BELUGA_WORKFLOWS[{key!r}] is not a beluga_workflows setting; it is ignored",
            hint=f"{hint}The settings are: {', '.join(sorted(DEFAULTS))}.",
            id="beluga_workflows.W002"))
    return messages


def _check_store(workflow_settings) -> list[checks.CheckMessage]:
    """The store can be built from its settings, answers its own check, and suits the executor."""
    from .stores import STORE_ALIASES, create_store

    try:
        store = create_store()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint=(
            f"Fix BELUGA_WORKFLOWS['STORE']: BACKEND is one of {', '.join(STORE_ALIASES)} or a "
            f"dotted path, OPTIONS the keyword arguments of that store."),
            id="beluga_workflows.E001")]
    try:
        executor = workflow_settings.EXECUTOR
        executor_backend = executor.get("BACKEND") if isinstance(executor, dict) else None
        multi_process = executor_backend not in _SINGLE_PROCESS_EXECUTORS
        messages = list(store.check(multi_process=multi_process))
        if multi_process and not (
                store.supports_compare_and_set and store.supports_listing):
            lacks = [what for what, has in (("compare-and-set", store.supports_compare_and_set),
                                            ("listing", store.supports_listing)) if not has]
            messages.append(checks.Warning(
                f"the {store.backend_name} workflow store has no {' and no '.join(lacks)}, but the "
                f"{executor_backend!r} executor runs workflows in several processes: two workers "
                f"can advance the same run (a step may run twice, a signal may be lost), and runs "
                f"started by one process are invisible to the others' lists and recovery sweeps.",
                hint="Use it with the 'local' executor in one process, or choose a store with "
                     "compare-and-set and listing (django, redis, nats, kafka, dapr).",
                id="beluga_workflows.W001"))
        messages.extend(_check_flow_control(store))
    finally:
        store.close()
    return messages


def _check_flow_control(store) -> list[checks.CheckMessage]:
    """Workflows that declare flow control need a store that enforces it (E006)."""
    from .engine.registry import get_workflow, registered_workflows

    if store.supports_flow_control:
        return []
    declaring = [name for name in registered_workflows()
                 if get_workflow(name).flow is not None and (
                     get_workflow(name).flow.gated or get_workflow(name).flow.groups_events)]
    if not declaring:
        return []
    return [checks.Error(
        f"workflow(s) {', '.join(declaring)} declare flow control (concurrency, throttle, "
        f"rate_limit, debounce or batch), which the {store.backend_name} workflow store does "
        f"not enforce: starting them fails",
        hint='Use the django store (BELUGA_WORKFLOWS["STORE"]["BACKEND"] = "django"), or remove '
             "the declarations.",
        id="beluga_workflows.E006")]


def _check_retention(workflow_settings) -> list[checks.CheckMessage]:
    """``RETENTION`` is ``None`` or a positive duration, and the store can purge ended runs."""
    from .conf import retention_seconds
    from .stores import create_store

    try:
        if retention_seconds(workflow_settings.RETENTION) is None:
            return []
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint='Give seconds, a timedelta or a string such as "30d" '
                             '(units ms, s, m, h, d, w), or None to keep every run.',
                             id="beluga_workflows.E007")]
    try:
        store = create_store()
    except ImproperlyConfigured:
        return []  # E001 says why
    try:
        if store.supports_purge:
            return []
        return [checks.Error(str(store.purge_unsupported("RETENTION")),
                             hint="Set RETENTION to None, or choose a store that lists runs.",
                             id="beluga_workflows.E007")]
    finally:
        store.close()


def _check_celery() -> list[checks.CheckMessage]:
    """The celery executor's library is installed (the ``celery`` extra)."""
    from .runtimes.celery import require_celery

    try:
        require_celery()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="Install the celery extra, or choose the local executor.",
                             id="beluga_workflows.E005")]
    return []


def _check_temporal(options: dict) -> list[checks.CheckMessage]:
    """The temporal executor's SDK is installed (``E009``) and its server answers (``E010``)."""
    try:
        from .runtimes.temporal.connection import connection_for
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="pip install 'beluga-workflows[temporal]', or choose "
                             "the local or celery executor.", id="beluga_workflows.E009")]
    from .engine.errors import StoreError
    from .stores.temporal import TemporalStore

    target = options.get("target", "127.0.0.1:7233")
    try:
        connection_for(target, options.get("namespace", "default"))
        TemporalStore(target=target, namespace=options.get("namespace", "default")).ping()
    except (StoreError, ImproperlyConfigured) as exc:
        return [checks.Error(
            f"the temporal executor cannot reach its server: {exc}",
            hint="Start it (temporal server start-dev --headless --ip 127.0.0.1 --port 7233) or "
                 "fix BELUGA_WORKFLOWS['EXECUTOR']['OPTIONS'] 'target' and 'namespace'.",
            id="beluga_workflows.E010")]
    return []
