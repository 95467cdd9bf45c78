"""The ``inngest`` store: runs behind the HTTP contract of the Go Beluga Inngest provider.

The contract (``workflow/providers/inngest`` of github.com/lookatitude/beluga-ai) is three calls on
one resource, each with ``Authorization: Bearer <event key>`` when a key is set::

    PUT    {base_url}/v1/workflows/{id}   body: the run's JSON document   any 2xx/3xx: saved
    GET    {base_url}/v1/workflows/{id}   200: the document               404: no such run
    DELETE {base_url}/v1/workflows/{id}   2xx/3xx or 404: gone

with the id URL-escaped as one path segment. Any other 4xx/5xx is a ``StoreError`` naming the
call and the status (``"inngest/save: status 500"``).

What it cannot do, and what that means:

- **No compare-and-set.** ``PUT`` overwrites whatever is there. This store serialises its own
  read-modify-writes with a lock, so threads of one process are safe, but two processes (two
  Celery workers, a worker and a web process sending signals) can overwrite each other: a lease
  can be taken twice and a step run twice, a signal can be lost. ``manage.py check`` warns when it
  is configured with a multi-process executor. Use it with the ``local`` executor, in one process.
- **No listing.** The contract has no way to enumerate runs, so ``list``, ``count`` and ``due``
  answer from this process's cache of the runs it has written or read (as the Go provider does):
  runs started by another process are invisible to them, and to the recovery sweep, until this
  process loads them by id. ``supports_listing`` is ``False``.
- **No retention.** For the same reason ``purge_ended`` and ``count_ended`` refuse
  (``supports_purge`` is ``False``): delete ended runs in the service itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from django.core.exceptions import ImproperlyConfigured

from ..engine.errors import StoreError
from ..engine.serialization import dumps
from ..engine.types import WorkflowState
from .document import DocumentStore
from .http_client import ProcessClient

__all__ = ["InngestStore"]


class InngestStore(DocumentStore):
    """Runs behind ``{base_url}/v1/workflows/{id}`` (httpx). See the module docstring for limits.

    Options:
        base_url: the service's base URL, default ``http://localhost:8288`` (the Go default).
            Env ``INNGEST_BASE_URL`` in the example project.
        event_key: sent as ``Authorization: Bearer <event_key>`` when not empty. Env
            ``INNGEST_EVENT_KEY``.
        timeout: seconds per HTTP call before it fails with ``StoreError`` (default 10).
        client: an ``httpx.Client`` to send the calls with (its own base URL is not used); not
            closed by ``close``.
    """

    backend_name = "inngest"
    backend_errors = (httpx.HTTPError,)
    unreachable_hint = ("Start the service, or point OPTIONS['base_url'] (env INNGEST_BASE_URL) "
                        "at it.")
    # PUT overwrites: writes are last-writer-wins across processes.
    supports_compare_and_set = False
    # Listing is this process's cache of the runs it wrote or read.
    supports_listing = False
    # Ended runs written by other processes cannot be found, so retention cannot purge them.
    supports_purge = False

    def __init__(self, base_url: str = "http://localhost:8288", event_key: str = "",
                 timeout: float = 10.0, client: httpx.Client | None = None,
                 **options: Any) -> None:
        super().__init__(base_url=base_url, event_key=event_key, timeout=timeout, **options)
        if options:
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"] has unknown option(s) for the inngest store: '
                f"{', '.join(sorted(options))}; it takes base_url, event_key, timeout, client")
        if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https") \
                or not urlsplit(base_url).netloc:
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"]["base_url"] = {base_url!r} is not an '
                f"http(s) URL")
        if not isinstance(event_key, str):
            raise ImproperlyConfigured('the inngest store\'s "event_key" must be a string')
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ImproperlyConfigured('the inngest store\'s "timeout" must be a positive number')
        self.base_url = base_url.rstrip("/")
        self.event_key = event_key
        self.timeout = timeout
        self._http = ProcessClient(timeout, client)
        self._cache: dict[str, dict] = {}
        self._cache_lock = threading.Lock()

    # -- HTTP ----------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        """The ``httpx.Client`` of this process (a new one after a fork)."""
        return self._http.get()

    def _url(self, workflow_id: str) -> str:
        return f"{self.base_url}/v1/workflows/{quote(workflow_id, safe='')}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.event_key}"} if self.event_key else {}

    def _send(self, call: str, method: str, workflow_id: str, body: bytes | None = None
              ) -> httpx.Response:
        headers = self._headers()
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self.client.request(method, self._url(workflow_id), content=body,
                                           headers=headers)
        except httpx.HTTPError as exc:
            raise StoreError(f"inngest/{call}: request to {self.base_url} failed: "
                             f"{type(exc).__name__} {exc}", workflow_id=workflow_id) from exc
        if response.status_code >= 400 and not (
                response.status_code == 404 and call in ("load", "delete")):
            raise StoreError(f"inngest/{call}: status {response.status_code}",
                             workflow_id=workflow_id)
        return response

    # -- primitives ----------------------------------------------------------------------------

    def _read(self, workflow_id: str) -> tuple[dict | None, Any]:
        response = self._send("load", "GET", workflow_id)
        if response.status_code == 404:
            with self._cache_lock:
                self._cache.pop(workflow_id, None)
            return None, None
        try:
            doc = response.json()
        except ValueError as exc:
            raise StoreError(f"inngest/load: the body is not JSON: {exc}",
                             workflow_id=workflow_id) from exc
        with self._cache_lock:
            self._cache[workflow_id] = doc
        return doc, None

    def _write(self, workflow_id: str, doc: dict, revision: Any, state: WorkflowState) -> bool:
        self._send("save", "PUT", workflow_id, dumps(doc).encode())
        with self._cache_lock:
            self._cache[workflow_id] = doc
        return True  # no compare-and-set: the write always "wins"

    def _remove(self, workflow_id: str) -> None:
        self._send("delete", "DELETE", workflow_id)
        with self._cache_lock:
            self._cache.pop(workflow_id, None)

    def _documents(self) -> Iterable[dict]:
        with self._cache_lock:
            return list(self._cache.values())

    def ping(self) -> None:
        """GET an id nobody uses: a 404 (or any 2xx/3xx) means the service answers.

        Raises:
            StoreError: the request fails or answers another 4xx/5xx.
        """
        # No health endpoint in the contract: a GET of an id nobody uses answers 404 when it is up.
        self._send("load", "GET", "beluga-workflows-check")

    def close(self) -> None:
        """Close this process's ``httpx.Client``; a client given in ``OPTIONS`` is left open."""
        self._http.close()
