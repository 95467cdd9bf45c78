"""``workflows_schedules [--json]``: the schedules as a table, or JSON lines equal to the API's."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from rest_framework.renderers import JSONRenderer

from beluga_workflows import Cron, workflow
from beluga_workflows.api.schedules import ScheduleSerializer
from beluga_workflows.engine import registry
from beluga_workflows.executor import get_executor
from beluga_workflows.models import Schedule
from beluga_workflows.schedules import create_schedule, fire_schedules, pause_schedule

from .conftest import run
from .test_exit_codes import manage

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("workflow_backend")]

DECLARED = "tests.commands.hourly"


@pytest.fixture
def declared():
    def hourly(ctx, value=None):
        return value

    workflow(name=DECLARED, schedule=Cron("0 * * * *", input={"from": "code"}))(hourly)
    yield DECLARED
    with registry._lock:
        registry._workflows.pop(DECLARED, None)


def test_no_schedules():
    assert run("workflows_schedules") == "No schedules.\n"
    assert run("workflows_schedules", "--json") == ""


def test_the_table_lists_made_and_declared_schedules(declared):
    executor = get_executor()
    create_schedule(executor, "nightly", workflow_type="tests.commands.echo", cron="30 2 * * *",
                    timezone="Europe/Berlin", overlap="allow")
    pause_schedule(executor, "nightly")
    create_schedule(executor, "often", workflow_type="tests.commands.echo", cron="* * * * *")
    Schedule.objects.filter(pk="often").update(next_fire_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    fire_schedules(executor, ids=["often"])
    lines = run("workflows_schedules").splitlines()
    assert lines[0].split() == ["ID", "WORKFLOW", "CRON", "TIME", "ZONE", "OVERLAP", "STATE",
                                "NEXT", "FIRE", "(UTC)", "LAST", "FIRE", "(UTC)", "LAST",
                                "OUTCOME"]
    ids = [line.split()[0] for line in lines[1:]]
    assert ids == ["nightly", "often", DECLARED]  # the declared one synced in
    nightly, often, hourly = lines[1:]
    assert "30 2 * * *  Europe/Berlin  allow" in nightly and "paused" in nightly
    assert "active (code)" in hourly and "0 * * * *" in hourly
    run_id = Schedule.objects.get(pk="often").last_workflow_id
    assert run_id.startswith("often@") and f"started {run_id}" in often


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_json_lines_are_the_api_serializer_s(settings, zone, declared):
    settings.TIME_ZONE = zone
    create_schedule(get_executor(), "nightly", workflow_type="tests.commands.echo",
                    cron="30 2 * * *", timezone="Europe/Berlin", input={"n": [1, "two"]})
    out = run("workflows_schedules", "--json").splitlines()
    rows = Schedule.objects.order_by("id")
    assert [json.loads(line) for line in out] == [
        json.loads(JSONRenderer().render(ScheduleSerializer(row).data)) for row in rows]
    assert [json.loads(line)["id"] for line in out] == ["nightly", DECLARED]


def test_help_explains_the_command():
    result = manage("workflows_schedules", "--help")
    assert result.returncode == 0
    assert "--json" in result.stdout and "@workflow(schedule=...)" in result.stdout
