"""The engine's behaviours that make sense on Temporal, run on both backends (``both_backends``).

Each test runs twice: on our own engine (the ``local`` executor over the memory store, in this
process) and on Temporal (the dev server and the session's worker process), with the same
workflows (``workflows.py``, "on both backends"), asserting only what a caller sees: results,
statuses, errors, how often activities ran (the shared ledger file), queries, signals' order.
Ported from tests/engine: signals (test_signals), retries (test_retries), timers and
``now`` (test_timers), ``start_activity``/``gather`` (test_parallel), ``side_effect`` and queries
(test_determinism, test_queries), continue-as-new (test_continue_as_new), cancel and workflow
timeouts (test_cancel_timeout), duplicate ids and unknown ids (test_executor_api). Not here:
what needs the engine's store or clock (time skipping, leases, ``wait_kind``, the signal inbox of
an ended run, crash recovery by lease expiry, golden histories, flow control, events, hooks,
child workflows, human activities, ``resume``/``fork``), which Temporal does its own way or not at
all; and in-process counters, which a worker process cannot share.
"""

from __future__ import annotations

import pytest

from beluga_workflows import (
    Signal,
    WorkflowAlreadyExistsError,
    WorkflowCanceledError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowOptions,
    WorkflowStatus,
    WorkflowTimeoutError,
)
from beluga_workflows.runtimes.local import LocalExecutor
from beluga_workflows.stores.memory import MemoryStore

from .conftest import read_ledger, wait_for

pytestmark = pytest.mark.both_backends


@pytest.fixture(params=["local", "temporal"])
def backend(request, ledger, monkeypatch):
    """An executor of either backend; activities note their runs in the shared ledger."""
    if request.param == "temporal":
        return request.getfixturevalue("executor")
    monkeypatch.setenv("BELUGA_TEST_TEMPORAL_LEDGER", str(ledger))
    executor = LocalExecutor(store=MemoryStore(), max_workers=4, sweep_interval=0.05)
    request.addfinalizer(executor.close)
    return executor


def test_signals_sent_before_the_run_waits_are_received_fifo_per_name(backend, unique, ledger):
    handle = backend.execute("both.collect", WorkflowOptions(
        id=unique, input={"id": unique, "names": ["a", "b"], "count": 2}))
    for name, payload in [("b", 1), ("a", {"n": 1}), ("b", 2), ("a", {"n": 2}), ("a", "extra")]:
        backend.signal(unique, Signal(name=name, payload=payload))
    assert handle.result(timeout=30) == {"a": [{"n": 1}, {"n": 2}], "b": [1, 2]}
    assert read_ledger(ledger).count(f"tally {unique}") == 1


def test_signals_to_unknown_and_ended_runs_are_refused(backend, unique):
    with pytest.raises(WorkflowNotFoundError):
        backend.signal(unique, Signal(name="go"))
    handle = backend.execute("both.collect", WorkflowOptions(
        id=unique, input={"id": unique, "names": [], "count": 0}))
    assert handle.result(timeout=30) == {}
    with pytest.raises(WorkflowNotRunningError):
        backend.signal(unique, Signal(name="late"))


@pytest.mark.parametrize("fail, attempts, error, expected", [
    (2, 3, "retryable", {"result": "ok after 3"}),
    (5, 3, "retryable", {"attempts": 3, "cause": "ConnectionError"}),
    (5, 3, "non_retryable", {"attempts": 1, "cause": "NonRetryableError"}),
])
def test_retries_follow_the_policy(backend, unique, ledger, fail, attempts, error, expected):
    handle = backend.execute("both.retrying", WorkflowOptions(id=unique, input={
        "id": unique, "fail": fail, "attempts": attempts, "error": error}))
    assert handle.result(timeout=30) == expected
    assert read_ledger(ledger).count(f"try {unique}") == min(fail + 1, expected.get(
        "attempts", attempts))


def test_a_durable_sleep_waits_and_now_moves_with_it(backend, unique):
    handle = backend.execute("both.timed", WorkflowOptions(id=unique, input=0.5))
    assert 0.5 <= handle.result(timeout=30) < 10


def test_started_activities_gather_in_order_with_their_errors(backend, unique, ledger):
    handle = backend.execute("both.fan_out", WorkflowOptions(id=unique, input={"id": unique,
                                                                              "n": 3}))
    assert handle.result(timeout=30) == ["tallied"] * 3 + ["ActivityError"]
    assert sorted(line for line in read_ledger(ledger) if line.startswith(f"tally {unique}-")) \
        == [f"tally {unique}-{n}" for n in range(3)]


def test_a_side_effect_runs_once_and_a_query_reads_the_run(backend, unique, ledger):
    handle = backend.execute("both.effects", WorkflowOptions(id=unique, input={"id": unique}))
    assert wait_for(lambda: _query(backend, unique), 20, "the query handler") == {
        "token": unique}
    backend.signal(unique, Signal(name="go", payload="yes"))
    assert handle.result(timeout=30) == {"token": unique, "answer": "yes"}
    assert read_ledger(ledger).count(f"effect {unique}") == 1


def _query(executor, workflow_id):
    try:
        return executor.query(workflow_id, "stage")
    except Exception:  # noqa: BLE001 - the run has not set its handler yet
        return None


def test_continue_as_new_hands_over_to_the_next_run(backend, unique):
    handle = backend.execute("both.counting", WorkflowOptions(id=unique, input=3))
    assert handle.result(timeout=30) == 0
    newest = backend.get_handle(unique)
    assert newest.run_id != handle.run_id and newest.status() is WorkflowStatus.COMPLETED


def test_cancel_during_a_signal_wait_runs_the_clean_up(backend, unique, ledger):
    handle = backend.execute("both.cancel_wait", WorkflowOptions(id=unique, input={"id": unique}))
    wait_for(lambda: handle.status() is WorkflowStatus.RUNNING, 20, "the run")
    backend.cancel(unique)
    with pytest.raises(WorkflowCanceledError):
        handle.result(timeout=30)
    assert handle.status() is WorkflowStatus.CANCELED
    assert read_ledger(ledger).count(f"cleanup {unique} signal") == 1
    with pytest.raises(WorkflowNotRunningError):
        backend.cancel(unique)


def test_a_workflow_timeout_ends_the_run_timed_out(backend, unique):
    handle = backend.execute("both.timed", WorkflowOptions(id=unique, input=60, timeout=1))
    with pytest.raises(WorkflowTimeoutError):
        handle.result(timeout=30)
    assert handle.status() is WorkflowStatus.TIMED_OUT


def test_a_duplicate_open_id_is_refused_and_an_ended_id_starts_anew(backend, unique):
    first = backend.execute("both.timed", WorkflowOptions(id=unique, input=0.5))
    with pytest.raises(WorkflowAlreadyExistsError):
        backend.execute("both.timed", WorkflowOptions(id=unique, input=0.5))
    first.result(timeout=30)
    second = backend.execute("both.timed", WorkflowOptions(id=unique, input=0.1))
    assert second.run_id != first.run_id and second.result(timeout=30) >= 0.1
