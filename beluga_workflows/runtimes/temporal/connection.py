"""One Temporal client per (target, namespace) in a process, driven from synchronous code.

The SDK's client is asyncio-only; the executor, the store, the admin and the commands are
synchronous. A ``TemporalConnection`` owns an event loop on a daemon thread and connects the client
on it the first time it is used; ``run(coroutine_function)`` runs one call there and waits for it.
The executor and the store of the same server share one connection (``connection_for``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured

from ...engine.errors import StoreError

__all__ = ["TemporalConnection", "connection_for", "require_temporal"]

T = TypeVar("T")

# How long a call waits for the server before it is reported unreachable.
DEFAULT_RPC_TIMEOUT = 10.0


def require_temporal() -> None:
    """Import the SDK, or say which extra brings it.

    Raises:
        ImproperlyConfigured: ``temporalio`` is not installed.
    """
    try:
        import temporalio.client  # noqa: F401
    except ImportError as exc:
        raise ImproperlyConfigured(
            "the temporal executor and store need the temporalio package: "
            "pip install 'beluga-workflows[temporal]'") from exc


class TemporalConnection:
    """A lazily connected ``temporalio.client.Client`` on a private event loop thread.

    Args:
        target: ``host:port`` of the Temporal frontend.
        namespace: the Temporal namespace of every call.
        rpc_timeout: seconds a call may take before it fails with ``StoreError``.
    """

    def __init__(self, target: str, namespace: str = "default", *,
                 rpc_timeout: float = DEFAULT_RPC_TIMEOUT) -> None:
        require_temporal()
        self.target = target
        self.namespace = namespace
        self.rpc_timeout = float(rpc_timeout)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None

    def __repr__(self) -> str:
        return f"<TemporalConnection {self.target} namespace={self.namespace}>"

    @property
    def timeout(self) -> timedelta:
        """The RPC deadline of each call, as the SDK takes it."""
        return timedelta(seconds=self.rpc_timeout)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="beluga-temporal-client",
                                          daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    async def client(self) -> Any:
        """The connected client (connecting it the first time; on the connection's loop).

        Raises:
            StoreError: the server cannot be reached.
        """
        if self._client is None:
            from temporalio.client import Client

            try:
                self._client = await asyncio.wait_for(
                    Client.connect(self.target, namespace=self.namespace), self.rpc_timeout)
            except Exception as exc:  # noqa: BLE001 - any failure to connect is an outage to us
                raise self.unreachable(exc) from exc
        return self._client

    def unreachable(self, exc: BaseException) -> StoreError:
        """The error of a call that could not reach the server."""
        return StoreError(f"the Temporal server at {self.target} (namespace {self.namespace!r}) "
                          f"cannot be reached: {exc or type(exc).__name__}")

    def run(self, call: Callable[[Any], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``call(client)`` on the connection's loop and return its result (or raise its error).

        ``timeout``: seconds to wait for it (``None``: the connection's RPC timeout; a call that
        waits on purpose, like a run's result, passes its own).
        """
        async def invoke() -> T:
            return await call(await self.client())

        future = asyncio.run_coroutine_threadsafe(invoke(), self._ensure_loop())
        return future.result(None if timeout is None else timeout)

    def close(self) -> None:
        """Stop the loop thread (the client's connection goes with it)."""
        with self._lock:
            loop, self._loop, self._client = self._loop, None, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)


_connections: dict[tuple[str, str], TemporalConnection] = {}
_connections_lock = threading.Lock()


def connection_for(target: str = "127.0.0.1:7233", namespace: str = "default") -> TemporalConnection:
    """The process's connection to ``target``/``namespace`` (made on first use)."""
    if not isinstance(target, str) or not target:
        raise ImproperlyConfigured("the Temporal target must be a non-empty 'host:port' string")
    if not isinstance(namespace, str) or not namespace:
        raise ImproperlyConfigured("the Temporal namespace must be a non-empty string")
    with _connections_lock:
        connection = _connections.get((target, namespace))
        if connection is None:
            connection = _connections[(target, namespace)] = TemporalConnection(target, namespace)
        return connection
