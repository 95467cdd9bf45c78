"""The Celery app of the example project; beluga_workflows' tasks are found in its tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beluga_project.settings")

app = Celery("beluga_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
