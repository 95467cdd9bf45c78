"""Schedules on time under Celery: a countdown message per next tick, so ticks need not wait for
the sweep (a 1-second schedule fires every second whatever ``RECOVER_INTERVAL`` is).

Whoever wins a tick (the sweep, or a message like this one) sends
``beluga_workflows.fire_schedule(schedule_id, next_tick)`` with a countdown to the next tick, when
that is within the executor's ``countdown_limit``; the worker that gets it fires that schedule's
due tick and, winning it, sends the message for the tick after. Only winners send, so one message
per tick is in flight however many beat processes run: a second chain (a message redelivered,
a sweep winning a tick first) dies at the next tick, whose loser finds the schedule already
advanced past the tick its message names and sends nothing. A message that arrives early sends
itself again for the rest of the wait. Messages are hints, as the run messages are: the sweep
fires every due tick whatever happened to them (a worker killed while holding one, a broker
restart), ticks further away than ``countdown_limit`` are left to the sweep, and the
compare-and-set on the row (``firing``) keeps every tick to one run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import transaction

from ..models import Schedule
from ..runtimes import get_executor
from .firing import fire_schedules
from .rows import schedules_database

__all__ = ["FIRE_SCHEDULE_TASK", "fire_schedule", "fire_schedules_on_time", "send_next_tick"]

logger = logging.getLogger("beluga_workflows.schedules")

# The stable task name; the workers of every release answer to it.
FIRE_SCHEDULE_TASK = "beluga_workflows.fire_schedule"


def fire_schedules_on_time(executor: Any, now: datetime | None = None, *,
                           ids: list[str] | None = None) -> list[str]:
    """``fire_schedules`` (the sweep's schedules pass, or one schedule's with ``ids``), sending
    a countdown message for each next tick it sets (``send_next_tick``); the ids started."""
    return fire_schedules(executor, now, ids=ids,
                          on_next=lambda schedule_id, tick: send_next_tick(executor, schedule_id,
                                                                           tick))


def send_next_tick(executor: Any, schedule_id: str, tick: datetime) -> None:
    """Send ``fire_schedule(schedule_id, tick)`` with a countdown to ``tick``, once the current
    transaction commits, when ``tick`` is within ``executor.countdown_limit``; a message that
    cannot be sent is logged (the sweep fires the tick)."""
    countdown = (tick - executor.clock.now()).total_seconds()
    if countdown > executor.countdown_limit:
        return

    def send() -> None:
        try:
            executor.app.send_task(FIRE_SCHEDULE_TASK, args=(schedule_id, tick.isoformat()),
                                   countdown=countdown if countdown > 0 else None,
                                   ignore_result=True)
        except Exception:
            logger.exception("could not send %s for schedule %r; the sweep fires its tick",
                             FIRE_SCHEDULE_TASK, schedule_id)

    transaction.on_commit(send, using=schedules_database(executor.store))


@shared_task(name=FIRE_SCHEDULE_TASK, ignore_result=True)
def fire_schedule(schedule_id: str, tick: str) -> list[str]:
    """Fire schedule ``schedule_id``'s tick ``tick`` (ISO 8601) if it is still its next one;
    returns the ids of the runs started."""
    from ..runtimes._connections import refresh_connections

    refresh_connections()  # as before every other task: runtimes/_connections.py
    executor = get_executor()
    at = datetime.fromisoformat(tick)
    row = (Schedule.objects.using(schedules_database(executor.store)).filter(pk=schedule_id)
           .values("next_fire_at", "paused").first())
    if row is None or row["paused"] or row["next_fire_at"] != at:
        return []  # gone, paused, or advanced past this tick by another process (which sends on)
    if at > executor.clock.now():
        send_next_tick(executor, schedule_id, at)  # early: wait for the rest
        return []
    return fire_schedules_on_time(executor, ids=[schedule_id])
