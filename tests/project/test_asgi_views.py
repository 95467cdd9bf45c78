"""The example project's async views under ASGI (``beluga_project.asgi``), through httpx's
``ASGITransport``: 100 runs started, signalled and awaited concurrently while a heartbeat task
runs on the same event loop, which must never be held up by more than 50 ms.

What held it up before (stack samples of the loop thread during the stalls, 100-300 ms):
Django's ASGI handler (asgiref 3.13) started two threads per request from the loop (the
request's thread-sensitive executor, and a thread joining it at the end), each ``Thread.start``
waiting until the new thread got the GIL; and full garbage collections walking the whole heap
(80-120 ms). ``beluga_project.asgi`` wraps the site in
``beluga_workflows.contrib.asgi.reuse_request_threads`` (request threads started ahead by a
thread of their own and reused) and freezes what was loaded at startup (``gc.freeze()``). This
test process carries the heap of the whole test suite, which no server has, so it freezes again
once the site is warm, as the server did at its startup.

The configured executor is the local one (threads of this process) on the django store
(SQLite); the views touch the database only through the executor's async twins, so an access
from the event loop's thread would fail with ``SynchronousOnlyOperation``.
"""

from __future__ import annotations

import asyncio
import gc

import httpx
import pytest

from beluga_project.asgi import application
from beluga_workflows import get_store

RUNS = 100
MAX_STALL = 0.050
TICK = 0.002


class Heartbeat:
    """A task that sleeps ``TICK`` over and over and keeps the longest lateness it saw."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.beats = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            before = loop.time()
            await asyncio.sleep(TICK)
            self.worst = max(self.worst, loop.time() - before - TICK)
            self.beats += 1

    def stop(self) -> None:
        self._stop.set()


async def one_run(client: httpx.AsyncClient, n: int) -> dict:
    workflow_id = f"asgi-{n:03d}" if n >= 0 else "asgi-warm-up"
    started = await client.post("/demo/async/runs/", json={
        "workflow": "demo.await_approval", "id": workflow_id, "input": {"n": n}})
    assert started.status_code == 201, started.text
    # Awaiting the result first, then signalling: the wait is under way while the run waits.
    waiting = asyncio.ensure_future(client.get(f"/demo/async/runs/{workflow_id}/result/",
                                               params={"timeout": 60}))
    signalled = await client.post(f"/demo/async/runs/{workflow_id}/signal/",
                                  json={"name": "approval", "payload": f"ann-{n}"})
    assert signalled.status_code == 202, signalled.text
    answer = await waiting
    assert answer.status_code == 200, answer.text
    return answer.json()


async def many_runs() -> tuple[list[dict], Heartbeat]:
    heartbeat = Heartbeat()
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo",
                                 timeout=120) as client:
        # Django's first request imports the URLconf (the admin, the REST API...) on the loop:
        # a cold start of the site, not of the views under test.
        assert (await one_run(client, -1))["status"] == "completed"
        gc.collect()
        gc.freeze()  # the test suite's heap, as the server froze its own (module docstring)
        beating = asyncio.ensure_future(heartbeat.run())
        try:
            answers = await asyncio.gather(*(one_run(client, n) for n in range(RUNS)))
        finally:
            heartbeat.stop()
            await beating
            gc.unfreeze()
    return answers, heartbeat


@pytest.mark.django_db(transaction=True)
def test_100_runs_started_signalled_and_awaited_from_async_views_keep_the_loop_responsive():
    answers, heartbeat = asyncio.run(many_runs())

    assert answers == [{"id": f"asgi-{n:03d}", "status": "completed",
                        "result": {"request": {"n": n}, "approved_by": f"ann-{n}"}}
                       for n in range(RUNS)]
    assert heartbeat.beats > 100
    print(f"worst event-loop stall: {heartbeat.worst * 1000:.0f} ms over {heartbeat.beats} beats")
    assert heartbeat.worst < MAX_STALL, f"the event loop stalled {heartbeat.worst * 1000:.0f} ms"


async def refused_and_timed_out() -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        started = await client.post("/demo/async/runs/", json={
            "workflow": "demo.await_approval", "id": "asgi-slow"})
        return [
            started,
            await client.get("/demo/async/runs/asgi-slow/result/", params={"timeout": 0.2}),
            await client.post("/demo/async/runs/asgi-missing/signal/", json={"name": "approval"}),
            await client.post("/demo/async/runs/", json={"workflow": "tests.other"}),
        ]


@pytest.mark.django_db(transaction=True)
def test_async_views_answer_timeouts_and_refusals():
    started, waited, unknown, foreign = asyncio.run(refused_and_timed_out())
    assert started.status_code == 201
    assert (waited.status_code, waited.json()["status"]) == (504, "running")
    assert unknown.status_code == 404
    assert foreign.status_code == 400
    assert get_store().load("asgi-slow").status.value == "running"  # waiting never ended it
