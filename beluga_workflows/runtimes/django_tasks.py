"""The ``django_tasks`` runtime: runs are advanced by tasks of Django's Tasks framework (DEP 14).

``"EXECUTOR": {"BACKEND": "django_tasks", "OPTIONS": {"backend": "default", "queue_name":
"default"}}`` enqueues every piece of work through the ``TASKS`` backend of that alias (the
``django-tasks`` backport on Django 5.2; install ``beluga-workflows[tasks]``). With the ORM backend
of ``django-tasks-db`` no broker is needed: the site's database holds the queue and ``manage.py
db_worker`` processes run it.

How a run reaches a worker (the Celery runtime's rules, on a task backend):

- ``execute``, ``signal`` and ``cancel`` enqueue ``jobs.run_workflow`` once the surrounding
  database transaction commits, on the run's queue (else ``queue_name``).
- A run that suspends on a wait ending within ``defer_limit`` seconds (60 by default) is also
  enqueued with ``run_after`` (only where the backend ``supports_defer``), so short sleeps and
  retry backoffs end on time. Longer waits are never left to the task backend: the due time lives
  in the store and the sweep enqueues the run shortly before it comes due.
- The sweep (``jobs.sweep_workflows``) is a task too, re-enqueued by itself ``sweep_interval``
  seconds ahead (``RECOVER_INTERVAL``) before it does its work, so it runs on the workers with no
  beat process. It is the Celery runtime's sweep (lookahead, grace, fan-outs, flow control,
  schedules, retention); a sweep that starts late (every worker was down) does a full ``recover``
  instead, so timers that came due meanwhile fire at once. On the ORM backend the chain is kept
  to about one: a sweep enqueues its successor only when none is waiting, and any process that
  schedules work (and ``workflows_recover``) starts a chain when it finds none waiting, at most
  once per interval. On a backend without ``run_after`` there is no chain: run
  ``manage.py workflows_recover`` periodically (cron) instead.
- Started activities (``jobs.run_activity``), event fan-outs (``jobs.fan_out_event``) and due
  debounce/batch groups (``jobs.fire_event_groups``) are tasks too.

Every task is only a hint: a run ended, leased by another worker or not yet due is left alone, so
a duplicate costs a database round trip. A ``db_worker`` killed mid-task leaves its task row
``RUNNING`` for ever (the ORM backend never hands it out again): the run's lease in the store runs
out and the sweep enqueues it again.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from ..conf import workflow_settings
from ..engine.executor import WorkflowExecutor
from ..stores import get_store
from ._transactions import in_default_transaction

__all__ = ["DjangoTasksExecutor", "require_django_tasks"]

logger = logging.getLogger("beluga_workflows.django_tasks")

# Task priorities where the backend ranks them (higher runs first): the sweep, then wake-ups of
# runs already going, then new runs, then started activities (a fan-out of 1,000 activities must
# not hold back the runs started meanwhile).
SWEEP_PRIORITY = 50
WAKE_PRIORITY = 10
START_PRIORITY = 0
ACTIVITY_PRIORITY = -10


class DjangoTasksExecutor(WorkflowExecutor):
    """Enqueues runs as Django tasks; ``db_worker`` (or any task worker) runs ``beluga_workflows.jobs``.

    Args:
        backend: the ``TASKS`` alias the tasks are enqueued with.
        queue_name: the queue of runs started without one (``WorkflowOptions.queue``).
        defer_limit: waits ending within this many seconds are also enqueued with ``run_after``;
            longer ones are left to the sweep.
        sweep_interval: seconds between sweeps; default ``RECOVER_INTERVAL``.
        sweep_lookahead: the sweep enqueues runs coming due within this many seconds, with
            ``run_after``; default 1.5 sweep intervals (consecutive sweeps overlap).
        sweep_grace: the sweep enqueues again runs due for this many seconds that no worker took;
            default 30 seconds or 3 sweep intervals, whichever is longer.
        keep_results: on the ORM backend the sweep deletes the finished task rows of these tasks
            older than this many seconds (one row per activation would otherwise pile up);
            ``None`` keeps them.
        **options: the ``WorkflowExecutor`` options (store, hooks, lease_seconds, ...).
    """

    name = "django_tasks"

    def __init__(self, *, backend: str = "default", queue_name: str = "default",
                 defer_limit: float = 60.0, sweep_interval: float | None = None,
                 sweep_lookahead: float | None = None, sweep_grace: float | None = None,
                 keep_results: float | None = 3600.0, **options: Any) -> None:
        require_django_tasks()
        options.setdefault("store", get_store)
        super().__init__(**options)
        self.backend_alias = backend
        self.queue_name = queue_name
        self.defer_limit = float(defer_limit)
        interval = float(workflow_settings.RECOVER_INTERVAL if sweep_interval is None
                         else sweep_interval)
        self.sweep_interval = interval
        self.sweep_lookahead = float(1.5 * interval if sweep_lookahead is None else sweep_lookahead)
        self.sweep_grace = float(max(30.0, 3 * interval) if sweep_grace is None else sweep_grace)
        self.keep_results = None if keep_results is None else float(keep_results)
        self._chain_checked = float("-inf")  # monotonic time of the last look for a waiting sweep

    # -- the task backend -----------------------------------------------------------------------

    @property
    def backend(self) -> Any:
        """The ``TASKS`` backend the tasks are enqueued with."""
        from django_tasks import task_backends

        return task_backends[self.backend_alias]

    @property
    def supports_defer(self) -> bool:
        """Whether the backend runs tasks later (``run_after``): near wake-ups and the sweep
        chain need it."""
        return bool(self.backend.supports_defer)

    def _task(self, function: Any, queue: str | None, run_after: datetime | None,
              priority: int) -> Any:
        backend = self.backend
        return function.using(
            backend=self.backend_alias, queue_name=queue or self.queue_name,
            run_after=run_after if backend.supports_defer else None,
            priority=priority if backend.supports_priority else 0)

    def _send(self, function: Any, args: tuple, *, queue: str | None = None,
              run_after: datetime | None = None, priority: int = START_PRIORITY) -> None:
        """Enqueue ``function(*args)`` now; a failure is logged (the store holds what is due and
        the sweep enqueues it again)."""
        try:
            self._task(function, queue, run_after, priority).enqueue(*args)
        except Exception:
            logger.exception("could not enqueue %s%r; the sweep enqueues it again once due",
                             function.name, args)

    def _after_commit(self, send: Any) -> None:
        """Call ``send()`` once the transaction the store writes in commits (now, outside one)."""
        alias = self.store.database_alias
        if alias is not None:
            transaction.on_commit(send, using=alias)
        elif in_default_transaction():
            transaction.on_commit(send)  # the rows the run's input names must be visible first
        else:
            send()

    def _run_after(self, at: datetime | None) -> tuple[bool, datetime | None]:
        """``(send, run_after)`` for work due at ``at``: not sent when it is further than
        ``defer_limit`` away or the backend cannot defer (the sweep sends it)."""
        if at is None:
            return True, None
        delay = (at - self.clock.now()).total_seconds()
        if delay <= 0:
            return True, None
        return delay <= self.defer_limit and self.supports_defer, at

    # -- scheduling -----------------------------------------------------------------------------

    def schedule_start(self, workflow_id: str, *, queue: str | None = None) -> None:
        """Enqueue the first activation, ranked after wake-ups of older runs."""
        self._enqueue_run(workflow_id, queue, None, START_PRIORITY)

    def schedule(self, workflow_id: str, *, at: datetime | None = None, queue: str | None = None) -> None:
        """Enqueue ``run_workflow(workflow_id)`` after the current transaction commits.

        With ``at`` in the future: with ``run_after`` when it is at most ``defer_limit`` seconds
        away and the backend can defer, otherwise not at all (the sweep enqueues it).
        ``queue``: the run's queue (``""``: ``queue_name``; ``None``: look it up in the store).
        """
        send, run_after = self._run_after(at)
        if send:
            self._enqueue_run(workflow_id, queue, run_after, WAKE_PRIORITY)

    def _enqueue_run(self, workflow_id: str, queue: str | None, run_after: datetime | None,
                     priority: int) -> None:
        from .. import jobs

        def send() -> None:
            run_queue = queue
            if run_queue is None:
                state = self.store.load(workflow_id, with_history=False)
                run_queue = state.queue if state is not None else None
            self._send(jobs.run_workflow, (workflow_id,), queue=run_queue, run_after=run_after,
                       priority=priority)
            self.keep_sweeping()

        self._after_commit(send)

    def schedule_fan_out(self, event_id: str) -> None:
        """Enqueue ``fan_out_event(event_id)`` after the current transaction commits."""
        from .. import jobs

        self._after_commit(functools.partial(self._send, jobs.fan_out_event, (event_id,),
                                             priority=WAKE_PRIORITY))

    def dispatch_activity(self, workflow_id: str, run_id: str, op: int, *,
                          queue: str | None = None, attempt: int = 1,
                          attempts: list = (), at: datetime | None = None) -> None:
        """Enqueue ``run_activity`` for the started activity once the current transaction
        commits, at ``at`` if given (an activity whose task is lost is handed out again by its
        run when ``activity_redispatch`` runs out).

        A retry's ``at`` is never left to the sweep, which knows nothing of the attempts made
        so far: it is deferred however far away it is, or (a backend that cannot defer) sent at
        once: the retry then comes early, without its backoff, but keeps its attempt count."""
        from .. import jobs

        run_after = at if at is not None and self.supports_defer and at > self.clock.now() \
            else None
        self._after_commit(functools.partial(
            self._send, jobs.run_activity, (workflow_id, run_id, op, attempt, list(attempts)),
            queue=queue, run_after=run_after, priority=ACTIVITY_PRIORITY))

    def schedule_groups(self, at: datetime) -> None:
        """Enqueue ``fire_event_groups`` at ``at`` (a debounce or batch group's due time) when it
        is within ``defer_limit``; the sweep fires the group otherwise."""
        from .. import jobs

        send, run_after = self._run_after(at)
        if send:
            self._after_commit(functools.partial(self._send, jobs.fire_event_groups, (),
                                                 run_after=run_after, priority=WAKE_PRIORITY))

    def fire_schedules(self, now: datetime | None = None) -> list[str]:
        """Start the runs of the cron ticks due by ``now``: at each sweep (so a tick fires
        within ``sweep_interval`` of its time)."""
        from ..schedules import fire_schedules

        return fire_schedules(self, now)

    def dispatch(self, workflow_ids: list[str]) -> None:
        """Enqueue these due runs now (``workflows_recover``), and start a sweep chain if none
        is waiting."""
        for workflow_id in workflow_ids:
            self.schedule(workflow_id)
        self._chain_checked = float("-inf")
        self._after_commit(self.keep_sweeping)

    # -- the sweep chain ------------------------------------------------------------------------

    def keep_sweeping(self) -> None:
        """Start a sweep chain when none is waiting in the queue (looked for at most once per
        ``sweep_interval`` in this process). Only on the ORM backend, whose queue can be read;
        elsewhere a chain is started by ``workflows_recover``."""
        if time.monotonic() - self._chain_checked < self.sweep_interval:
            return
        self._chain_checked = time.monotonic()
        try:
            if self.supports_defer and self._sweep_waiting() is False:
                self.enqueue_sweep(self.clock.now())
        except Exception:
            logger.exception("could not look for a waiting sweep; looking again later")

    def _sweep_waiting(self) -> bool | None:
        """Whether a sweep task is waiting in the queue (``None``: this backend cannot tell)."""
        try:
            from django_tasks_db import DatabaseBackend
        except ImportError:
            return None
        if not isinstance(self.backend, DatabaseBackend):
            return None
        from django_tasks_db.models import DBTaskResult

        from .. import jobs

        return DBTaskResult.objects.filter(
            backend_name=self.backend_alias, task_path=jobs.sweep_workflows.module_path,
            status="READY").exists()

    def enqueue_sweep(self, now: datetime) -> None:
        """Enqueue the next sweep ``sweep_interval`` seconds after ``now`` (nothing on a backend
        that cannot defer)."""
        from .. import jobs

        if not self.supports_defer:
            return
        at = now + timedelta(seconds=self.sweep_interval)
        self._send(jobs.sweep_workflows, (at.isoformat(),), run_after=at, priority=SWEEP_PRIORITY)

    def sweep_now(self, planned: datetime | None = None, limit: int = 1000) -> list[str]:
        """One sweep of the chain (``jobs.sweep_workflows``): its successor first (so a worker
        killed during the sweep does not end the chain; on the ORM backend only if none is
        waiting), then ``sweep``, or ``recover`` when it starts more than two intervals after
        ``planned`` (sweeps were missed: whatever came due meanwhile goes now)."""
        now = self.clock.now()
        if self.supports_defer and not self._sweep_waiting():
            self.enqueue_sweep(now)
        self._chain_checked = time.monotonic()
        late = planned is not None and (now - planned).total_seconds() > 2 * self.sweep_interval
        sent = self.recover(now, limit) if late else self.sweep(now, limit)
        self.prune_results(now, limit)
        return sent

    def prune_results(self, now: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` finished task rows of this runtime's tasks older than
        ``keep_results`` (ORM backend only; nobody reads them); how many it deleted."""
        if self.keep_results is None or self._sweep_waiting() is None:
            return 0
        from django_tasks_db.models import DBTaskResult

        from .. import jobs

        paths = [f"{jobs.__name__}.{name}" for name in jobs.__all__]
        rows = DBTaskResult.objects.filter(
            backend_name=self.backend_alias, task_path__in=paths,
            status__in=("SUCCESSFUL", "FAILED"),
            finished_at__lt=now - timedelta(seconds=self.keep_results))
        ids = list(rows.values_list("id", flat=True)[:limit])
        return DBTaskResult.objects.filter(id__in=ids).delete()[0] if ids else 0

    # -- recovery -------------------------------------------------------------------------------

    def sweep(self, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """The periodic recovery pass; returns the ids it enqueued.

        As the Celery runtime's: runs due for ``sweep_grace`` seconds are enqueued again now;
        runs coming due within ``sweep_lookahead`` seconds (timers ending, leases of dead
        workers running out) are enqueued with ``run_after`` that moment; then the fan-outs,
        flow-control, schedules and retention passes.
        """
        now = now or self.clock.now()
        return self.sweep_ahead(
            now, limit, grace=self.sweep_grace,
            lookahead=self.sweep_lookahead if self.supports_defer else 0,
            send_at=lambda workflow_id, queue, at: self._enqueue_run(
                workflow_id, queue, at, WAKE_PRIORITY))


def require_django_tasks() -> None:
    """Raise a clear error when ``django-tasks``, which this runtime enqueues with, is missing.

    Raises:
        ImproperlyConfigured: naming the extra to install.
    """
    try:
        import django_tasks  # noqa: F401
    except ImportError as exc:
        raise ImproperlyConfigured(
            'the "django_tasks" executor needs django-tasks, which is not installed: '
            'pip install "beluga-workflows[tasks]" (or choose BELUGA_WORKFLOWS["EXECUTOR"] = '
            '{"BACKEND": "local"})'
        ) from exc


def check_django_tasks(options: dict) -> list:
    """``manage.py check`` for the django_tasks executor: the extra is installed (``E020``), the
    ``backend`` alias is in ``TASKS`` (``E021``) and takes ``queue_name`` (``E022``); a backend
    that runs tasks at once in the caller (``W020``: fine for tests) or cannot run them later
    (``W021``: near wake-ups and the sweep chain need ``run_after``) is reported."""
    from django.core import checks

    try:
        require_django_tasks()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="Install the tasks extra, or choose the local or "
                             "celery executor.", id="beluga_workflows.E020")]
    from django_tasks import task_backends
    from django_tasks.exceptions import InvalidTaskBackendError

    alias = options.get("backend", "default")
    queue = options.get("queue_name", "default")
    try:
        backend = task_backends[alias]
    except InvalidTaskBackendError as exc:
        return [checks.Error(
            f"the django_tasks executor's task backend {alias!r} cannot be used: {exc}",
            hint="Add it to the TASKS setting (for example {'default': {'BACKEND': "
                 "'django_tasks_db.DatabaseBackend'}} with 'django_tasks_db' in INSTALLED_APPS), "
                 "or fix BELUGA_WORKFLOWS['EXECUTOR']['OPTIONS']['backend'].",
            id="beluga_workflows.E021")]
    if backend.queues and queue not in backend.queues:
        return [checks.Error(
            f"the django_tasks executor's queue_name {queue!r} is not a queue of task backend "
            f"{alias!r} (its QUEUES: {', '.join(sorted(backend.queues))})",
            hint="Add it to TASKS[...]['QUEUES'] (an empty list allows any queue), or fix "
                 "BELUGA_WORKFLOWS['EXECUTOR']['OPTIONS']['queue_name'].",
            id="beluga_workflows.E022")]
    from django_tasks.backends.immediate import ImmediateBackend

    if isinstance(backend, ImmediateBackend):
        return [checks.Warning(
            f"task backend {alias!r} is the immediate one: each run advances in the process "
            f"that starts or signals it, at once, and timers wait for a sweep. Fine for tests; "
            f"a site needs a backend with workers",
            hint="Use 'django_tasks_db.DatabaseBackend' and run manage.py db_worker.",
            id="beluga_workflows.W020")]
    if not backend.supports_defer:
        return [checks.Warning(
            f"task backend {alias!r} cannot run tasks later (no run_after): short sleeps and "
            f"retry backoffs wait for the sweep, and the sweep does not run by itself",
            hint="Run manage.py workflows_recover every RECOVER_INTERVAL seconds (cron), or use "
                 "a backend that supports run_after ('django_tasks_db.DatabaseBackend').",
            id="beluga_workflows.W021")]
    return []
