"""System checks: ``manage.py check`` reports a wrong ``BELUGA_WORKFLOWS`` with a hint."""

from __future__ import annotations

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register("beluga_workflows")
def check_settings(app_configs=None, **kwargs):
    from .conf import workflow_settings
    from .executor import list_executors
    from .stores import create_store

    errors = []
    try:
        store = create_store()
    except ImproperlyConfigured as exc:
        errors.append(checks.Error(str(exc), hint="Fix BELUGA_WORKFLOWS['STORE'].",
                                   id="beluga_workflows.E001"))
    else:
        store.close()
    executor = workflow_settings.EXECUTOR
    backend = executor.get("BACKEND") if isinstance(executor, dict) else None
    if backend not in list_executors():
        errors.append(checks.Error(
            f"BELUGA_WORKFLOWS['EXECUTOR']['BACKEND'] = {backend!r} is not a registered executor",
            hint=f"Use one of: {', '.join(list_executors())}.", id="beluga_workflows.E002"))
    lease = workflow_settings.LEASE_SECONDS
    if not isinstance(lease, (int, float)) or lease <= 0:
        errors.append(checks.Error("BELUGA_WORKFLOWS['LEASE_SECONDS'] must be a positive number",
                                   hint="The default is 30.", id="beluga_workflows.E003"))
    return errors
