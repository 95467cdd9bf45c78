"""The ``nats`` store: one JetStream key/value entry per run, in the Go Beluga layout.

The bucket (default ``beluga_workflows``, the Go provider's default too) is bound if it exists and
created (history 1) if not. Each run is the entry of its (encoded) workflow id; compare-and-set is
JetStream's own: a write names the entry's last revision (``kv.update(key, value, last=rev)``, or
revision 0 / the delete marker's revision for a missing one), and the server refuses it if another
write came first. ``list``, ``count`` and ``due`` read the bucket itself with one ordered watch of
its latest values (no process cache, so every process sees every run); that costs one pass over the
bucket per call, fine for thousands of runs, not for millions.

Keys: NATS allows ``A-Z a-z 0-9 - _ / = .`` (no leading, trailing or doubled ``.``). Ids made of
those keep their key as the Go provider writes it; any other character (and ``=``, the escape
character, and a ``.`` in a bad place) becomes ``=XX`` per UTF-8 byte, so every id has exactly one
key and every key decodes back to its id.

nats-py is asyncio: the store runs one event loop in a daemon thread of its own and offers the
usual blocking, thread-safe methods on top (a process that forks, such as a Celery prefork worker,
gets a fresh loop and connection in the child). Values are limited by the server's max payload
(1 MB by default), which bounds a run's input, results and history together.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import threading
from collections.abc import Coroutine, Iterable
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.api
import nats.js.errors
from django.core.exceptions import ImproperlyConfigured

from ..engine.errors import InvalidInputError, StoreError
from ..engine.serialization import dumps
from ..engine.types import WorkflowState
from .document import DocumentStore

__all__ = ["NatsStore", "decode_key", "encode_key"]

_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_/")
_ESCAPE = re.compile(r"=([0-9A-F]{2})")
_BUCKET = re.compile(r"^[a-zA-Z0-9_-]+$")
# JetStream's error code for a write whose expected last revision is not the entry's.
_WRONG_LAST_SEQUENCE = 10071


def encode_key(workflow_id: str) -> str:
    """The NATS key of ``workflow_id`` (the id itself when it is already a valid key without ``=``).

    Raises:
        InvalidInputError: the id is empty or not encodable as UTF-8 (a lone surrogate).
    """
    if not workflow_id:
        raise InvalidInputError("a workflow id must not be empty")
    try:
        workflow_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"workflow id {workflow_id!r} is not valid Unicode: {exc}") from None
    out = []
    last = len(workflow_id) - 1
    for i, char in enumerate(workflow_id):
        if char in _PLAIN or (char == "." and 0 < i < last and workflow_id[i - 1] != "."
                              and workflow_id[i + 1] != "."):
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def decode_key(key: str) -> str:
    """The workflow id whose key is ``key`` (the inverse of ``encode_key``).

    A key that is no encoding of ours (written by Go with a bare ``=``) is returned unchanged.
    """
    if "=" not in key:
        return key
    data = bytearray()
    i = 0
    try:
        while i < len(key):
            if key[i] == "=":
                if not _ESCAPE.match(key, i):
                    return key
                data.append(int(key[i + 1:i + 3], 16))
                i += 3
            else:
                data.extend(key[i].encode("ascii"))
                i += 1
        return data.decode("utf-8")
    except (UnicodeError, ValueError):
        return key


class _Loop:
    """An asyncio event loop in a daemon thread; ``run`` blocks on a coroutine from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="beluga-nats",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        """Cancel what still runs (its callers get an error at once), then end the thread."""
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


async def _quiet(error: Exception) -> None:
    """nats-py's error callback: connection trouble surfaces as StoreError on the next call."""


class NatsStore(DocumentStore):
    """Runs in a NATS JetStream key/value bucket (nats-py), safe for any number of workers.

    Options:
        url: the server, ``nats://host:4222`` (several separated by commas; ``tls://`` too);
            default ``nats://127.0.0.1:4222``. Env ``NATS_URL`` in the example project.
        bucket: the key/value bucket, default ``"beluga_workflows"``; created if missing.
        timeout: seconds before a request fails with ``StoreError`` (default 5).
        connect_timeout: seconds to wait for the first connection (default 5).
        storage: ``"file"`` (default) or ``"memory"``, for a bucket this store creates.
    """

    backend_name = "nats"
    backend_errors = (nats.errors.Error, TimeoutError, OSError)
    unreachable_hint = ("Start nats-server with JetStream (-js), or point OPTIONS['url'] "
                        "(env NATS_URL) at it.")

    def __init__(self, url: str = "nats://127.0.0.1:4222", bucket: str = "beluga_workflows",
                 timeout: float = 5.0, connect_timeout: float = 5.0, storage: str = "file",
                 **options: Any) -> None:
        super().__init__(url=url, bucket=bucket, timeout=timeout, connect_timeout=connect_timeout,
                         storage=storage, **options)
        if options:
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"] has unknown option(s) for the nats store: '
                f"{', '.join(sorted(options))}; it takes url, bucket, timeout, connect_timeout, "
                f"storage")
        servers = [u.strip() for u in url.split(",")] if isinstance(url, str) else []
        if not servers or any(urlsplit(u).scheme not in ("nats", "tls", "ws", "wss")
                              for u in servers):
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"]["url"] = {url!r} is not a NATS URL '
                f"(nats://host:4222, several separated by commas)")
        if not isinstance(bucket, str) or not _BUCKET.match(bucket):
            raise ImproperlyConfigured(
                f'the nats store\'s "bucket" = {bucket!r} is not a valid bucket name '
                f"(letters, digits, - and _)")
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ImproperlyConfigured(f'the nats store\'s "{name}" must be a positive number')
        if storage not in ("file", "memory"):
            raise ImproperlyConfigured('the nats store\'s "storage" must be "file" or "memory"')
        self.servers, self.bucket = servers, bucket
        self.timeout, self.connect_timeout, self.storage = timeout, connect_timeout, storage
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()
        self._pid = 0
        self._loop: _Loop | None = None
        self._nc = None
        self._kv = None

    # -- connection ----------------------------------------------------------------------------

    def _call(self, make: Any) -> Any:
        """Run ``make(kv)`` (a coroutine factory) on the store's loop, connecting first if needed."""
        loop, kv = self._connection()
        try:
            return loop.run(make(kv), self.timeout + 1)
        except concurrent.futures.CancelledError as exc:
            raise StoreError("nats: the store was closed during the call") from exc

    def _connection(self) -> tuple[_Loop, Any]:
        if self._lock_pid != os.getpid():
            # A forked child: a parent's thread may have held the lock at the fork, for ever.
            self._lock, self._lock_pid = threading.Lock(), os.getpid()
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: start afresh
                self._loop, self._nc, self._kv, self._pid = _Loop(), None, None, os.getpid()
            if self._kv is None:
                try:
                    self._nc, self._kv = self._loop.run(self._connect(),
                                                        self.connect_timeout + self.timeout + 1)
                except (nats.errors.Error, OSError, TimeoutError) as exc:
                    raise StoreError(
                        f"nats: cannot reach {', '.join(self.servers)} (bucket "
                        f"{self.bucket!r}): {type(exc).__name__} {exc}") from exc
            return self._loop, self._kv

    async def _connect(self):
        nc = await asyncio.wait_for(nats.connect(
            servers=self.servers, connect_timeout=self.connect_timeout, error_cb=_quiet,
            max_reconnect_attempts=-1, reconnect_time_wait=0.5), self.connect_timeout)
        try:
            js = nc.jetstream(timeout=self.timeout)
            try:
                kv = await js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                kv = await js.create_key_value(bucket=self.bucket, history=1,
                                               storage=self.storage)
        except BaseException:
            await nc.close()
            raise
        return nc, kv

    def ping(self) -> None:
        """Ask the bucket's status, connecting (and creating the bucket) first if needed.

        Raises:
            StoreError: no connection to the servers could be made.
        """
        self._call(lambda kv: kv.status())

    def close(self) -> None:
        """Close the connection and stop the store's event loop thread; the next call reconnects."""
        with self._lock:
            loop, nc = self._loop, self._nc
            self._loop = self._nc = self._kv = None
            self._pid = 0
        if loop is None or not loop.thread.is_alive():
            return
        if nc is not None:
            with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
                loop.run(nc.close(), self.timeout)
        loop.stop()

    def drop_bucket(self) -> None:
        """Delete the whole bucket with every run in it (tests and tear-downs)."""
        async def drop(kv):
            await self._nc.jetstream(timeout=self.timeout).delete_key_value(self.bucket)

        self._call(drop)
        self.close()

    # -- primitives ----------------------------------------------------------------------------

    def _read(self, workflow_id: str) -> tuple[dict | None, Any]:
        key = encode_key(workflow_id)

        async def get(kv):
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError as exc:
                # A delete marker's revision: writing "after" it is creating the key again.
                return None, exc.entry.revision if exc.entry is not None else 0
            return entry.value, entry.revision

        value, revision = self._call(get)
        return (json.loads(value) if value else None), revision

    def _write(self, workflow_id: str, doc: dict, revision: Any, state: WorkflowState) -> bool:
        key, value = encode_key(workflow_id), dumps(doc).encode()

        async def update(kv):
            try:
                await kv.update(key, value, last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                return False
            return True

        try:
            return self._call(update)
        except nats.errors.MaxPayloadError as exc:
            raise StoreError(
                f"nats: the document of {workflow_id!r} ({len(value)} bytes) is larger than the "
                f"server's max_payload: {exc}", workflow_id=workflow_id) from exc

    def _remove(self, workflow_id: str) -> None:
        key = encode_key(workflow_id)
        self._call(lambda kv: kv.delete(key))

    def _remove_at(self, workflow_id: str, revision: Any) -> bool:
        key = encode_key(workflow_id)

        async def delete(kv):
            try:
                await kv.delete(key, last=revision)
            except nats.js.errors.APIError as exc:
                if exc.err_code == _WRONG_LAST_SEQUENCE:
                    return False
                raise
            return True

        return self._call(delete)

    def _documents(self) -> Iterable[dict]:
        # A pull consumer delivering the last message of every key: it sends only what it is asked
        # for, so its pending count is exact (a push watcher's "caught up" marker can race its
        # first messages). Reads the keys as they were when the consumer was created.
        async def scan(kv):
            js = self._nc.jetstream(timeout=self.timeout)
            stream = f"KV_{self.bucket}"
            config = nats.js.api.ConsumerConfig(
                deliver_policy=nats.js.api.DeliverPolicy.LAST_PER_SUBJECT,
                ack_policy=nats.js.api.AckPolicy.NONE, inactive_threshold=60.0,
                mem_storage=True)
            sub = await js.pull_subscribe(f"$KV.{self.bucket}.>", stream=stream, config=config)
            info = None
            try:
                info = await sub.consumer_info()
                left = info.num_pending
                values: dict[str, bytes] = {}
                while left > 0:
                    for msg in await sub.fetch(batch=min(left, 500), timeout=self.timeout):
                        left -= 1
                        headers = msg.headers or {}
                        if (headers.get("KV-Operation") in ("DEL", "PURGE") or not msg.data
                                or "Nats-Marker-Reason" in headers):
                            values.pop(msg.subject, None)
                        else:
                            values[msg.subject] = msg.data
                return list(values.values())
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
                    if info is not None:
                        await js.delete_consumer(stream, info.name)

        return [json.loads(v) for v in self._call(scan)]
