"""Run ends pushed to waiters over PostgreSQL ``LISTEN``/``NOTIFY`` (the ``django`` store).

The statement that ends a run sends ``NOTIFY beluga_workflows_run_ended, '<workflow id>'``, which
PostgreSQL delivers when that statement commits. One listener thread per process and database
alias holds a connection of its own that ``LISTEN``s on the channel and wakes the threads waiting
in ``handle.result()`` for that id, so a result is seen within a millisecond of its commit instead
of at the next poll.

A waiter subscribes before it first reads the run, so an end that commits between its read and its
wait still wakes it. Notifications are only hints: the waiter reads the run again, and it keeps
polling (slowly) in case one is lost (the listener's connection dropped and is being re-made). If
the listener cannot connect at all, ``pushed`` is ``False`` and waiters poll as before.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from ..base import RunWatch
from .postgres import END_CHANNEL, psycopg

__all__ = ["EndListener"]

logger = logging.getLogger("beluga_workflows.stores.django")

# The listener closes its connection after this long without subscribers (a new one reopens it).
IDLE_SECONDS = 30.0
# How long a first subscriber waits for the listener's first LISTEN before it polls instead.
READY_TIMEOUT = 2.0


class _Watch(RunWatch):
    def __init__(self, listener: EndListener, workflow_id: str) -> None:
        self.listener = listener
        self.workflow_id = workflow_id
        self.event = threading.Event()

    @property
    def pushed(self) -> bool:
        return self.listener.listening.is_set()

    def wait(self, seconds: float) -> None:
        if self.event.wait(seconds):
            self.event.clear()

    def close(self) -> None:
        self.listener.unsubscribe(self)


class EndListener:
    """One thread and connection per process and alias that hears run ends and wakes waiters."""

    _instances: dict[str, EndListener] = {}
    _instances_lock = threading.Lock()

    @classmethod
    def for_alias(cls, alias: str) -> EndListener:
        """The listener of database ``alias`` in this process (made on first use)."""
        with cls._instances_lock:
            listener = cls._instances.get(alias)
            if listener is None:
                listener = cls._instances[alias] = cls(alias)
            return listener

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.listening = threading.Event()
        self._tried = threading.Event()  # the first connection attempt is over
        self._lock = threading.Lock()
        self._watches: dict[str, set[_Watch]] = {}
        self._thread: threading.Thread | None = None

    def watch(self, workflow_id: str) -> RunWatch:
        """Subscribe to the end of ``workflow_id``; close the watch when done with it."""
        watch = _Watch(self, workflow_id)
        with self._lock:
            self._watches.setdefault(workflow_id, set()).add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name=f"beluga-end-listener-{self.alias}")
                self._thread.start()
        self._tried.wait(READY_TIMEOUT)
        return watch

    def unsubscribe(self, watch: _Watch) -> None:
        """Forget ``watch``: run ends no longer wake it."""
        with self._lock:
            watches = self._watches.get(watch.workflow_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[watch.workflow_id]

    def _wake(self, workflow_id: str | None) -> None:
        with self._lock:
            if workflow_id is None:
                watches = [w for ws in self._watches.values() for w in ws]
            else:
                watches = list(self._watches.get(workflow_id, ()))
        for watch in watches:
            watch.event.set()

    def _connect(self) -> Any:
        from django.db import connections

        params = connections[self.alias].get_connection_params()
        params.pop("cursor_factory", None)
        params["prepare_threshold"] = None
        connection = psycopg.connect(**params, autocommit=True)
        connection.execute(f"LISTEN {END_CHANNEL}")
        return connection

    def _loop(self) -> None:
        backoff = 0.5
        while True:
            connection = None
            try:
                connection = self._connect()
                self.listening.set()
                self._tried.set()
                backoff = 0.5
                # Ends that committed while nobody listened: let every waiter look again.
                self._wake(None)
                idle_since = None
                while True:
                    for notify in connection.notifies(timeout=1.0):
                        self._wake(notify.payload)
                    if self._stop_if_idle(idle_since):
                        return
                    with self._lock:
                        idle_since = (idle_since or time.monotonic()) if not self._watches else None
            except Exception as exc:
                self.listening.clear()
                self._wake(None)
                self._tried.set()
                if self._stop_if_idle(time.monotonic() - IDLE_SECONDS):
                    return  # nobody waits (a test database being dropped, say): do not reconnect
                logger.warning("run-end listener on %r lost its connection (%s); "
                               "waiters poll until it is back", self.alias, exc)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _stop_if_idle(self, idle_since: float | None) -> bool:
        """End this thread (and its connection) once nobody has waited for ``IDLE_SECONDS``."""
        with self._lock:
            if self._watches or idle_since is None or time.monotonic() - idle_since < IDLE_SECONDS:
                return False
            # Under the lock: a new subscriber either sees this thread gone and starts another, or
            # subscribed before and keeps this one going.
            self._thread = None
            self.listening.clear()
            self._tried.clear()
            return True
