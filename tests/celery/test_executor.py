"""The Celery runtime without servers: what it sends, when, where; its tasks; the sweep.

Messages go through kombu's in-memory transport (a real broker transport, not a mock) and are
read back from their queues.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery
from django.db import transaction
from django.test import override_settings

from beluga_workflows import Signal, WorkflowContext, WorkflowOptions, get_store, workflow
from beluga_workflows.engine.clock import VirtualClock
from beluga_workflows.runtimes.celery import RUN_TASK, CeleryExecutor
from beluga_workflows.stores.memory import MemoryStore

from .memory_broker import MEMORY_CELERY, QUEUE, drain, memory_app


@workflow(name="celery_unit.greet")
def greet(ctx: WorkflowContext, name: str | None = None) -> str:
    return f"hello {name}"


@workflow(name="celery_unit.nap")
def nap(ctx: WorkflowContext, seconds: float) -> str:
    ctx.sleep(seconds)
    return "rested"


@workflow(name="celery_unit.boom")
def boom(ctx: WorkflowContext, data=None) -> None:
    raise ValueError("the workflow's own bug")


@workflow(name="celery_unit.wait")
def wait_for_go(ctx: WorkflowContext, data=None):
    return ctx.receive_signal("go")


def sent(queue: str = QUEUE) -> list[tuple[str, str, str | None]]:
    """``(task name, workflow id, eta)`` of each message waiting in ``queue``."""
    return [(m.headers["task"], m.payload[0][0], m.headers.get("eta")) for m in drain(queue)]


def seconds_until(eta: str) -> float:
    return (datetime.fromisoformat(eta) - datetime.now(timezone.utc)).total_seconds()


@pytest.fixture(autouse=True)
def empty_queues():
    for queue in (QUEUE, "reports"):
        drain(queue)
    yield


@pytest.fixture
def executor():
    ex = CeleryExecutor(store=MemoryStore(), app=memory_app)
    yield ex
    ex.close()


@pytest.mark.django_db(transaction=True)
def test_execute_sends_the_run_only_after_the_transaction_commits(executor):
    with transaction.atomic():
        handle = executor.execute(greet, WorkflowOptions(id="order-1", input="ann"))
        assert sent() == []  # a worker must not look for a run it cannot see yet
    assert sent() == [(RUN_TASK, handle.id, None)]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_sends_nothing(executor):
    with pytest.raises(RuntimeError), transaction.atomic():
        executor.execute(greet, WorkflowOptions(id="order-2"))
        raise RuntimeError("roll back")
    assert sent() == []


def test_without_a_transaction_the_run_is_sent_at_once(executor):
    handle = executor.execute(greet, WorkflowOptions(id="order-3"))
    assert sent() == [(RUN_TASK, handle.id, None)]


def test_a_run_started_on_a_queue_is_always_sent_to_that_queue(executor):
    handle = executor.execute(wait_for_go, WorkflowOptions(id="report-1", queue="reports"))
    assert sent("reports") == [(RUN_TASK, handle.id, None)]
    executor.signal(handle.id, Signal(name="go", payload=1))  # the caller does not know the queue
    executor.cancel(handle.id)
    assert [name for name, _, _ in sent("reports")] == [RUN_TASK, RUN_TASK]
    assert sent() == []


def test_near_wake_ups_are_sent_with_a_countdown_far_ones_are_left_to_the_store(executor):
    executor.schedule("soon", at=executor.clock.now() + timedelta(seconds=5))
    executor.schedule("next-week", at=executor.clock.now() + timedelta(days=7))
    executor.schedule("past", at=executor.clock.now() - timedelta(seconds=5))
    messages = sent()
    assert [wf for _, wf, _ in messages] == ["soon", "past"]
    assert 3 < seconds_until(messages[0][2]) <= 5
    assert messages[1][2] is None


def test_a_broker_that_cannot_be_reached_is_logged_not_raised(caplog):
    down = Celery("beluga-down", broker="redis://127.0.0.1:1/0", set_as_current=False)
    down.conf.update(broker_connection_retry=False, broker_connection_max_retries=0,
                     broker_transport_options={"max_retries": 0})
    ex = CeleryExecutor(store=MemoryStore(), app=down)
    ex.app.conf.task_publish_retry = False
    handle = ex.execute(greet, WorkflowOptions(id="lost-message"))
    assert handle.status().value == "running"  # durably recorded: the sweep will send it
    assert "the recovery sweep will send it" in caplog.text
    down.close()


def test_the_sweep_sends_what_comes_due_soon_and_what_no_worker_took(executor):
    clock = VirtualClock(datetime(2030, 1, 1, tzinfo=timezone.utc))
    ex = CeleryExecutor(store=executor.store, app=memory_app, clock=clock,
                        sweep_lookahead=7.5, sweep_grace=30)
    now = clock.now()

    def run(workflow_id, *, wake_in, lease_for=None):
        ex.execute(greet, WorkflowOptions(id=workflow_id))
        state = ex.store.load(workflow_id)
        state.wake_at = now + timedelta(seconds=wake_in)
        if lease_for is not None:
            state.lease_owner = "host:123:dead"
            state.lease_expires_at = now + timedelta(seconds=lease_for)
        ex.store.save(state)

    run("overdue", wake_in=-60)                    # due long ago, no worker took it: send now
    run("recent", wake_in=-5)                      # its own message is on its way: leave it
    run("timer-soon", wake_in=3)                   # a timer ending within the lookahead
    run("timer-later", wake_in=3600)               # the sweep an hour from now sends it
    run("dead-worker", wake_in=-100, lease_for=2)  # lease no longer renewed: ends in 2 s
    run("busy", wake_in=-100, lease_for=25)        # a live worker renews its lease
    drain()

    assert sorted(ex.sweep()) == ["dead-worker", "overdue", "timer-soon"]
    etas = {wf: eta for _, wf, eta in sent()}
    assert etas["overdue"] is None
    assert 1 < seconds_until(etas["timer-soon"]) <= 3
    assert 0 < seconds_until(etas["dead-worker"]) <= 2


def test_recover_sends_everything_due_now(executor):
    for n in range(3):
        executor.execute(greet, WorkflowOptions(id=f"due-{n}"))
    drain()
    assert sorted(executor.recover()) == ["due-0", "due-1", "due-2"]
    assert len(sent()) == 3


@override_settings(BELUGA_WORKFLOWS=MEMORY_CELERY)
def test_the_run_task_advances_the_run_and_sends_its_near_wake_up():
    from beluga_workflows.executor import get_executor
    from beluga_workflows.tasks import run_workflow

    executor = get_executor()
    assert isinstance(executor, CeleryExecutor) and executor.app is memory_app
    handle = executor.execute(nap, WorkflowOptions(id="napper", input=2))
    assert sent() == [(RUN_TASK, "napper", None)]

    report = run_workflow.apply(args=["napper"]).get()
    assert report == {"workflow_id": "napper", "claimed": True, "status": "running",
                      "suspended": True, "lease_lost": False}
    (message,) = sent()
    assert message[:2] == (RUN_TASK, "napper") and 0 < seconds_until(message[2]) <= 2
    assert get_store().load("napper").wait_kind == "timer"
    assert handle.status().value == "running"


@override_settings(BELUGA_WORKFLOWS=MEMORY_CELERY)
def test_a_workflow_exception_fails_the_run_never_the_task():
    from beluga_workflows.executor import get_executor
    from beluga_workflows.tasks import run_workflow

    get_executor().execute(boom, WorkflowOptions(id="buggy"))
    result = run_workflow.apply(args=["buggy"])
    assert result.successful()
    assert result.get()["status"] == "failed"
    assert get_store().load("buggy").error["type"] == "ValueError"
    # A second delivery of the same message (acks_late redelivery) finds the run ended.
    assert run_workflow.apply(args=["buggy"]).get()["claimed"] is False


@override_settings(BELUGA_WORKFLOWS=MEMORY_CELERY)
def test_the_worker_start_hook_and_the_recover_task_send_due_runs():
    from beluga_workflows.executor import get_executor
    from beluga_workflows.tasks import recover_on_worker_start, recover_workflows

    executor = get_executor()
    executor.execute(greet, WorkflowOptions(id="waiting-1"))
    drain()
    recover_on_worker_start()
    assert [wf for _, wf, _ in sent()] == ["waiting-1"]
    # The periodic sweep leaves a run that just came due to its own message...
    assert recover_workflows.apply().get() == 0
    # ...and sends it once it has been due for the grace period.
    executor.clock = VirtualClock(executor.clock.now() + timedelta(seconds=31))
    assert recover_workflows.apply().get() == 1


def test_the_task_names_and_delivery_options_are_stable():
    from beluga_workflows.tasks import recover_workflows, run_workflow

    assert run_workflow.name == "beluga_workflows.run_workflow"
    assert recover_workflows.name == "beluga_workflows.recover_workflows"
    assert run_workflow.acks_late is True
    assert run_workflow.reject_on_worker_lost is True


def test_the_project_runs_the_sweep_on_beat_every_recover_interval():
    from beluga_project import settings

    (entry,) = [e for e in settings.CELERY_BEAT_SCHEDULE.values()
                if e["task"] == "beluga_workflows.recover_workflows"]
    assert entry["schedule"] == settings.BELUGA_WORKFLOWS["RECOVER_INTERVAL"] == 5.0
