"""The Celery integration tests as a Django app, so worker processes discover ``workflows.py``."""

from django.apps import AppConfig


class CeleryTestsConfig(AppConfig):
    name = "tests.celery"
    label = "beluga_celery_tests"

    def ready(self) -> None:
        from celery.signals import worker_ready

        from .workflows import mark_worker_ready

        worker_ready.connect(mark_worker_ready, weak=False)
