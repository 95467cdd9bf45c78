"""Replays and crashes on Temporal: a changed workflow fails loudly, a killed worker loses nothing.

Both start worker processes of their own (on task queues of their own) and stop or kill them.
"""

from __future__ import annotations

import collections
import time
import uuid
from datetime import datetime, timezone

import pytest

from beluga_workflows import (
    EventType,
    Signal,
    WorkflowFailedError,
    WorkflowOptions,
    WorkflowStatus,
    get_executor,
)

from .conftest import SESSION, read_ledger, temporal_settings, wait_for


@pytest.fixture
def own_queue(settings):
    """A task queue of this test's own, and the executor starting runs on it."""
    queue = f"beluga-test-{SESSION}-{uuid.uuid4().hex[:6]}"
    settings.BELUGA_WORKFLOWS = temporal_settings(queue)
    return queue, get_executor()


def completed(executor, workflow_id):
    return any(e.type is EventType.ACTIVITY_COMPLETED for e in executor.store.history(workflow_id))


def test_a_changed_workflow_replayed_without_the_cache_fails_with_non_determinism_error(
        own_queue, start_worker, unique):
    queue, executor = own_queue
    old = start_worker(queue, "--max-cached-workflows", "0", env={"BELUGA_TEST_CODE_VERSION": "1"})
    same, changed = f"{unique}-same", f"{unique}-changed"
    kept = executor.execute("temporal.changing", WorkflowOptions(id=same, input={}))
    broken = executor.execute("temporal.changing", WorkflowOptions(id=changed, input={}))
    for workflow_id in (same, changed):
        wait_for(lambda workflow_id=workflow_id: completed(executor, workflow_id), 20,
                 f"{workflow_id}'s first step")
    # Unchanged code: the next task replays the history from the start (no cache) and goes on.
    executor.signal(same, Signal(name="go", payload=1))
    assert kept.result(timeout=20) == "a1"
    old.stop()

    start_worker(queue, "--max-cached-workflows", "0", env={"BELUGA_TEST_CODE_VERSION": "2"})
    executor.signal(changed, Signal(name="go", payload=2))

    with pytest.raises(WorkflowFailedError) as raised:
        broken.result(timeout=30)
    assert raised.value.error["type"] == "NonDeterminismError"
    assert broken.status() is WorkflowStatus.FAILED


def test_a_worker_killed_mid_run_loses_no_run_and_repeats_no_completed_activity(
        own_queue, start_worker, ledger, unique):
    queue, executor = own_queue
    first = start_worker(queue)
    runs, steps = 4, 4
    handles = [executor.execute("temporal.steps", WorkflowOptions(
        id=f"{unique}-{n}", input={"id": f"{unique}-{n}", "steps": steps, "seconds": 0.4,
                                   "timeout": 3})) for n in range(runs)]
    ends = lambda: [line for line in read_ledger(ledger) if line.startswith(f"end {unique}")]  # noqa: E731
    wait_for(lambda: len(ends()) >= runs + 2, 30, "some steps to complete")

    first.kill()
    killed_at = datetime.now(timezone.utc)
    open_runs = [h for h in handles if h.status() is WorkflowStatus.RUNNING]
    assert open_runs, "every run ended before the kill: the test proves nothing"
    time.sleep(0.5)  # nothing runs now: no worker polls the queue
    ran_before = len(ends())

    start_worker(queue)
    for n, handle in enumerate(handles):
        assert handle.result(timeout=60) == [f"{unique}-{n}:{s}" for s in range(steps)]

    begins = collections.Counter(line.split(" ", 1)[1] for line in read_ledger(ledger)
                                 if line.startswith(f"begin {unique}"))
    done_before_kill = [
        e.result.replace(":", " ") for h in handles for e in executor.store.history(h.id)
        if e.type is EventType.ACTIVITY_COMPLETED and e.timestamp < killed_at]
    assert done_before_kill and len(done_before_kill) <= ran_before
    assert {step: begins[step] for step in done_before_kill} == dict.fromkeys(done_before_kill, 1)
    assert len(begins) == runs * steps
