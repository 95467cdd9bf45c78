"""``workflows_purge``: delete ended runs older than a duration, or count them with --dry-run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management.base import CommandError

from beluga_workflows.executor import get_executor
from beluga_workflows.types import WorkflowStatus, utcnow

from ..stores.test_contract import new_run
from ..stores.test_retention import ended_at
from .conftest import BACKEND, run
from .test_exit_codes import manage

DAY = timedelta(days=1)


@pytest.fixture
def runs(workflow_backend):
    """Three runs ended 40, 20 and 1 days ago, and one open since 90 days."""
    store = get_executor().store
    now = utcnow()
    for name, days in (("ended-40d", 40), ("ended-20d", 20), ("ended-1d", 1)):
        store.create(ended_at(name, now - days * DAY))
    waiting = new_run("open-90d", created=now - 90 * DAY)
    waiting.wake_at = None
    store.create(waiting)
    return store


def ids(store) -> set[str]:
    return {s.workflow_id for s in store.list()}


def test_dry_run_counts_and_changes_nothing(runs):
    out = run("workflows_purge", "--older-than", "10d", "--dry-run")
    assert out.startswith("2 run(s) ended before ") and "nothing was deleted" in out
    assert ids(runs) == {"ended-40d", "ended-20d", "ended-1d", "open-90d"}


def test_purge_deletes_the_ended_runs_older_than_the_duration(runs):
    assert run("workflows_purge", "--older-than", "30d").startswith("Deleted 1 run(s)")
    assert run("workflows_purge", "--older-than", str(10 * 86400), "--batch", "1"
               ).startswith("Deleted 1 run(s)")
    assert ids(runs) == {"ended-1d", "open-90d"}


def test_the_default_is_the_retention_setting(runs, settings):
    settings.BELUGA_WORKFLOWS = {**BACKEND, "RETENTION": timedelta(days=15)}
    store = get_executor().store  # a new store: the settings changed
    now = utcnow()
    store.create(ended_at("old", now - 16 * DAY))
    store.create(ended_at("young", now - 14 * DAY))
    assert run("workflows_purge", "--dry-run").startswith("1 run(s)")
    assert run("workflows_purge").startswith("Deleted 1 run(s)")
    assert ids(store) == {"young"}


@pytest.mark.parametrize(("args", "message"), [
    ((), "no retention: give --older-than"),
    (("--older-than", "30 days"), "--older-than '30 days' is not a duration"),
    (("--older-than", "-5"), "--older-than must not be negative"),
    (("--older-than", "0s"), "--older-than must be a positive duration"),
    (("--older-than", "1d", "--batch", "0"), "--batch must be at least 1"),
])
def test_bad_input_is_a_one_line_error_and_changes_nothing(runs, args, message):
    with pytest.raises(CommandError, match=message):
        run("workflows_purge", *args)
    assert len(ids(runs)) == 4


def test_from_a_shell_a_bad_duration_exits_non_zero_with_one_line():
    result = manage("workflows_purge", "--older-than", "soon")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "CommandError: --older-than 'soon' is not a duration"), result.stderr
    result = manage("workflows_purge", "--dry-run")
    assert result.returncode != 0 and result.stderr.strip().startswith(
        "CommandError: no retention"), result.stderr


# -- --status and --type ------------------------------------------------------------------------

@pytest.fixture
def mixed(workflow_backend):
    """Runs ended 40 days ago: failed and completed of orders.process, failed of mail.send."""
    store = get_executor().store
    now = utcnow()
    for name, status, type_ in (("o-failed-1", WorkflowStatus.FAILED, "orders.process"),
                                ("o-failed-2", WorkflowStatus.FAILED, "orders.process"),
                                ("o-failed-3", WorkflowStatus.FAILED, "orders.process"),
                                ("o-done", WorkflowStatus.COMPLETED, "orders.process"),
                                ("m-failed", WorkflowStatus.FAILED, "mail.send")):
        store.create(ended_at(name, now - 40 * DAY, status, workflow_type=type_))
    store.create(ended_at("o-failed-young", now - DAY, WorkflowStatus.FAILED,
                          workflow_type="orders.process"))
    return store


def test_status_and_type_delete_only_those_runs_and_say_which(mixed):
    out = run("workflows_purge", "--older-than", "30d", "--status", "failed",
              "--type", "orders.process")
    assert out.startswith("Deleted 3 failed run(s) of orders.process that ended before "), out
    assert ids(mixed) == {"o-done", "m-failed", "o-failed-young"}
    assert run("workflows_purge", "--older-than", "30d", "--type", "mail.send").startswith(
        "Deleted 1 run(s) of mail.send that ended before ")
    assert run("workflows_purge", "--older-than", "30d", "--status", "completed").startswith(
        "Deleted 1 completed run(s) that ended before ")
    assert ids(mixed) == {"o-failed-young"}


def test_dry_run_with_filters_counts_them_and_changes_nothing(mixed):
    out = run("workflows_purge", "--older-than", "30d", "--status", "failed",
              "--type", "orders.process", "--dry-run")
    assert out.startswith("3 failed run(s) of orders.process ended before "), out
    assert "would be deleted (dry run: nothing was deleted)" in out
    assert run("workflows_purge", "--older-than", "30d", "--status", "failed", "--dry-run"
               ).startswith("4 failed run(s) ended before ")
    assert run("workflows_purge", "--older-than", "30d", "--type", "no.such", "--dry-run"
               ).startswith("0 run(s) of no.such ended before ")
    assert len(ids(mixed)) == 6


@pytest.mark.parametrize(("args", "message"), [
    (("--status", "running"), "--status 'running' is not an ended status: only ended runs"),
    (("--status", "done"), r"--status 'done' is not an ended status \(one of completed, "
                           r"failed, canceled, timed_out\)"),
    (("--status", "failed", "--type", " "), "--type must name a workflow type"),
])
@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)])
def test_a_bad_status_or_type_is_a_one_line_error_and_changes_nothing(mixed, args, message,
                                                                      dry_run):
    with pytest.raises(CommandError, match=message):
        run("workflows_purge", "--older-than", "30d", *args, *dry_run)
    assert len(ids(mixed)) == 6


def test_from_a_shell_a_bad_status_exits_non_zero_with_one_line():
    result = manage("workflows_purge", "--older-than", "30d", "--status", "running")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "CommandError: --status 'running' is not an ended status"), result.stderr
