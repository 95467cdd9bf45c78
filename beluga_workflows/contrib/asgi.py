"""Serve Django under ASGI without starting threads on the event loop for every request.

Django's ASGI handler gives each request a thread of its own for the request's synchronous parts
(``request_started`` / ``request_finished`` receivers such as ``close_old_connections``, sync
middleware, sync views). asgiref creates that thread for the request and, when the request ends,
starts another thread to join it. Both ``Thread.start()`` calls run on the event loop and wait
until the new thread is scheduled: under load (other threads holding the GIL) each wait is
milliseconds, and a burst of requests holds the loop for a hundred or more.

``reuse_request_threads(application)`` keeps Django's rule (one thread per request, for as long as
the request runs) but takes the thread from idle ones and gives it back when the request has
ended. Threads are started by a thread of the wrapper's own, ahead of need (``spare``); a request
that finds none idle awaits the next one without holding up the loop. No request thread is
started or joined on the event loop (only the wrapper's own thread, once, at the first request).
It uses asgiref's ``ThreadSensitiveContext(executor=...)`` (asgiref
3.13+); with an older asgiref it returns the application unchanged.

    # asgi.py
    from django.core.asgi import get_asgi_application
    from beluga_workflows.contrib.asgi import reuse_request_threads

    application = reuse_request_threads(get_asgi_application())

A reused thread keeps its database connections between requests, as a WSGI server's threads do,
so ``CONN_MAX_AGE`` applies again (Django closes connections past their age, or broken, at the
start and end of each request).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from typing import Any

from asgiref.sync import ThreadSensitiveContext

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]

__all__ = ["reuse_request_threads"]


def _takes_executor() -> bool:
    try:
        return "executor" in inspect.signature(ThreadSensitiveContext).parameters
    except (TypeError, ValueError):  # pragma: no cover - a C-level or odd signature
        return False


class _RequestThread(Executor):
    """One thread running what it is given, in order: a request's thread.

    Not a ``ThreadPoolExecutor``: its ``submit`` takes a lock shared by every such executor of
    the process, held while one of them starts a thread, so a thread started ahead (below) would
    hold up the event loop's next ``submit`` of any request.
    """

    def __init__(self) -> None:
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="asgi-request", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the awaiting request, as an executor does
                future.set_exception(exc)
                del exc
            else:
                future.set_result(result)
            del item, future, fn, args, kwargs

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self._closed:
            raise RuntimeError("cannot schedule new work on a request thread that has ended")
        future: Future = Future()
        self._work.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        self._work.put(None)
        if wait:
            self._thread.join()


class _IdleExecutors:
    """Request threads waiting for a request.

    A thread of its own (the maker) starts them: it keeps ``spare`` started ahead, and a request
    that finds none idle awaits the next one it starts, so no thread is ever started on the
    event loop. At most ``keep`` are kept idle.
    """

    def __init__(self, spare: int, keep: int) -> None:
        self.spare = spare
        self.keep = keep
        self.awaited = 0  # requests that found none idle (a burst beyond ``spare``)
        self._idle: list[_RequestThread] = []
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._maker: threading.Thread | None = None

    def _make(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            while True:
                with self._lock:
                    if not self._waiters and len(self._idle) >= self.spare:
                        break
                executor = _RequestThread()
                with self._lock:
                    waiter = self._waiters.popleft() if self._waiters else None
                    if waiter is None:
                        self._idle.append(executor)
                if waiter is not None:
                    waiter.get_loop().call_soon_threadsafe(self._hand_over, waiter, executor)

    def _hand_over(self, waiter: asyncio.Future, executor: _RequestThread) -> None:
        if waiter.cancelled():  # the request went away while it waited
            self.give_back(executor)
        else:
            waiter.set_result(executor)

    def _want_more(self) -> None:
        # Under the lock. The maker starts with the first request, not at import time (a
        # process that forks after importing the site must not carry a thread over).
        if self._maker is None:
            self._maker = threading.Thread(target=self._make, name="asgi-request-maker",
                                           daemon=True)
            self._maker.start()
        self._wanted.set()

    async def take(self) -> _RequestThread:
        with self._lock:
            executor = self._idle.pop() if self._idle else None
            if executor is None:
                self.awaited += 1
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
            if len(self._idle) < self.spare or executor is None:
                self._want_more()
        if executor is not None:
            return executor
        return await waiter  # cancelled: the maker gives the thread it starts back (_hand_over)

    def give_back(self, executor: _RequestThread) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(executor)
                return
        # More idle threads than kept: let this one end without waiting for it here.
        executor.shutdown(wait=False)


class _ReusedRequestThreads:
    def __init__(self, application: ASGIApp, spare: int, keep: int) -> None:
        self.application = application
        self.executors = _IdleExecutors(spare, keep)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            await self.application(scope, receive, send)
            return
        executor = await self.executors.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.application(scope, receive, send)
        finally:
            # asgiref refuses thread-sensitive calls of tasks that outlive the context, so
            # nothing of this request can reach the executor once it is given back.
            self.executors.give_back(executor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.application, name)


def reuse_request_threads(application: ASGIApp, *, spare: int = 16,
                          keep: int = 256) -> ASGIApp:
    """Wrap a Django ASGI ``application`` so each request's thread is reused (see the module).

    ``spare``: threads kept started ahead of requests (by a thread of the wrapper's own), so a
    burst of up to that many new requests starts none on the event loop. ``keep``: the most
    idle threads kept between bursts (each is one OS thread and, once used, the database
    connections it opened). Raises ``ValueError`` unless ``0 <= spare <= keep`` and ``keep >= 1``.
    """
    for name, value, least in (("spare", spare, 0), ("keep", keep, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be a whole number >= {least}, not {value!r}")
    if spare > keep:
        raise ValueError(f"spare ({spare}) cannot be more than keep ({keep})")
    if not _takes_executor():
        return application
    return _ReusedRequestThreads(application, spare, keep)
