"""``"local_activities"``: our activities as Temporal local activities, on the dev server and a
real worker process. Results, retries, failures, cancel and the history the store shows are the
same as with (remote) activities; the run's memo keeps the choice for its replays.
"""

from __future__ import annotations

import pytest

from beluga_workflows import (
    EventType,
    InvalidInputError,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowOptions,
    WorkflowStatus,
)
from beluga_workflows.runtimes.temporal import TemporalExecutor

from .conftest import TARGET, read_ledger, wait_for


@pytest.fixture
def local(executor, queue):
    """A temporal executor on the shared worker's queue that starts runs with local activities."""
    return TemporalExecutor(target=TARGET, task_queue=queue, local_activities=True)


def test_local_activities_complete_the_run_and_show_as_activities_in_its_history(local, unique,
                                                                                 ledger):
    handle = local.execute("temporal.steps", WorkflowOptions(
        id=unique, input={"id": unique, "steps": 3, "seconds": 0}))
    assert handle.result(timeout=30) == [f"{unique}:0", f"{unique}:1", f"{unique}:2"]
    assert handle.status() is WorkflowStatus.COMPLETED
    history = local.store.history(unique)
    completed = [e for e in history if e.type is EventType.ACTIVITY_COMPLETED]
    assert len({e.activity_name for e in completed}) == 1 and "crash_step" in completed[0].activity_name
    assert [e.result for e in completed] == [f"{unique}:0", f"{unique}:1", f"{unique}:2"]
    assert [e.type for e in history].count(EventType.ACTIVITY_SCHEDULED) == 3
    assert [line for line in read_ledger(ledger) if line.startswith(f"end {unique}")] == [
        f"end {unique} 0", f"end {unique} 1", f"end {unique} 2"]


def test_a_local_activity_is_retried_by_our_policy_then_fails_the_run(local, unique, ledger):
    handle = local.execute("temporal.failing", WorkflowOptions(id=unique, input={"id": unique}))
    with pytest.raises(WorkflowFailedError) as raised:
        handle.result(timeout=30)
    assert "failed after 2 attempt(s): ValueError: flaky" in raised.value.error["message"]
    assert read_ledger(ledger).count(f"flaky {unique}") == 2
    failed = [e for e in local.store.history(unique) if e.type is EventType.ACTIVITY_FAILED]
    assert len(failed) == 1 and failed[0].error["type"] == "ValueError"


def test_cancel_during_a_local_activity_runs_the_clean_up(local, unique, ledger):
    handle = local.execute("temporal.cancellable",
                           WorkflowOptions(id=unique, input={"id": unique, "during": "activity"}))
    wait_for(lambda: f"slow-start {unique}" in read_ledger(ledger), 20, "the activity")
    local.cancel(unique)
    with pytest.raises(WorkflowCanceledError):
        handle.result(timeout=30)
    assert handle.status() is WorkflowStatus.CANCELED
    assert f"cleanup {unique} activity" in read_ledger(ledger)


def test_only_the_listed_activities_run_locally(executor, queue, unique):
    some = TemporalExecutor(target=TARGET, task_queue=queue, local_activities=["nothing.listed"])
    handle = some.execute("temporal.steps", WorkflowOptions(
        id=unique, input={"id": unique, "steps": 1, "seconds": 0}))
    assert handle.result(timeout=30) == [f"{unique}:0"]
    kinds = [e.type for e in some.store.history(unique)]
    assert EventType.ACTIVITY_STARTED in kinds  # a (remote) activity: Temporal recorded its start


@pytest.mark.parametrize("bad", ["yes", 1, [""], [3]])
def test_a_bad_local_activities_option_is_refused(bad):
    with pytest.raises(InvalidInputError, match="local_activities"):
        TemporalExecutor(target=TARGET, local_activities=bad)
