"""The async twins of the client operations, for ASGI views and other asyncio code.

``await executor.aexecute(...)``, ``asignal``, ``aquery``, ``acancel``, ``asend_event``, and on a
handle ``await handle.aresult(timeout)`` and ``await handle.astatus()``: the same operations as
their blocking twins, with the same arguments, results and errors, that never block the event
loop.

- Each store call runs in one of ``ASYNC_THREADS`` (pre-started) threads of the twins' own pool (asgiref's
  ``sync_to_async(thread_sensitive=False, executor=...)``), never on the event loop. Not in the
  request's own thread: a site serving many requests at once would otherwise hold a database
  connection per request in flight (100 awaiting requests, 100 connections); the pool's threads
  keep one connection each, reused. No twin needs the request's transaction: Django keeps
  transactions to sync code. asgiref is Django's own dependency, not a face: the engine still
  imports no Django.
- ``aresult`` holds no thread while it waits: it reads the run in short calls and sleeps on the
  event loop between them (``asyncio.sleep``, backing off from 5 ms to ``ARESULT_MAX_POLL``).
- Cancelling the task that awaits never cancels the run: ``aresult``/``astatus`` only read, and
  a store call already under way in its thread finishes there. An ``aexecute`` / ``asignal`` /
  ``acancel`` canceled while its call is under way may still have taken effect (the thread
  cannot be stopped): look at the run (``get_handle``) before trying again.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async

from .types import to_seconds

if TYPE_CHECKING:
    from .events import Event, SendResult
    from .executor import WorkflowExecutor, WorkflowHandle
    from .types import Signal, WorkflowOptions, WorkflowState, WorkflowStatus

__all__ = ["ARESULT_MAX_POLL", "ASYNC_THREADS", "AsyncExecutorOperations",
           "AsyncHandleOperations", "to_async"]

T = TypeVar("T")

# Threads that run the twins' store calls (each keeps its own database connection).
ASYNC_THREADS = 8
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
# The longest pause of ``aresult`` between two reads of a run that is still open.
ARESULT_MAX_POLL = 0.25
_FIRST_POLL = 0.005


def to_async(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``function`` as a coroutine function that runs it in the twins' thread pool (see the
    module docstring)."""
    return sync_to_async(function, thread_sensitive=False, executor=_pool())


def _pool() -> ThreadPoolExecutor:
    """The twins' threads, all started on first use (again in a forked process).

    A thread a ``ThreadPoolExecutor`` starts later, from the event loop, holds the loop until
    the new thread gets the GIL: tens of milliseconds while other threads are busy."""
    global _POOL, _POOL_PID
    if _POOL is None or os.getpid() != _POOL_PID:
        pool = ThreadPoolExecutor(max_workers=ASYNC_THREADS, thread_name_prefix="beluga-async")
        ready = threading.Barrier(ASYNC_THREADS)
        for _ in range(ASYNC_THREADS):  # each waits for the others: one thread each
            pool.submit(ready.wait, 5)
        _POOL, _POOL_PID = pool, os.getpid()
    return _POOL


class AsyncExecutorOperations:
    """The async twins of ``WorkflowExecutor``'s client operations (it inherits them)."""

    async def aexecute(self: WorkflowExecutor, workflow: Callable[..., Any] | str,
                       options: WorkflowOptions | dict | None = None) -> WorkflowHandle:
        """``execute`` without blocking the event loop: returns once the run is recorded and
        scheduled. Same errors as ``execute``."""
        return await to_async(self.execute)(workflow, options)

    async def asignal(self: WorkflowExecutor, workflow_id: str, signal: Signal) -> Signal:
        """``signal`` without blocking the event loop; never lost once it returned. Same errors."""
        return await to_async(self.signal)(workflow_id, signal)

    async def aquery(self: WorkflowExecutor, workflow_id: str, query_type: str) -> Any:
        """``query`` without blocking the event loop. Same errors."""
        return await to_async(self.query)(workflow_id, query_type)

    async def acancel(self: WorkflowExecutor, workflow_id: str) -> None:
        """``cancel`` without blocking the event loop. Same errors."""
        await to_async(self.cancel)(workflow_id)

    async def asend_event(self: WorkflowExecutor, event: Event) -> SendResult:
        """``send_event`` without blocking the event loop. Same errors."""
        return await to_async(self.send_event)(event)

    async def aget_handle(self: WorkflowExecutor, workflow_id: str) -> WorkflowHandle:
        """``get_handle`` without blocking the event loop. Same errors."""
        return await to_async(self.get_handle)(workflow_id)

    async def await_end(self: WorkflowExecutor, workflow_id: str, run_id: str,
                        timeout: float | None) -> WorkflowState:
        """``wait`` for asyncio code: the run once it has ended (following a continue-as-new
        chain), holding no thread between reads.

        Raises:
            WorkflowNotFoundError: the run is no longer in the store.
            TimeoutError: it was still open after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        look = to_async(self.current_run)
        pause = _FIRST_POLL
        while True:
            state = await look(workflow_id, run_id)
            run_id = state.run_id
            if not state.is_open:
                return state
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"workflow {workflow_id!r} still running after {timeout:g} s")
                pause = min(pause, left)
            await asyncio.sleep(pause)
            pause = min(pause * 2, ARESULT_MAX_POLL)


class AsyncHandleOperations:
    """The async twins of ``WorkflowHandle``'s reads (it inherits them)."""

    async def astatus(self: WorkflowHandle) -> WorkflowStatus:
        """``status`` without blocking the event loop.

        Raises:
            WorkflowNotFoundError: the run is no longer in the store.
        """
        return await to_async(self.status)()

    async def aresult(self: WorkflowHandle, timeout: timedelta | float | None = None) -> Any:
        """``result`` without blocking the event loop or holding a thread while it waits.

        Cancelling the awaiting task stops the wait, never the run.

        Raises:
            WorkflowFailedError / WorkflowCanceledError / WorkflowTimeoutError: the run ended so.
            WorkflowNotFoundError: the run is no longer in the store.
            TimeoutError: the run was still open after ``timeout``.
        """
        from .executor import outcome_of  # the handle's module imports this one

        seconds = to_seconds(timeout, "timeout")
        state = await self.executor.await_end(self.id, self.run_id, seconds)
        return outcome_of(state)
