"""SQLite under the ``django`` store: correct on any ``DATABASES`` entry, not only a tuned one.

SQLite lets one writer in at a time. Two things make Django's default SQLite settings fail under
concurrent workflow threads, and this subclass does away with both:

- A deferred transaction (Django's ``BEGIN`` unless ``OPTIONS["transaction_mode"]`` says
  otherwise) that reads, then writes, cannot upgrade its lock while another connection writes:
  SQLite refuses at once with "database is locked", without waiting (waiting could deadlock).
  Here every write operation is one transaction that takes the write lock up front
  (``BEGIN IMMEDIATE``, whatever ``transaction_mode`` is), where SQLite's busy timeout applies.
- A shared-cache in-memory database (pytest-django's test database) reports a table another
  connection holds as "database table is locked" at once, with no busy timeout at all.

So an operation that finds the database busy or locked is tried again, whole (its transaction was
rolled back), after a jittered backoff, for up to ``busy_retry_seconds`` in all; only then does it
fail with ``StoreError``. Inside a caller's ``transaction.atomic()`` block neither applies: the
transaction is the caller's (its lock mode, its retries).
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.core import checks
from django.db import DatabaseError, OperationalError, connections, transaction

from ...engine.errors import StoreError
from .orm import DjangoStore

__all__ = ["SqliteDjangoStore"]

# What SQLite says when another connection holds the lock (busy) or the table (shared cache).
_LOCKED = ("database is locked", "database table is locked", "database schema is locked")

# Operations that write: each runs as one BEGIN IMMEDIATE transaction.
_WRITES = ("save", "delete", "create", "claim", "append", "suspend", "append_and_suspend",
           "renew", "add_signal", "request_cancel", "add_event", "record_outcome",
           "record_delivery", "create_with_waits", "append_with_waits", "wake_runs", "promote",
           "release_orphans", "group_event", "fire_group", "purge_ended", "continue_as_new")
# (deliver_signal is add_signal, retried as a write, then a read after its commit.)
# Operations that only read: retried when a shared-cache table is locked.
_READS = ("load", "load_operation", "list", "count", "count_by_status", "count_children", "history",
          "refresh", "due", "get_event",
          "list_events", "count_events", "find_events", "unfanned_events", "matching_waits",
          "get_delivery", "waiting_buckets", "flow_usage", "due_groups", "next_group_due",
          "count_ended")


def is_locked(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or the database error behind a ``StoreError``) is SQLite's busy/locked."""
    if isinstance(exc, StoreError):
        exc = exc.__cause__
    return isinstance(exc, OperationalError) and any(text in str(exc) for text in _LOCKED)


class SqliteDjangoStore(DjangoStore):
    """The ``django`` store on an SQLite database; ``DjangoStore(using=...)`` of an SQLite alias
    builds one. See the module docstring."""

    # How long an operation keeps trying while the database is busy or locked, in seconds.
    busy_retry_seconds = 30.0

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[None]:
        """One transaction that holds the write lock from its first statement (``BEGIN IMMEDIATE``)."""
        connection = connections[self.using]
        connection.ensure_connection()  # connecting resets transaction_mode from OPTIONS
        mode = connection.transaction_mode
        connection.transaction_mode = "IMMEDIATE"
        try:
            with transaction.atomic(using=self.using):
                connection.transaction_mode = mode  # savepoints inside need nothing of it
                yield
        finally:
            connection.transaction_mode = mode

    def _retrying(self, operation: str, call: Callable[[], Any], *, write: bool) -> Any:
        """``call()``, whole, until it does not find the database busy or locked (bounded).

        Raises:
            StoreError: still busy or locked after ``busy_retry_seconds`` (or another failure).
        """
        if connections[self.using].in_atomic_block:
            return call()  # the caller's transaction: retrying inside it cannot help
        deadline = time.monotonic() + self.busy_retry_seconds
        delay = 0.002
        while True:
            try:
                if not write:
                    return call()
                with self._immediate():
                    return call()
            except DatabaseError as exc:  # from BEGIN IMMEDIATE or COMMIT, outside the operation
                if not is_locked(exc) or time.monotonic() + delay > deadline:
                    raise self.backend_error(operation, exc) from exc
            except StoreError as exc:
                if not is_locked(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(random.uniform(delay / 2, delay * 1.5))  # jitter: waiters spread out
            delay = min(delay * 2, 0.25)

    def check(self, *, multi_process: bool = False) -> list[checks.CheckMessage]:
        """Also warns (``beluga_workflows.W003``) when workflows run in several processes on a
        database without write-ahead logging: readers then wait for every writer."""
        messages = super().check(multi_process=multi_process)
        if messages or not multi_process:
            return messages
        try:
            with connections[self.using].cursor() as cursor:
                cursor.execute("PRAGMA journal_mode")
                mode = str(cursor.fetchone()[0]).lower()
        except DatabaseError:  # no database file yet: migrate reports that better
            return messages
        if mode != "wal":
            messages.append(checks.Warning(
                f"the django workflow store's SQLite database {self.using!r} is in journal mode "
                f"{mode!r}, not 'wal', and the executor runs workflows in several processes: "
                f"every checkpoint then blocks every reader, and workers wait on each other",
                hint=f"Add 'init_command': 'PRAGMA journal_mode=WAL;' to DATABASES[{self.using!r}]"
                     f"['OPTIONS'] (WAL persists in the database file), or use PostgreSQL.",
                id="beluga_workflows.W003"))
        return messages


def _retried(name: str, *, write: bool) -> Callable[..., Any]:
    method = getattr(DjangoStore, name)

    @functools.wraps(method)
    def wrapper(self: SqliteDjangoStore, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(name, functools.partial(method, self, *args, **kwargs), write=write)

    return wrapper


for _name in _WRITES:
    setattr(SqliteDjangoStore, _name, _retried(_name, write=True))
for _name in _READS:
    setattr(SqliteDjangoStore, _name, _retried(_name, write=False))
