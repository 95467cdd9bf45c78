"""``manage.py check`` on the django_tasks executor: the TASKS backend and queue it names, and
what an immediate backend means."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

DB = {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}
IMMEDIATE = {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}


def _ids(options: dict, tasks: dict) -> list[str]:
    executor = {"BACKEND": "django_tasks", "OPTIONS": options}
    with override_settings(TASKS=tasks,
                           BELUGA_WORKFLOWS={"STORE": {"BACKEND": "memory"}, "EXECUTOR": executor}):
        return [m.id for m in checks.run_checks(tags=["beluga_workflows"])]


@pytest.mark.parametrize(("options", "tasks", "expected"), [
    ({"backend": "default", "queue_name": "default"}, {"default": DB}, []),
    ({"backend": "elsewhere"}, {"default": DB}, ["beluga_workflows.E021"]),
    ({"queue_name": "reports"}, {"default": {**DB, "QUEUES": ["default"]}},
     ["beluga_workflows.E022"]),
    ({}, {"default": IMMEDIATE}, ["beluga_workflows.W020"]),
])
def test_check_reports_the_task_backend_combination(options, tasks, expected):
    assert [i for i in _ids(options, tasks) if "E02" in i or "W02" in i] == expected
