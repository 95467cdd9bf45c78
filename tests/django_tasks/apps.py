"""The django_tasks integration tests as a Django app, so db_worker processes discover ``workflows.py``."""

from django.apps import AppConfig


class DjangoTasksTestsConfig(AppConfig):
    name = "tests.django_tasks"
    label = "beluga_django_tasks_tests"
