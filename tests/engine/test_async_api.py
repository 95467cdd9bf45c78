"""The async twins: same results and errors as the blocking calls; cancelling the task that
awaits a result stops the wait, never the run."""

from __future__ import annotations

import asyncio

import pytest

from beluga_workflows import (
    Signal,
    WorkflowContext,
    WorkflowNotFoundError,
    WorkflowOptions,
    WorkflowStatus,
    workflow,
)
from beluga_workflows.runtimes.local import LocalExecutor
from beluga_workflows.stores.memory import MemoryStore

from .support import unique, wait_until, waiting_for_signal


@workflow(name="async_tests.approve")
def approve(ctx: WorkflowContext, n: int) -> dict:
    ctx.set_query_handler("n", lambda: n)
    return {"n": n, "by": ctx.receive_signal("approval")}


@pytest.fixture
def executor():
    executor = LocalExecutor(store=MemoryStore(), sweep_interval=0.2)
    yield executor
    executor.close()


def test_twins_start_signal_query_and_await(executor):
    workflow_id = unique("async")

    async def main():
        handle = await executor.aexecute(approve, WorkflowOptions(id=workflow_id, input=3))
        await asyncio.to_thread(wait_until, lambda: waiting_for_signal(executor.store, workflow_id))
        assert await executor.aquery(workflow_id, "n") == 3
        assert await handle.astatus() is WorkflowStatus.RUNNING
        with pytest.raises(TimeoutError):
            await handle.aresult(timeout=0.05)
        await executor.asignal(workflow_id, Signal(name="approval", payload="ann"))
        return await handle.aresult(timeout=10)

    assert asyncio.run(main()) == {"n": 3, "by": "ann"}


def test_cancelling_the_awaiting_task_does_not_cancel_the_run(executor):
    workflow_id = unique("async")

    async def main():
        handle = await executor.aexecute(approve, WorkflowOptions(id=workflow_id, input=4))
        waiting = asyncio.ensure_future(handle.aresult(timeout=30))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await handle.astatus() is WorkflowStatus.RUNNING
        await executor.asignal(workflow_id, Signal(name="approval", payload="bo"))
        return await handle.aresult(timeout=10)

    assert asyncio.run(main()) == {"n": 4, "by": "bo"}


def test_twins_raise_what_the_blocking_calls_raise(executor):
    async def main():
        with pytest.raises(WorkflowNotFoundError):
            await executor.asignal(unique("missing"), Signal(name="approval"))
        with pytest.raises(WorkflowNotFoundError):
            await executor.acancel(unique("missing"))

    asyncio.run(main())
