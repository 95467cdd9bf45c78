"""``manage.py workflows_recover``: sends the due runs, explains itself, refuses bad input."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from beluga_workflows import WorkflowContext, WorkflowOptions, workflow
from beluga_workflows.executor import WorkflowExecutor, get_executor
from beluga_workflows.management.commands.workflows_recover import Command
from tests.celery.memory_broker import MEMORY_CELERY, drain

MEMORY_LOCAL = {
    "STORE": {"BACKEND": "memory", "OPTIONS": {}},
    "EXECUTOR": {"BACKEND": "local", "OPTIONS": {}},
    "HOOKS": [],
}


@workflow(name="commands_recover.hello")
def hello(ctx: WorkflowContext, name: str | None = None) -> str:
    return f"hello {name or 'world'}"


class Unscheduled(WorkflowExecutor):
    """Records runs without sending them anywhere: what a lost message leaves behind."""

    def schedule(self, workflow_id, *, at=None, queue=None):
        pass


def lost_runs(*ids: str) -> None:
    creator = Unscheduled(store=get_executor().store)
    for workflow_id in ids:
        creator.execute(hello, WorkflowOptions(id=workflow_id))


def recover(*args: str) -> str:
    out = StringIO()
    call_command("workflows_recover", *args, stdout=out, no_color=True)
    return out.getvalue()


def test_help_says_what_it_does():
    text = Command().create_parser("manage.py", "workflows_recover").format_help()
    assert "Re-schedule runs whose worker died or whose timers are due" in text
    assert "--limit" in text and "--dry-run" in text


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_limit_that_is_not_positive_is_a_one_line_error(limit):
    with pytest.raises(CommandError, match="--limit must be a positive number"):
        recover("--limit", limit)


def test_a_limit_that_is_not_a_number_is_refused():
    with pytest.raises(CommandError, match="invalid int value"):
        recover("--limit", "many")


@override_settings(BELUGA_WORKFLOWS=MEMORY_CELERY)
def test_nothing_due_says_so():
    assert "Nothing to recover: no run is due." in recover()


@override_settings(BELUGA_WORKFLOWS=MEMORY_CELERY)
def test_due_runs_are_sent_to_the_celery_workers():
    lost_runs("lost-1", "lost-2")
    drain()
    output = recover()
    assert "lost-1" in output and "lost-2" in output
    assert "2 run(s) re-scheduled." in output
    assert sorted(m.payload[0][0] for m in drain()) == ["lost-1", "lost-2"]


@override_settings(BELUGA_WORKFLOWS=MEMORY_CELERY)
def test_dry_run_lists_without_sending_and_limit_bounds_the_batch():
    lost_runs("a-1", "a-2", "a-3")
    drain()
    output = recover("--dry-run")
    assert "3 run(s) due (dry run, nothing scheduled)." in output
    assert drain() == []
    output = recover("--limit", "2")
    assert "2 run(s) re-scheduled." in output and "--limit 2 reached" in output
    assert len(drain()) == 2


@override_settings(BELUGA_WORKFLOWS=MEMORY_LOCAL)
def test_with_the_local_runtime_the_runs_are_advanced_in_the_command():
    lost_runs("here-1")
    assert "1 run(s) advanced in this process." in recover()
    assert get_executor().store.load("here-1").result == "hello world"


@override_settings(BELUGA_WORKFLOWS={**MEMORY_CELERY, "STORE": {"BACKEND": "nowhere.Store"}})
def test_a_broken_configuration_is_a_one_line_error():
    with pytest.raises(CommandError, match="not configured correctly"):
        recover()
