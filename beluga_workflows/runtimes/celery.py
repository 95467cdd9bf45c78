"""The ``celery`` runtime (the default): runs are advanced by Celery tasks on worker processes.

How a run reaches a worker:

- ``execute``, ``signal`` and ``cancel`` send a ``beluga_workflows.run_workflow`` task once the
  surrounding database transaction commits (so a worker never looks for a run it cannot see yet),
  on the run's queue when it has one.
- A run that suspends on a wait ending within ``countdown_limit`` seconds (60 by default) is also
  sent again with a Celery countdown, so short sleeps and retry backoffs end on time.
- Longer waits never ride on broker countdowns (Redis redelivers ETA tasks after its visibility
  timeout, and a countdown held by a worker that dies is lost): the due time lives in the store.
  The periodic sweep (``beluga_workflows.recover_workflows`` on Celery beat) sends each run shortly
  before it comes due (with a countdown of at most ``sweep_lookahead`` seconds) - a timer ending,
  or the lease of a worker that died running out - and, as a safety net, re-sends runs that have
  been due for ``sweep_grace`` seconds without a worker taking them (a message lost with a dead
  worker's prefetch, a send that failed, sweeps missed while beat was down).

Every message is only a hint: ``run_workflow`` on a run that is ended, leased by another worker or
not yet due does no harm, so a duplicate costs a database round trip or a fast replay.

A started activity (``ctx.start_activity``) is a ``beluga_workflows.run_activity`` task of its own,
on any worker (on its queue, if it has one); it delivers its outcome to the run's inbox and wakes
the run, which holds no worker meanwhile.

A debounce or batch group's firing is a ``beluga_workflows.fire_event_groups`` task sent with a
countdown to the group's due time (and done by the sweep for a group whose message was lost).

An accepted event's fan-out (its triggers' runs, the waiting runs it wakes, the runs it cancels)
is a ``beluga_workflows.fan_out_event`` task, sent once the sender's transaction commits and run
by any worker; the sweep sends it again for events not fanned out ``fan_out_grace`` seconds after
they were received (the worker died, the message was lost). A fan-out done twice does no harm.
The worker doing a fan-out advances the first run it wakes on the default queue itself, right
after (``serving_in_place``): that run skips a trip through the broker; the others are sent.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from ..conf import workflow_settings
from ..engine.executor import WorkflowExecutor
from ..stores import get_store
from ._transactions import in_default_transaction

__all__ = ["ACTIVITY_TASK", "FAN_OUT_TASK", "FIRE_GROUPS_TASK", "RECOVER_TASK", "RUN_TASK", "CeleryExecutor"]

logger = logging.getLogger("beluga_workflows.celery")

# The stable task names; the workers of every release answer to these.
RUN_TASK = "beluga_workflows.run_workflow"
RECOVER_TASK = "beluga_workflows.recover_workflows"
FAN_OUT_TASK = "beluga_workflows.fan_out_event"
FIRE_GROUPS_TASK = "beluga_workflows.fire_event_groups"
ACTIVITY_TASK = "beluga_workflows.run_activity"


class CeleryExecutor(WorkflowExecutor):
    """Schedules runs as Celery tasks; the workers call ``run`` (see ``beluga_workflows.tasks``).

    Args:
        app: the Celery app (or its dotted path) that sends the tasks; default: Celery's current
            app, i.e. your project's app once its module is imported.
        countdown_limit: waits ending within this many seconds are also sent with a countdown;
            longer ones are left to the sweep.
        sweep_lookahead: the sweep sends runs coming due within this many seconds, with a
            countdown; default: 1.5 recovery intervals (so consecutive sweeps overlap).
        sweep_grace: the sweep re-sends runs due for this many seconds that no worker took;
            default: 30 seconds or 3 recovery intervals, whichever is longer. Shorter values
            recover lost messages sooner but flood a long queue with copies of its runs.
        start_priority: the Celery message priority of a run's first activation. Default: on a
            Redis broker 6, so wake-ups (timers, signals, sent at the default priority 0, which
            Redis serves first) overtake a backlog of new runs instead of waiting behind it in the
            queue; elsewhere none (RabbitMQ ranks priorities the other way round).
        **options: the ``WorkflowExecutor`` options (store, hooks, lease_seconds, ...).
    """

    name = "celery"

    def __init__(
        self,
        *,
        app: Any = None,
        countdown_limit: float = 60.0,
        sweep_lookahead: float | None = None,
        sweep_grace: float | None = None,
        start_priority: int | None = None,
        **options: Any,
    ) -> None:
        require_celery()
        options.setdefault("store", get_store)
        super().__init__(**options)
        self._app = app
        self._start_priority = start_priority
        self.countdown_limit = float(countdown_limit)
        interval = _recover_interval()
        self.sweep_lookahead = float(1.5 * interval if sweep_lookahead is None else sweep_lookahead)
        self.sweep_grace = float(max(30.0, 3 * interval) if sweep_grace is None else sweep_grace)
        self._in_place = threading.local()

    @property
    def app(self) -> Any:
        """The Celery app the tasks are sent with."""
        if isinstance(self._app, str):
            from django.utils.module_loading import import_string

            self._app = import_string(self._app)
        if self._app is None:
            from celery import current_app

            return current_app
        return self._app

    @property
    def start_priority(self) -> int | None:
        """The priority of a run's first message: the ``start_priority`` option, else 6 on a
        Redis broker (behind the wake-ups at 0) and ``None`` (no priority) on others.
        """
        if self._start_priority is None:
            url = str(self.app.conf.broker_url or "")
            return 6 if url.startswith(("redis://", "rediss://", "redis+socket://")) else None
        return self._start_priority

    # -- scheduling -----------------------------------------------------------------------------

    def schedule_start(self, workflow_id: str, *, queue: str | None = None) -> None:
        """Send the first activation at ``start_priority``: wake-ups of older runs go first."""
        self._enqueue(workflow_id, queue, None, priority=self.start_priority)

    def schedule(self, workflow_id: str, *, at: datetime | None = None, queue: str | None = None) -> None:
        """Send ``run_workflow(workflow_id)`` after the current transaction commits.

        With ``at`` in the future: sent with a countdown when it is at most ``countdown_limit``
        seconds away, otherwise not sent at all (the store holds the due time; the sweep sends it).
        ``queue``: the run's queue (``""``: the default one; ``None``: look it up in the store).
        A message that cannot be sent is logged, not raised: the run is durably due in the store
        and the sweep sends it later.
        """
        countdown = None
        if at is not None:
            countdown = (at - self.clock.now()).total_seconds()
            if countdown > self.countdown_limit:
                return
        kept = getattr(self._in_place, "kept", None)
        if kept is not None and not kept and countdown is None and queue == "":
            kept.append(workflow_id)  # this worker advances it next (see serving_in_place)
            return
        self._enqueue(workflow_id, queue, countdown)

    @contextlib.contextmanager
    def serving_in_place(self) -> Iterator[list[str]]:
        """Within the block, the first run scheduled now on the default queue is not sent but
        put in the list yielded, for this worker to advance itself once the block ends (a fan-out
        task serving the first run it woke). Runs are in the store, due: should the block raise,
        the kept run is sent as usual.
        """
        kept: list[str] = []
        self._in_place.kept = kept
        try:
            yield kept
        except BaseException:
            self._in_place.kept = None
            for workflow_id in kept:
                self.schedule(workflow_id, queue="")
            kept.clear()
            raise
        finally:
            self._in_place.kept = None

    def schedule_fan_out(self, event_id: str) -> None:
        """Send ``fan_out_event(event_id)`` after the current transaction commits (the event is
        stored in it); a message that cannot be sent is logged: the sweep sends it later."""
        self._after_commit(functools.partial(self._send_fan_out, event_id))

    def dispatch_activity(self, workflow_id: str, run_id: str, op: int, *,
                          queue: str | None = None, attempt: int = 1,
                          attempts: list = (), at: datetime | None = None) -> None:
        """Send ``run_activity`` for the started activity once the current transaction commits,
        on ``queue`` (else the default one), with a countdown to ``at`` if given. A message that
        cannot be sent is logged: the run hands the activity out again when it is due."""
        countdown = None if at is None else max((at - self.clock.now()).total_seconds(), 0.0)
        self._after_commit(functools.partial(
            self._send_activity, (workflow_id, run_id, op, attempt, list(attempts)), queue,
            countdown))

    def _send_activity(self, args: tuple, queue: str | None, countdown: float | None) -> None:
        # Behind new runs (and wake-ups): a fan-out of 1,000 activities must not hold back the
        # runs started meanwhile for minutes (on Redis the lowest priority, 9).
        options: dict[str, Any] = {"ignore_result": True}
        if self.start_priority is not None:
            options["priority"] = 9
        if queue:
            options["queue"] = queue
        if countdown:
            options["countdown"] = countdown
        try:
            self.app.send_task(ACTIVITY_TASK, args=args, **options)
        except Exception:
            logger.exception("could not send %s for %r; the run hands it out again when due",
                             ACTIVITY_TASK, args[:3])

    def fire_schedules(self, now: datetime | None = None) -> list[str]:
        """Start the runs of the cron ticks due by ``now`` and send each schedule's next tick
        with a countdown when it is within ``countdown_limit`` (``beluga_workflows.schedules``)."""
        from ..schedules.celery import fire_schedules_on_time

        return fire_schedules_on_time(self, now)

    def schedule_groups(self, at: datetime) -> None:
        """Send ``fire_event_groups`` with a countdown to ``at`` (a debounce or batch group's due
        time) once the current transaction commits, when it is within ``countdown_limit``; the
        sweep fires the group otherwise (and if the message is lost)."""
        countdown = max((at - self.clock.now()).total_seconds(), 0.0)
        if countdown > self.countdown_limit:
            return
        self._after_commit(functools.partial(self._send_fire_groups, countdown))

    def _send_fire_groups(self, countdown: float) -> None:
        try:
            self.app.send_task(FIRE_GROUPS_TASK, ignore_result=True,
                               countdown=countdown if countdown > 0 else None)
        except Exception:
            logger.exception("could not send %s; the recovery sweep fires the groups",
                             FIRE_GROUPS_TASK)

    def _send_fan_out(self, event_id: str) -> None:
        try:
            self.app.send_task(FAN_OUT_TASK, args=(event_id,), ignore_result=True)
        except Exception:
            logger.exception("could not send %s for event %r; the recovery sweep will send it",
                             FAN_OUT_TASK, event_id)

    def _enqueue(self, workflow_id: str, queue: str | None, countdown: float | None, *,
                 priority: int | None = None) -> None:
        self._after_commit(functools.partial(self._send, workflow_id, queue, countdown, priority))

    def _after_commit(self, send: Any) -> None:
        """Call ``send()`` once the transaction the store writes in commits (now, outside one)."""
        alias = self._db_alias()
        if alias is not None:
            transaction.on_commit(send, using=alias)
        elif in_default_transaction():
            # A store outside the database: still wait for the caller's transaction, so the rows
            # the workflow's input refers to are visible to the worker.
            transaction.on_commit(send)
        else:
            send()

    def _send(self, workflow_id: str, queue: str | None, countdown: float | None,
              priority: int | None = None) -> None:
        try:
            if queue is None:
                queue = self._queue_of(workflow_id)
            # ignore_result: with a result backend configured (Redis), send_task would otherwise
            # subscribe to each message's result, a round trip per send for a result nobody reads.
            options: dict[str, Any] = {"ignore_result": True}
            if queue:
                options["queue"] = queue
            if countdown is not None and countdown > 0:
                options["countdown"] = countdown
            if priority is not None:
                options["priority"] = priority
            self.app.send_task(RUN_TASK, args=(workflow_id,), **options)
        except Exception:
            logger.exception("could not send %s for %r; the recovery sweep will send it once due",
                             RUN_TASK, workflow_id)

    def _queue_of(self, workflow_id: str) -> str | None:
        """The queue the open run of ``workflow_id`` was started on (``None``: the default)."""
        state = self.store.load(workflow_id, with_history=False)
        return state.queue if state is not None else None

    def _db_alias(self) -> str | None:
        """The database the store writes to (its commit must precede the message), if any."""
        return self.store.database_alias

    # -- recovery -------------------------------------------------------------------------------

    def sweep(self, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """The periodic recovery pass (Celery beat); returns the ids it sent.

        - Runs coming due within ``sweep_lookahead`` seconds are sent with a countdown to that
          moment: timers ending (however long ago they were set) and runs whose worker stopped
          renewing its lease (it died) when the lease runs out. Each is sent by about one sweep.
        - Runs due for ``sweep_grace`` seconds that no worker took are sent again now. Runs that
          came due more recently are left to the message already on its way, so a long queue is
          not flooded with copies of the runs waiting in it.
        - Events not fanned out ``fan_out_grace`` seconds after they were received get their
          fan-out sent again (``finish_fan_outs``).
        - Flow control (``flow_sweep``): slots of runs no longer open are freed, runs waiting
          for slots promoted, due debounce and batch groups fired.
        - Schedules (``fire_schedules``): the cron ticks that came due are started.
        - Retention (``apply_retention``): runs ended longer than ``RETENTION`` ago are deleted,
          at most ``limit`` per sweep.
        """
        now = now or self.clock.now()
        # A short countdown (at most the lookahead), whatever ``countdown_limit`` says.
        return self.sweep_ahead(
            now, limit, grace=self.sweep_grace, lookahead=self.sweep_lookahead,
            send_at=lambda workflow_id, queue, at: self._enqueue(
                workflow_id, queue, (at - now).total_seconds()))


def _recover_interval() -> float:
    return float(workflow_settings.RECOVER_INTERVAL)


def require_celery() -> None:
    """Raise a clear error when Celery, which this runtime sends its tasks with, is missing.

    Raises:
        ImproperlyConfigured: naming the extra to install.
    """
    try:
        import celery  # noqa: F401
    except ImportError as exc:
        raise ImproperlyConfigured(
            'the "celery" executor needs Celery, which is not installed: '
            'pip install "beluga-workflows[celery]" (or choose BELUGA_WORKFLOWS["EXECUTOR"] = '
            '{"BACKEND": "local"})'
        ) from exc
