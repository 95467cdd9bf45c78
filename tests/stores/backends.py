"""How the tests build the document stores on real servers, each test in a namespace of its own.

- ``redis``: the server of ``BELUGA_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/14``), keys
  under a fresh ``key_prefix`` deleted afterwards;
- ``nats``: the server of ``BELUGA_TEST_NATS_URL`` (default ``nats://127.0.0.1:4222``, JetStream
  on), a fresh bucket dropped afterwards;
- ``kafka``: the broker of ``BELUGA_TEST_KAFKA_SERVERS`` (default ``127.0.0.1:9092``, the
  ``tansu`` broker ``bin/test`` starts), a fresh topic deleted afterwards;
- ``inngest`` / ``dapr``: a fresh ``InngestServer`` / ``DaprServer`` (``http_servers.py``) on a
  free local port, stopped afterwards.

A server that cannot be reached stops the run with the reason (``bin/test`` starts them): a
missing server is never a skipped test.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable

REDIS_URL = os.environ.get("BELUGA_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
NATS_URL = os.environ.get("BELUGA_TEST_NATS_URL", "nats://127.0.0.1:4222")
KAFKA_SERVERS = os.environ.get("BELUGA_TEST_KAFKA_SERVERS", "127.0.0.1:9092")
# tansu answers a fetch only once its wait is over: short waits, so processes see writes soon.
KAFKA_FETCH_WAIT_MS = 5
DOCUMENT_BACKENDS = ("redis", "nats", "inngest", "dapr", "kafka")


@functools.cache
def unreachable(kind: str) -> str:
    """Why the server a backend's tests need cannot be used ('' when it can)."""
    from beluga_workflows.errors import StoreError

    if kind not in ("redis", "nats", "kafka"):
        return ""  # the HTTP servers are started by the tests themselves
    store = None
    try:
        store = _new(kind, namespace=f"beluga_test_ping_{os.getpid()}")
        store.ping()
    except StoreError as exc:
        return f"{kind} tests: {exc}"
    finally:
        if store is not None:
            if kind in ("nats", "kafka"):
                try:
                    (store.drop_bucket if kind == "nats" else store.delete_topic)()
                except StoreError:
                    store.close()
            else:
                store.close()
    return ""


def _new(kind: str, namespace: str, **options):
    if kind == "redis":
        from beluga_workflows.stores.redis import RedisStore

        return RedisStore(url=REDIS_URL, key_prefix=f"{namespace}:", **options)
    if kind == "nats":
        from beluga_workflows.stores.nats import NatsStore

        return NatsStore(url=NATS_URL, bucket=namespace, **options)
    if kind == "kafka":
        from beluga_workflows.stores.kafka import KafkaStore

        options.setdefault("connect_timeout", 3)
        options.setdefault("fetch_wait_ms", KAFKA_FETCH_WAIT_MS)
        return KafkaStore(bootstrap_servers=KAFKA_SERVERS, topic=namespace, **options)
    raise LookupError(kind)


def make_document_store(kind: str, **options) -> tuple[object, Callable[[], None]]:
    """A new, empty store of ``kind`` and the function that removes every trace of it."""
    namespace = f"beluga_test_{uuid.uuid4().hex[:12]}"
    if kind == "redis":
        store = _new(kind, namespace, **options)

        def clean() -> None:
            keys = list(store.client.scan_iter(f"{namespace}:*", count=1000))
            for start in range(0, len(keys), 500):
                store.client.delete(*keys[start:start + 500])
            store.close()

        return store, clean
    if kind == "nats":
        store = _new(kind, namespace, **options)
        return store, store.drop_bucket
    if kind == "kafka":
        store = _new(kind, namespace, **options)
        return store, store.delete_topic
    if kind == "inngest":
        from beluga_workflows.stores.inngest import InngestStore

        from .http_servers import InngestServer

        server = InngestServer().start()
        store = InngestStore(base_url=server.url, **options)
        store.server = server
        return store, lambda: (store.close(), server.stop())
    if kind == "dapr":
        from beluga_workflows.stores.dapr import DaprStore

        from .http_servers import DaprServer

        server = DaprServer().start()
        store = DaprStore(base_url=server.url, **options)
        store.server = server
        return store, lambda: (store.close(), server.stop())
    raise LookupError(kind)
