"""The temporal executor on a real Temporal dev server and a real worker process: API.md §1 and §2.

Every wait is on a condition with a deadline (``handle.result(timeout)``, ``wait_for``).
"""

from __future__ import annotations

import pytest

from beluga_workflows import (
    EventType,
    InvalidInputError,
    Signal,
    WorkflowAlreadyExistsError,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowOptions,
    WorkflowStatus,
    WorkflowTimeoutError,
)
from beluga_workflows.runtimes.temporal import TemporalExecutor
from beluga_workflows.stores.temporal import TemporalStore

from .conftest import read_ledger, wait_for


def types_of(executor, workflow_id):
    return [e.type for e in executor.store.history(workflow_id)]


def has_event(executor, workflow_id, type_):
    return type_ in types_of(executor, workflow_id)


def test_the_configured_executor_and_store_are_temporal(executor):
    assert isinstance(executor, TemporalExecutor)
    assert isinstance(executor.store, TemporalStore)


def test_api_example_with_the_signal_sent_before_the_run_reaches_receive_signal(executor, unique):
    order = {"id": unique, "total": 42, "charge_seconds": 1.0, "hold": 0.2}
    handle = executor.execute("orders.process", WorkflowOptions(id=unique, input=order,
                                                                timeout=60))
    executor.signal(unique, Signal(name="approval", payload={"by": "ann"}))  # the charge takes 1 s

    assert handle.result(timeout=30) == {"receipt": {"charged": 42, "order": unique},
                                         "approval": {"by": "ann"}}
    assert handle.status() is WorkflowStatus.COMPLETED
    kinds = types_of(executor, unique)
    assert kinds.index(EventType.SIGNAL_RECEIVED) < kinds.index(EventType.ACTIVITY_COMPLETED)
    assert kinds[-3:] == [EventType.TIMER_STARTED, EventType.TIMER_FIRED,
                          EventType.WORKFLOW_COMPLETED]


def test_api_example_with_the_signal_sent_while_the_run_waits_in_receive_signal(executor, unique,
                                                                              ledger):
    order = {"id": unique, "total": 7, "hold": 0.2}
    handle = executor.execute("orders.process", WorkflowOptions(id=unique, input=order))
    wait_for(lambda: has_event(executor, unique, EventType.ACTIVITY_COMPLETED), 20,
             "the charge to complete")
    assert handle.status() is WorkflowStatus.RUNNING
    assert executor.query(unique, "status") == "running"

    executor.signal(unique, Signal(name="approval", payload={"by": "bob"}))

    assert handle.result(timeout=30)["approval"] == {"by": "bob"}
    kinds = types_of(executor, unique)
    assert kinds.index(EventType.ACTIVITY_COMPLETED) < kinds.index(EventType.SIGNAL_RECEIVED)
    assert executor.query(unique, "result") == handle.result(timeout=1)
    assert [e["type"] for e in executor.query(unique, "history")][0] == "workflow_started"
    assert read_ledger(ledger).count(f"charge {unique}") == 1


def test_a_signal_timeout_raises_signal_timeout_error_in_the_workflow(executor, unique):
    handle = executor.execute("temporal.signal_timeout", WorkflowOptions(id=unique, input=0.5))
    assert handle.result(timeout=20) == "gave up: no signal 'never' within the timeout"


@pytest.mark.parametrize("during", ["sleep", "activity"])
def test_cancel_runs_the_clean_up_and_ends_the_run_canceled(executor, unique, ledger, during):
    handle = executor.execute("temporal.cancellable",
                              WorkflowOptions(id=unique, input={"id": unique, "during": during}))
    if during == "sleep":
        wait_for(lambda: has_event(executor, unique, EventType.TIMER_STARTED), 20, "the sleep")
    else:
        wait_for(lambda: f"slow-start {unique}" in read_ledger(ledger), 20, "the activity")

    executor.cancel(unique)

    with pytest.raises(WorkflowCanceledError):
        handle.result(timeout=30)
    assert handle.status() is WorkflowStatus.CANCELED
    assert f"cleanup {unique} {during}" in read_ledger(ledger)
    kinds = types_of(executor, unique)
    assert kinds[-1] is EventType.WORKFLOW_CANCELED
    assert kinds.index(EventType.CANCEL_REQUESTED) < kinds.index(EventType.ACTIVITY_COMPLETED)
    with pytest.raises(WorkflowNotRunningError):
        executor.cancel(unique)
    with pytest.raises(WorkflowNotRunningError):
        executor.signal(unique, Signal(name="approval"))


def test_a_workflow_timeout_ends_the_run_timed_out(executor, unique):
    handle = executor.execute("temporal.sleeper", WorkflowOptions(id=unique, input=60, timeout=1))
    with pytest.raises(WorkflowTimeoutError):
        handle.result(timeout=30)
    assert handle.status() is WorkflowStatus.TIMED_OUT
    state = executor.store.load(unique)
    assert state.deadline is not None and state.history[-1].type is EventType.WORKFLOW_TIMED_OUT


def test_a_custom_query_answers_from_the_run_s_current_state(executor, unique):
    handle = executor.execute("temporal.progress", WorkflowOptions(id=unique, input=["a", "b"]))
    assert wait_for(lambda: _query(executor, unique), 20, "the query handler") == {
        "done": [], "left": 2}
    executor.signal(unique, Signal(name="item", payload="first"))
    wait_for(lambda: (_query(executor, unique) or {}).get("left") == 1, 20, "one item done")
    executor.signal(unique, Signal(name="item", payload="second"))

    result = handle.result(timeout=20)
    assert result["done"] == ["first", "second"] and result["token"] == "once"
    assert executor.query(unique, "progress") == {"done": ["first", "second"], "left": 0}
    with pytest.raises(InvalidInputError, match="unknown query type 'nope'"):
        executor.query(unique, "nope")


def _query(executor, workflow_id):
    try:
        return executor.query(workflow_id, "progress")
    except InvalidInputError:  # the run has not set its handler yet
        return None


def test_duplicate_open_ids_are_refused_and_ended_ids_start_a_new_run(executor, unique):
    first = executor.execute("temporal.sleeper", WorkflowOptions(id=unique, input=1))
    with pytest.raises(WorkflowAlreadyExistsError):
        executor.execute("temporal.sleeper", WorkflowOptions(id=unique, input=1))
    assert first.result(timeout=20) == "woke"

    second = executor.execute("temporal.sleeper", WorkflowOptions(id=unique, input=0.1))
    assert second.run_id != first.run_id
    assert second.result(timeout=20) == "woke"
    assert executor.get_handle(unique).run_id == second.run_id


def test_an_activity_that_fails_for_good_fails_the_run(executor, unique, ledger):
    handle = executor.execute("temporal.failing", WorkflowOptions(id=unique, input={"id": unique}))
    with pytest.raises(WorkflowFailedError) as raised:
        handle.result(timeout=30)
    assert raised.value.error["type"] == "ActivityError"
    assert "failed after 2 attempt(s): ValueError: flaky" in raised.value.error["message"]
    assert read_ledger(ledger).count(f"flaky {unique}") == 2
    failed = [e for e in executor.store.history(unique) if e.type is EventType.ACTIVITY_FAILED]
    assert len(failed) == 1 and failed[0].error["type"] == "ValueError"  # Temporal keeps the last


def test_unknown_ids_and_types_are_refused(executor, unique):
    for call in (lambda: executor.signal(unique, Signal(name="x")),
                 lambda: executor.cancel(unique), lambda: executor.get_handle(unique),
                 lambda: executor.query(unique, "progress")):
        with pytest.raises(WorkflowNotFoundError):
            call()
    with pytest.raises(InvalidInputError, match="unknown workflow type"):
        executor.execute("no.such.workflow", WorkflowOptions(id=unique))
    with pytest.raises(InvalidInputError, match="not JSON-serialisable"):
        executor.execute("temporal.sleeper", WorkflowOptions(id=unique, input=object()))
