"""The Django app: imports every installed app's ``workflows.py`` and registers system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class BelugaWorkflowsConfig(AppConfig):
    """The ``beluga_workflows`` app (admin label "Workflows")."""
    name = "beluga_workflows"
    verbose_name = "Workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks and import every installed app's ``workflows`` module, so
        the workflows and activities it defines are registered before any run is advanced.
        """
        from . import checks  # noqa: F401 - registers the system checks

        autodiscover_modules("workflows")
