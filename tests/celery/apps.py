"""The Celery integration tests as a Django app, so worker processes discover ``workflows.py``."""

from django.apps import AppConfig


class CeleryTestsConfig(AppConfig):
    name = "tests.celery"
    label = "beluga_celery_tests"

    def ready(self) -> None:
        from celery.signals import worker_ready
        from django.db.backends.signals import connection_created

        from .workflows import count_connection, mark_worker_ready

        worker_ready.connect(mark_worker_ready, weak=False)
        connection_created.connect(count_connection, weak=False)
