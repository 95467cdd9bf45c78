"""The Django app: imports every installed app's ``workflows.py`` and registers system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class BelugaWorkflowsConfig(AppConfig):
    name = "beluga_workflows"
    verbose_name = "Workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks

        autodiscover_modules("workflows")
