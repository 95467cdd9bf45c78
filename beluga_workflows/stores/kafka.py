"""The ``kafka`` store: runs as records of one compacted Kafka topic, read through a local view.

Every record of the topic (one partition, default ``beluga-workflows``) is keyed by the workflow
id (UTF-8); its value is the run's whole document in the Go Beluga layout (``go_document.py``), a
delete is a tombstone (value ``None``). Each process consumes the topic from offset 0 in a thread
of its own into a *view*, ``{workflow id: (document, version)}``, which serves every read:
``load``, ``list``, ``count``, ``due`` (no index: one pass over the view, fine for tens of
thousands of runs held in memory, not for millions), and wakes ``watch`` ers (``handle.result()``)
when it applies a record of their id.

Compare-and-set by log order (``admit``). Each id has a version counting the records applied to
it, deletes included (0: never written). A record carries the version its writer read
(``beluga-expected``) and a token of its writer; a view applies it if the id's version is not
above that expectation, and the id's version becomes expectation + 1. A view that has read every
record is never behind a writer's read, so there a record applies exactly when the versions are
equal: every such view picks the same winner, the first in the log, and a run deleted and
created again never takes an old version back (no ABA). A writer produces synchronously
(``acks=all``), waits until its own view has consumed the record and reads its outcome there
(refused: ``DocumentStore._mutate`` tries again on the fresh document). A record written at the
offset the view expects next is applied at once by its writer (nothing can lie between), so an
uncontended write costs one produce. Writes start from the view as it is (a stale read just
loses); reads, and a change that writes nothing or refuses, first ask the broker for the
partition's end offset and wait until the view has consumed that far, so they see every write
acknowledged before they began. Signals and cancels are such writes, so none is lost.

Compaction keeps only the last record of each id (deletes are kept: the topic is created with a
century of ``delete.retention.ms``). A view rebuilt from a compacted log starts an id at its first
surviving record; by the rule above (apply unless ahead of the expectation) its version stays at
or below the others' and it catches up exactly at the id's next record that won for them. So it
agrees with them as long as the last record of every id is a winner:

1. A writer whose record was refused does not return before a record of its own won after it (its
   retry, or the id's current document or delete written again: ``_cover``).
2. A writer that died in between leaves its refused record last; ``due`` (so the sweep of every
   process) re-asserts ids left so for ``repair_after`` seconds (``repair``).

What compaction can still break: a refused record left last by a dead writer, no sweep running
for ``min.compaction.lag.ms`` (default one day: only records that old are compacted), and the id
never written again. A broker with memory-only storage (the ``tansu`` broker of ``bin/test``)
loses every run when it restarts: the store keeps its promises only as long as the topic does
(use a replicated cluster with ``acks=all`` for durability). A process whose view is ahead of the
log (the broker lost its records, or the topic was deleted and created again) fails every call
with a ``StoreError`` telling to restart it, rather than serve runs that are gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from django.core.exceptions import ImproperlyConfigured

from ..engine.errors import ConflictError, InvalidInputError, StoreError, WorkflowError
from ..engine.serialization import dumps, loads
from ..engine.types import WorkflowState
from .base import RunWatch, guarded
from .document import DocumentStore, Run

__all__ = ["FOREIGN", "Entry", "KafkaStore", "admit", "record_headers"]

_SERVER = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):[0-9]{1,5}$")  # host:port, [v6]:port
EXPECTED, WRITER = "beluga-expected", "beluga-writer"
# The version of a record without our headers (another program's): above every counter of ours
# (a counter grows by one per record, so stays below its offset + 1), and growing with the offset.
FOREIGN = 1 << 40
_FOREVER_MS = 100 * 365 * 86_400_000
# librdkafka handles of a parent process, kept alive in a forked child: destroying them there
# would wait for threads that did not survive the fork.
_ABANDONED: list[Any] = []
# librdkafka's own log lines (connection trouble...) go to logging, not to stderr.
_LOGGER = logging.getLogger("beluga_workflows.stores.kafka")


class Entry:
    """One id in the view: its document (``None`` once deleted), its version, and since when
    (``time.monotonic()``) the id's last record in the log is a refused one (0: it is not)."""

    __slots__ = ("value", "version", "exposed")

    def __init__(self, value: bytes | None, version: int) -> None:
        self.value, self.version, self.exposed = value, version, 0.0


def admit(entry: Entry | None, value: bytes | None, expected: int | None, offset: int
          ) -> Entry | None:
    """The id's entry after the record at ``offset``, or ``None`` if a view refuses it.

    ``entry`` is the id's entry (``None``: never seen, version 0); the record carries ``value``
    (``None``: a delete) and the version its writer read, ``expected`` (``None``: a record
    without our headers, which another program wrote and which applies as it is). A record
    applies if the id's version is not above the one it expects, and leaves version
    ``expected + 1``. A view that read every record is never behind a writer's read, so there it
    applies exactly when the versions are equal: compare-and-set, the first in the log winning.
    """
    if expected is None:
        return Entry(value, FOREIGN + offset)
    if entry is not None and entry.version > expected:
        return None
    return Entry(value, expected + 1)


def record_headers(version: int, token: bytes) -> dict[str, bytes]:
    """The headers of a write based on a read of the id at ``version``, by writer ``token``."""
    return {EXPECTED: str(version).encode(), WRITER: token}


class _Undecided(Exception):
    """A change decided on an unfenced read wrote nothing: decide it again on a fenced one."""


class _View:
    """The runs as the topic's records made them, up to ``position`` (the next offset to apply)."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.runs: dict[str, Entry] = {}
        self.position = 0
        self.outcomes: dict[bytes, bool | None] = {}  # writer token -> applied (None: not yet)
        self.exposed: set[str] = set()  # ids whose last record was refused
        self.failure: str = ""  # why the consumer stopped, for the callers waiting on it

    def apply(self, offset: int, key: str, value: bytes | None, headers: dict[str, bytes]) -> None:
        """Apply the record at ``offset`` (under ``changed``); one the view has passed is skipped."""
        if offset < self.position:
            return
        self.position = offset + 1
        entry = self.runs.get(key)
        try:
            expected = int(headers[EXPECTED]) if EXPECTED in headers else None
        except (TypeError, ValueError):
            expected = None
        after = admit(entry, value, expected, offset)
        if after is not None:
            self.runs[key] = after
            self.exposed.discard(key)
        elif not entry.exposed:
            entry.exposed = time.monotonic()
            self.exposed.add(key)
        token = headers.get(WRITER)
        if token is not None and self.outcomes.get(token, False) is None:
            self.outcomes[token] = after is not None
        self.changed.notify_all()

    def wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Block until ``ready()`` (checked under ``changed``).

        Raises:
            StoreError: not within ``timeout`` seconds, or the consumer failed.
        """
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.failure or not ready():
                if self.failure:
                    raise StoreError(f"kafka: the topic cannot be consumed: {self.failure}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(f"kafka: {what} did not come within {timeout:g} s")
                self.changed.wait(min(left, 0.5))


class _RunWatch(RunWatch):
    """Woken as soon as the view applies a record of its id (``KafkaStore.watch``)."""

    def __init__(self, view: _View, workflow_id: str) -> None:
        self.view, self.workflow_id = view, workflow_id
        with view.changed:
            self.seen = view.runs.get(workflow_id)

    @property
    def pushed(self) -> bool:
        return not self.view.failure

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        view = self.view
        with view.changed:
            while view.runs.get(self.workflow_id) is self.seen and not view.failure:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                view.changed.wait(left)
            self.seen = view.runs.get(self.workflow_id)


class _Connection:
    """One process's admin client, producer and view consumer (and its thread)."""

    def __init__(self, store: KafkaStore) -> None:
        self.store = store
        self.view = _View()
        base = {"bootstrap.servers": store.bootstrap_servers, "logger": _LOGGER,
                "socket.connection.setup.timeout.ms": int(store.connect_timeout * 1000),
                **store.config}
        self.admin = AdminClient(base)
        store.ensure_topic(self.admin)
        # One record per batch: tansu reports a partition's end as its last batch's first
        # offset + 1, so a batch of several records would hide all but its first from reads.
        self.producer = Producer({**base, "acks": "all", "linger.ms": 0,
                                  "batch.num.messages": 1, "message.max.bytes": store.max_bytes})
        consumer = {**base, "group.id": f"beluga-view-{uuid.uuid4().hex}",
                    "enable.auto.commit": False, "enable.partition.eof": True,
                    "auto.offset.reset": "error",  # a log that went back is an error, not a reset
                    "fetch.wait.max.ms": store.fetch_wait_ms, "fetch.queue.backoff.ms": 1,
                    "fetch.error.backoff.ms": 50, "fetch.max.bytes": max(store.max_bytes, 52428800),
                    "receive.message.max.bytes": max(store.max_bytes, 52428800) + 65536}
        self.consumer = _Consumer(consumer)
        self.consumer.assign([TopicPartition(store.topic, 0, 0)])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._consume, name="beluga-kafka-view",
                                       daemon=True)
        self.thread.start()

    def _consume(self) -> None:
        view = self.view
        try:
            while not self.stopping.is_set():
                first = self.consumer.poll(0.2)
                if first is None:
                    continue
                batch = [first, *self.consumer.consume(1000, 0)]
                with view.changed:
                    for msg in batch:
                        error = msg.error()
                        if error is not None:
                            if error.code() == KafkaError._PARTITION_EOF:
                                view.position = max(view.position, msg.offset())
                                view.changed.notify_all()
                            elif error.code() in (KafkaError._AUTO_OFFSET_RESET,
                                                  KafkaError.OFFSET_OUT_OF_RANGE):
                                # The log no longer reaches where this view is.
                                view.failure = (
                                    f"topic {self.store.topic!r} no longer holds the records "
                                    f"this process read: it was deleted or the broker lost its "
                                    f"records; restart the process ({error.str()})")
                                view.changed.notify_all()
                            elif error.fatal() or error.code() in (
                                    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
                                view.failure = str(error)
                            continue
                        key = msg.key()
                        view.apply(msg.offset(), key.decode("utf-8", "replace") if key else "",
                                   msg.value(), dict(msg.headers() or ()))
        except Exception as exc:  # noqa: BLE001 - reported to every caller waiting on the view
            with view.changed:
                view.failure = f"{type(exc).__name__}: {exc}"
                view.changed.notify_all()

    def end_offset(self) -> int:
        """The partition's end offset, from the broker (what a read must have consumed)."""
        partition = TopicPartition(self.store.topic, 0)
        asked = self.admin.list_offsets({partition: OffsetSpec.latest()},
                                        request_timeout=self.store.timeout)
        return asked[partition].result(self.store.timeout).offset

    def produce(self, key: bytes, value: bytes | None, headers: dict[str, bytes]) -> int | None:
        """Produce one record and wait for the broker's acknowledgement; its offset (or None).

        Raises:
            StoreError: the broker refused it or did not acknowledge it in time.
        """
        report: dict[str, Any] = {}

        def delivered(error: KafkaError | None, msg: Any) -> None:
            report["error"], report["offset"] = error, msg.offset() if msg is not None else None

        self.producer.produce(self.store.topic, value=value, key=key, partition=0,
                              headers=list(headers.items()), on_delivery=delivered)
        deadline = time.monotonic() + self.store.timeout
        while "error" not in report and time.monotonic() < deadline:
            self.producer.flush(max(0.0, min(0.5, deadline - time.monotonic())))
        if "error" not in report:
            raise StoreError(f"kafka: {self.store.bootstrap_servers} did not acknowledge a record "
                             f"of topic {self.store.topic!r} within {self.store.timeout:g} s")
        if report["error"] is not None:
            raise StoreError(f"kafka: the broker refused the record of {key.decode()!r}: "
                             f"{report['error'].str()}")
        offset = report["offset"]
        return offset if isinstance(offset, int) and offset >= 0 else None

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        with self.view.changed:  # a thread still waiting on this view is told at once
            self.view.failure = self.view.failure or "the store was closed"
            self.view.changed.notify_all()
        with contextlib.suppress(Exception):
            self.producer.flush(1)
        with contextlib.suppress(Exception):
            self.consumer.close()


class KafkaStore(DocumentStore):
    """Runs in a compacted Kafka topic (confluent-kafka), safe for any number of workers.

    Options:
        bootstrap_servers: ``"host:9092"`` (several separated by commas); default
            ``127.0.0.1:9092``. Env ``KAFKA_BOOTSTRAP_SERVERS`` in the example project.
        topic: the topic, default ``"beluga-workflows"``; created (one partition, compacted) if
            missing. Only its partition 0 is read and written.
        timeout: seconds a produce, an end-offset query or a wait for the view may take before
            ``StoreError`` (default 10).
        connect_timeout: seconds to wait for the broker's first answer (default 5).
        fetch_wait_ms: the longest a fetch waits at the broker for new records (default 100).
            Kafka answers a fetch as soon as a record arrives; a broker that waits it out
            (tansu) makes it the delay before a process sees another's write (``bin/test`` runs
            with 5), and every idle process then fetches 1000 / ``fetch_wait_ms`` times a second.
        min_compaction_lag_ms: for a topic this store creates (default one day); see the module
            docstring for why it must outlast a writer's retry by far.
        max_bytes: the largest record (default 1 MiB, the broker's usual limit): bounds a run's
            input, results and history together.
        config: further librdkafka settings for every client (``security.protocol``, ``sasl.*``).
    """

    backend_name = "kafka"
    # Seconds an id's last record may stay a refused one before ``due`` re-asserts the id.
    repair_after = 10.0
    backend_errors = (KafkaException,)
    unreachable_hint = ("Start a Kafka-protocol broker (bin/test starts tansu), or point "
                        "OPTIONS['bootstrap_servers'] (env KAFKA_BOOTSTRAP_SERVERS) at it.")

    def __init__(self, bootstrap_servers: str = "127.0.0.1:9092", topic: str = "beluga-workflows",
                 timeout: float = 10.0, connect_timeout: float = 5.0, fetch_wait_ms: int = 100,
                 min_compaction_lag_ms: int = 86_400_000, max_bytes: int = 1_048_576,
                 config: dict[str, Any] | None = None, **options: Any) -> None:
        super().__init__(bootstrap_servers=bootstrap_servers, topic=topic, timeout=timeout,
                         connect_timeout=connect_timeout, fetch_wait_ms=fetch_wait_ms, min_compaction_lag_ms=min_compaction_lag_ms,
                         max_bytes=max_bytes, config=config, **options)
        if options:
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"] has unknown option(s) for the kafka store: '
                f"{', '.join(sorted(options))}; it takes bootstrap_servers, topic, timeout, "
                f"connect_timeout, fetch_wait_ms, min_compaction_lag_ms, max_bytes, config")
        if not isinstance(bootstrap_servers, str) or not all(
                _SERVER.match(s.strip()) for s in bootstrap_servers.split(",")):
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"]["bootstrap_servers"] = {bootstrap_servers!r}'
                f" is not a list of host:port (127.0.0.1:9092, several separated by commas)")
        if (not isinstance(topic, str) or not 0 < len(topic) <= 249
                or not all(c.isascii() and (c.isalnum() or c in "._-") for c in topic)):
            raise ImproperlyConfigured(f'the kafka store\'s "topic" = {topic!r} is not a valid '
                                       f"topic name (letters, digits, '.', '_' and '-')")
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout),
                            ("fetch_wait_ms", fetch_wait_ms),
                            ("min_compaction_lag_ms", min_compaction_lag_ms),
                            ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ImproperlyConfigured(f'the kafka store\'s "{name}" must be a positive number')
        if config is not None and not isinstance(config, dict):
            raise ImproperlyConfigured('the kafka store\'s "config" must be a dict')
        self.bootstrap_servers, self.topic, self.timeout = bootstrap_servers, topic, float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.fetch_wait_ms, self.max_bytes = int(fetch_wait_ms), int(max_bytes)
        self.min_compaction_lag_ms = int(min_compaction_lag_ms)
        self.config = dict(config or {})
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()
        self._pid = 0
        self._connection: _Connection | None = None
        self._deleted = False
        self._local = threading.local()

    # -- connection ----------------------------------------------------------------------------

    def _connected(self) -> _Connection:
        if self._lock_pid != os.getpid():
            # A forked child: a parent's thread may have held the lock at the fork, for ever.
            self._lock, self._lock_pid = threading.Lock(), os.getpid()
        with self._lock:
            if self._deleted:
                raise StoreError(f"kafka: topic {self.topic!r} was deleted by this store")
            if self._pid != os.getpid():  # first use, or a forked child: start afresh
                if self._connection is not None:
                    _ABANDONED.append(self._connection)
                self._connection, self._pid = None, os.getpid()
            if self._connection is None:
                self._connection = _Connection(self)
            return self._connection

    def ensure_topic(self, admin: AdminClient) -> None:
        """Create the topic (one partition, compacted) unless the broker has it.

        Raises:
            StoreError: the broker cannot be reached, or refuses to create it.
        """
        try:
            topics = admin.list_topics(timeout=self.connect_timeout).topics
        except KafkaException as exc:
            raise StoreError(f"kafka: cannot reach {self.bootstrap_servers} (topic "
                             f"{self.topic!r}): {exc.args[0].str()}") from exc
        if self.topic in topics:
            return
        new = NewTopic(self.topic, num_partitions=1, replication_factor=-1, config={
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": str(self.min_compaction_lag_ms),
            # Deletes are kept (a few dozen bytes each): versions count them (module docstring).
            "delete.retention.ms": str(_FOREVER_MS)})
        try:
            admin.create_topics([new], operation_timeout=self.timeout)[self.topic].result(
                self.timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StoreError(f"kafka: cannot create topic {self.topic!r} on "
                                 f"{self.bootstrap_servers}: {exc.args[0].str()}") from exc

    def ping(self) -> None:
        """Ask the broker for its topics, connecting (and creating the topic) first if needed.

        Raises:
            StoreError: the broker cannot be reached.
        """
        self.ensure_topic(self._connected().admin)

    def close(self) -> None:
        """Stop the view's thread and close the clients; the next call connects (and rebuilds the
        view) again."""
        if self._lock_pid != os.getpid():
            self._lock, self._lock_pid = threading.Lock(), os.getpid()
        with self._lock:
            ours = self._pid == os.getpid()  # a forked child leaves its parent's clients alone
            connection, self._connection, self._pid = self._connection, None, 0
        if connection is not None and ours:
            connection.close()  # its consumer too when its thread ended on a failure
        elif connection is not None:
            _ABANDONED.append(connection)

    def delete_topic(self) -> None:
        """Delete the whole topic with every run in it (tests and tear-downs)."""
        admin = self._connected().admin
        with self._lock:  # no thread reconnects (a consumer on a deleted topic can crash)
            self._deleted = True
        self.close()
        with contextlib.suppress(KafkaException):
            admin.delete_topics([self.topic], operation_timeout=self.timeout)[self.topic].result(
                self.timeout)

    # -- the view ------------------------------------------------------------------------------

    def _caught_up(self, *, fenced: bool = True) -> _View:
        """The view, once it has consumed every record acknowledged before this call (asking the
        broker for the end offset); ``fenced=False``: the view as it is (enough for a write,
        which compare-and-set checks anyway)."""
        connection = self._connected()
        view = connection.view
        if not fenced:
            return view
        read = view.position  # before asking: the view may move on while the broker answers
        end = self._end_offset(connection)
        # The end a broker reports may trail a record it acknowledged by a moment (tansu); one
        # that stays below what this view read means the log is not the one it read any more.
        settle = time.monotonic() + 2
        while end < read and not view.failure:
            if time.monotonic() > settle:
                with view.changed:
                    view.failure = (f"topic {self.topic!r} ends at offset {end}, before the "
                                    f"{read} records this process read: it was deleted or the "
                                    f"broker lost its records; restart the process")
                    view.changed.notify_all()
                break
            time.sleep(0.01)
            end = self._end_offset(connection)
        view.wait(lambda: view.position >= end, self.timeout, f"the topic's records up to {end}")
        return view

    def _end_offset(self, connection: _Connection) -> int:
        try:
            return connection.end_offset()
        except KafkaException as exc:
            raise StoreError(f"kafka: cannot read the end of topic {self.topic!r} on "
                             f"{self.bootstrap_servers}: {exc.args[0].str()}") from exc

    def _key(self, workflow_id: str) -> bytes:
        try:
            return workflow_id.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"workflow id {workflow_id!r} is not valid Unicode: {exc}",
                                    workflow_id=workflow_id) from None

    def _append(self, workflow_id: str, value: bytes | None, version: int) -> bool:
        """Produce a record based on a read of the id at ``version`` and return whether the log
        made it the winner."""
        connection = self._connected()
        view, token = connection.view, uuid.uuid4().hex.encode()
        headers = record_headers(version, token)
        with view.changed:
            view.outcomes[token] = None
        try:
            offset = connection.produce(self._key(workflow_id), value, headers)
            with view.changed:
                if offset is not None and offset == view.position:  # nothing can lie between
                    view.apply(offset, workflow_id, value, headers)
            view.wait(lambda: view.outcomes[token] is not None, self.timeout,
                      f"the record of {workflow_id!r}")
            won = bool(view.outcomes[token])
        finally:
            with view.changed:
                view.outcomes.pop(token, None)
        if not won:
            self._local.lost = True
        return won

    def _cover(self, workflow_id: str, *, older_than: float = 0.0) -> None:
        """While the id's last record is a refused one (exposed at least ``older_than`` seconds),
        write its current state again after it: rule 1 of the module docstring."""
        for _ in range(self.conflict_attempts):
            self._local.lost = False
            view = self._caught_up()
            with view.changed:
                entry = view.runs.get(workflow_id)
                if (entry is None or not entry.exposed
                        or time.monotonic() - entry.exposed < older_than):
                    return
                value, version = entry.value, entry.version
            self._append(workflow_id, value, version)

    def _mutate(self, workflow_id: str, change: Callable[[Run], tuple[bool, Any]]) -> Any:
        """``DocumentStore._mutate`` first on the view as it is (a write based on a stale read
        loses and is tried again on a fresher one); a change that writes nothing or refuses is
        decided again on a read fenced by the topic's end offset, so no refusal rests on a
        stale read."""
        def writing(run: Run) -> tuple[bool, Any]:
            write, result = change(run)
            if not write:
                raise _Undecided
            return write, result

        self._local.lost = False
        try:
            self._local.unfenced = True
            try:
                return super()._mutate(workflow_id, writing)
            except _Undecided:
                pass
            except WorkflowError as exc:  # a refusal (lease lost too) is decided again; an outage
                if isinstance(exc, StoreError) and not isinstance(exc, ConflictError):
                    raise
            finally:
                self._local.unfenced = False
            return super()._mutate(workflow_id, change)
        finally:
            if getattr(self._local, "lost", False):
                with contextlib.suppress(StoreError, KafkaException):
                    self._cover(workflow_id)

    def repair(self, older_than: float = 10.0) -> int:
        """Re-assert every id whose last record has been a refused one for ``older_than`` seconds
        (its writer died before doing it); ``due`` calls it, so the sweep does. How many."""
        view = self._caught_up()
        with view.changed:
            exposed = list(view.exposed)
        for workflow_id in exposed:
            self._cover(workflow_id, older_than=older_than)
        return len(exposed)

    # -- primitives ----------------------------------------------------------------------------

    def _read(self, workflow_id: str) -> tuple[dict | None, Any]:
        view = self._caught_up(fenced=not getattr(self._local, "unfenced", False))
        with view.changed:
            entry = view.runs.get(workflow_id)
            value, version = (entry.value, entry.version) if entry is not None else (None, 0)
        return (loads(value) if value is not None else None), version

    def _write(self, workflow_id: str, doc: dict, revision: Any, state: WorkflowState) -> bool:
        value = dumps(doc).encode()
        if len(value) > self.max_bytes - 1024:
            raise StoreError(f"kafka: the document of {workflow_id!r} ({len(value)} bytes) is "
                             f"larger than max_bytes ({self.max_bytes})", workflow_id=workflow_id)
        return self._append(workflow_id, value, revision)

    def _remove(self, workflow_id: str) -> None:
        """A tombstone, in compare-and-set rounds like any write (versions count deletes too)."""
        self._local.lost = False
        try:
            for _ in range(self.conflict_attempts):
                doc, version = self._read(workflow_id)
                if doc is None or self._append(workflow_id, None, version):
                    return
            raise ConflictError(f"kafka: {workflow_id!r} changed under {self.conflict_attempts} "
                                f"delete attempts in a row", workflow_id=workflow_id)
        finally:
            if getattr(self._local, "lost", False):
                with contextlib.suppress(StoreError, KafkaException):
                    self._cover(workflow_id)

    def _remove_at(self, workflow_id: str, revision: Any) -> bool:
        """A tombstone if the run is still at ``revision`` (retention); ``False`` if it moved on."""
        self._local.lost = False
        try:
            return bool(self._append(workflow_id, None, revision))
        finally:
            if getattr(self._local, "lost", False):
                with contextlib.suppress(StoreError, KafkaException):
                    self._cover(workflow_id)

    @guarded("due")
    def due(self, now: datetime, limit: int = 500) -> list[str]:
        """Re-assert what dead writers left refused (``repair``), then the due runs of the view."""
        with contextlib.suppress(StoreError):
            self.repair(self.repair_after)
        return super().due(now, limit)

    def watch(self, workflow_id: str) -> RunWatch:
        """A watch the view wakes when a record of ``workflow_id`` is applied (pushed)."""
        return _RunWatch(self._connected().view, workflow_id)

    def _documents(self) -> Iterable[dict]:
        view = self._caught_up()
        with view.changed:
            values = [e.value for e in view.runs.values() if e.value is not None]
        return [loads(v) for v in values]
