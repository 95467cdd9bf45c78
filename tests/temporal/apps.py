"""The Temporal tests as a Django app, so the worker processes they start discover ``workflows.py``."""

from django.apps import AppConfig


class TemporalTestsConfig(AppConfig):
    name = "tests.temporal"
    label = "beluga_temporal_tests"
