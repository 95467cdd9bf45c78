"""One ``httpx.Client`` per process for the HTTP-backed stores (dapr, inngest)."""

from __future__ import annotations

import os
import threading

import httpx

__all__ = ["ProcessClient"]


class ProcessClient:
    """Hands out an ``httpx.Client``, a new one in each forked child.

    A client given by the caller is used as it is and never closed here.
    """

    def __init__(self, timeout: float, client: httpx.Client | None = None) -> None:
        self.timeout = timeout
        self._given = client
        self._client = client
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        """The client to send with: the given one, or this process's own (made on first use)."""
        if self._pid != os.getpid():
            # A forked child: a parent's thread may have held the lock at the fork, for ever.
            self._lock = threading.Lock()
        with self._lock:
            if self._given is None and (self._client is None or self._pid != os.getpid()):
                # First use, or a forked child: never share the parent's pooled sockets.
                self._client, self._pid = httpx.Client(timeout=self.timeout), os.getpid()
            return self._client

    def close(self) -> None:
        """Close the client made here, if any (a given one is left open)."""
        with self._lock:
            if self._given is None and self._client is not None:
                self._client.close()
                self._client = None
