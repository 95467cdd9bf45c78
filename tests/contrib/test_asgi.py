"""``reuse_request_threads``: each request keeps one thread for its synchronous parts, threads are
reused across requests and started off the event loop, bursts wait without blocking it, and bad
arguments are refused."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async

from beluga_workflows.contrib import asgi as contrib_asgi
from beluga_workflows.contrib.asgi import reuse_request_threads


class SyncPartsApp:
    """A bare ASGI app whose request runs two thread-sensitive calls, as Django's handler does
    (``request_started`` and ``request_finished`` receivers), and notes their threads."""

    def __init__(self, barrier: threading.Barrier | None = None) -> None:
        self.threads: list[tuple[int, int]] = []
        self.barrier = barrier

    def _ident(self) -> int:
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        return threading.get_ident()

    async def __call__(self, scope, receive, send) -> None:
        first = await sync_to_async(self._ident)()
        await asyncio.sleep(0)
        second = await sync_to_async(threading.get_ident)()
        self.threads.append((first, second))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def request(app) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": "/"}, receive, send)
    return sent


def test_a_request_keeps_one_thread_and_threads_are_reused_across_requests():
    inner = SyncPartsApp()
    app = reuse_request_threads(inner, spare=2, keep=4)

    async def sequentially() -> None:
        for _ in range(30):
            sent = await request(app)
            assert sent[0]["status"] == 200

    asyncio.run(sequentially())
    assert all(first == second for first, second in inner.threads)
    assert threading.get_ident() not in {first for first, _ in inner.threads}
    # One request at a time: the same few threads serve all 30 (spare ones were started ahead).
    assert len({first for first, _ in inner.threads}) <= 3


def test_concurrent_requests_each_have_a_thread_and_none_is_started_on_the_loop(monkeypatch):
    burst = 24
    inner = SyncPartsApp(barrier=threading.Barrier(burst))  # all 24 inside their sync part at once
    app = reuse_request_threads(inner, spare=4, keep=burst)
    loop_thread = threading.get_ident()
    started_from: list[int] = []
    start = threading.Thread.start

    def noting_start(thread: threading.Thread) -> None:
        started_from.append(threading.get_ident())
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", noting_start)

    async def together() -> None:
        answers = await asyncio.wait_for(
            asyncio.gather(*(request(app) for _ in range(burst))), timeout=30)
        assert [sent[0]["status"] for sent in answers] == [200] * burst

    asyncio.run(together())
    assert len({first for first, _ in inner.threads}) == burst
    assert all(first == second for first, second in inner.threads)
    assert started_from and loop_thread not in started_from[1:]  # [0]: the maker thread itself
    assert app.executors.awaited >= burst - 4  # the burst beyond the spare ones waited


def test_a_request_cancelled_while_it_waits_for_a_thread_gives_the_thread_back():
    app = reuse_request_threads(SyncPartsApp(), spare=0, keep=2)

    async def cancelled() -> None:
        task = asyncio.ensure_future(request(app))
        await asyncio.sleep(0)  # it is waiting for the maker now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 10
        while not app.executors._idle and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    asyncio.run(cancelled())
    assert len(app.executors._idle) == 1
    assert app.executors.awaited == 1


@pytest.mark.parametrize("arguments, message", [
    ({"spare": -1}, "spare must be a whole number >= 0"),
    ({"keep": 0}, "keep must be a whole number >= 1"),
    ({"keep": True}, "keep must be a whole number >= 1"),
    ({"spare": "4"}, "spare must be a whole number >= 0"),
    ({"spare": 8, "keep": 4}, r"spare \(8\) cannot be more than keep \(4\)"),
])
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        reuse_request_threads(SyncPartsApp(), **arguments)


def test_other_scopes_pass_through_and_an_older_asgiref_gets_the_application_back(monkeypatch):
    inner_calls: list[str] = []

    async def inner(scope, receive, send) -> None:
        inner_calls.append(scope["type"])

    app = reuse_request_threads(inner)
    asyncio.run(app({"type": "lifespan"}, None, None))
    assert inner_calls == ["lifespan"]
    assert app.executors._maker is None  # no thread for what is not a request

    monkeypatch.setattr(contrib_asgi, "_takes_executor", lambda: False)
    assert reuse_request_threads(inner) is inner
