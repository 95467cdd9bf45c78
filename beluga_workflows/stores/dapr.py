"""The ``dapr`` store: runs in a Dapr state store, through the sidecar's HTTP state API.

Each run is the state item of its workflow id (the key the Go provider uses), holding the Go-layout
document, in the component ``store_name`` (default ``statestore``)::

    GET    {base_url}/v1.0/state/{store}/{id}        200 + ETag header, 204 when missing
    POST   {base_url}/v1.0/state/{store}             [{"key", "value", "etag", "options"}]
    POST   {base_url}/v1.0/state/{store}/bulk        {"keys": [...]} -> [{"key", "data", "etag"}]
    DELETE {base_url}/v1.0/state/{store}/{id}

Compare-and-set uses Dapr's ETags: an update sends the ETag it read with
``options.concurrency = "first-write"`` and the sidecar answers 409 if the item changed since; a
new run is saved ``first-write`` without an ETag, which Dapr's transactional components
(PostgreSQL, MySQL, Redis, Azure Blob, ...) treat as insert-only. The component must support ETags
(most do; see Dapr's list of state stores) -- one that ignores them makes this store
last-writer-wins.

Listing: Dapr's query API is alpha and only some components have it, so this store keeps its own
index instead, in ordinary state items: ``beluga_workflows.index.0`` .. ``.{index_shards - 1}``,
each the JSON list of the ids hashed to it, updated with the same ETag compare-and-set. A run is
added to its shard before its document is first written and removed after its document is
deleted (both checked again afterwards, so a create racing a delete cannot hide a run); ``list``,
``count`` and ``due`` read the shards, then the documents with bulk gets. That is one pass over all
runs per call: fine for thousands of runs, not for millions. Ids starting with
``beluga_workflows.index.`` are refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from django.core.exceptions import ImproperlyConfigured

from ..engine.errors import InvalidInputError, StoreError
from ..engine.types import WorkflowState
from .document import DocumentStore
from .http_client import ProcessClient

__all__ = ["DaprStore"]

INDEX_PREFIX = "beluga_workflows.index."
_BULK = 100  # keys per bulk get


class DaprStore(DocumentStore):
    """Runs in a Dapr state store component (httpx to the sidecar). See the module docstring.

    Options:
        base_url: the sidecar's HTTP endpoint, default ``http://127.0.0.1:3500``. Env
            ``DAPR_BASE_URL`` in the example project.
        store_name: the state store component's name, default ``"statestore"``. Env
            ``DAPR_STORE_NAME``.
        api_token: sent as ``dapr-api-token`` when not empty (Dapr's ``DAPR_API_TOKEN``).
        timeout: seconds per HTTP call before it fails with ``StoreError`` (default 10).
        index_shards: how many index items the run ids are spread over (default 16); fixed for the
            life of a state store.
        client: an ``httpx.Client`` to send the calls with; not closed by ``close``.
    """

    backend_name = "dapr"
    backend_errors = (httpx.HTTPError,)
    unreachable_hint = ("Start the Dapr sidecar with the state store component, or point "
                        "OPTIONS['base_url'] (env DAPR_BASE_URL) and OPTIONS['store_name'] at them.")

    def __init__(self, base_url: str = "http://127.0.0.1:3500", store_name: str = "statestore",
                 api_token: str = "", timeout: float = 10.0, index_shards: int = 16,
                 client: httpx.Client | None = None, **options: Any) -> None:
        super().__init__(base_url=base_url, store_name=store_name, api_token=api_token,
                         timeout=timeout, index_shards=index_shards, **options)
        if options:
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"] has unknown option(s) for the dapr store: '
                f"{', '.join(sorted(options))}; it takes base_url, store_name, api_token, "
                f"timeout, index_shards, client")
        if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https") \
                or not urlsplit(base_url).netloc:
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"]["base_url"] = {base_url!r} is not an '
                f"http(s) URL (the Dapr sidecar, e.g. http://127.0.0.1:3500)")
        if not isinstance(store_name, str) or not store_name or "/" in store_name:
            raise ImproperlyConfigured(
                f'the dapr store\'s "store_name" = {store_name!r} is not a component name')
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ImproperlyConfigured('the dapr store\'s "timeout" must be a positive number')
        if not isinstance(index_shards, int) or not 1 <= index_shards <= 1024:
            raise ImproperlyConfigured('the dapr store\'s "index_shards" must be an int in 1..1024')
        self.base_url = base_url.rstrip("/")
        self.store_name = store_name
        self.api_token = api_token
        self.timeout = timeout
        self.index_shards = index_shards
        self._http = ProcessClient(timeout, client)

    # -- HTTP ----------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        """The ``httpx.Client`` of this process (a new one after a fork)."""
        return self._http.get()

    def _state_url(self, *parts: str) -> str:
        path = "/".join(quote(p, safe="") for p in (self.store_name, *parts))
        return f"{self.base_url}/v1.0/state/{path}"

    def _send(self, call: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if self.api_token:
            headers["dapr-api-token"] = self.api_token
        try:
            return self.client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreError(f"dapr/{call}: request to the sidecar at {self.base_url} failed: "
                             f"{type(exc).__name__} {exc}") from exc

    @staticmethod
    def _failure(call: str, response: httpx.Response) -> StoreError:
        return StoreError(f"dapr/{call}: status {response.status_code}: "
                          f"{response.text[:300] or 'no body'}")

    @staticmethod
    def _etag_conflict(response: httpx.Response) -> bool:
        # Dapr answers 409 to an ETag mismatch; older sidecars said so in a 500's message.
        text = response.text.lower()
        return response.status_code == 409 or (
            response.status_code >= 400 and "etag" in text and "mismatch" in text)

    def _get(self, key: str) -> tuple[Any, str | None]:
        response = self._send("get", "GET", self._state_url(key))
        if response.status_code == 204 or (response.status_code == 200 and not response.content):
            return None, None
        if response.status_code != 200:
            raise self._failure("get", response)
        return response.json(), response.headers.get("ETag")

    def _set(self, key: str, value: Any, etag: str | None) -> bool:
        """Save ``value`` if the item is still at ``etag`` (``None``: still missing)."""
        item: dict[str, Any] = {"key": key, "value": value,
                                "options": {"concurrency": "first-write"}}
        if etag is not None:
            item["etag"] = etag
        response = self._send("save", "POST", self._state_url(), json=[item])
        if response.status_code in (200, 201, 204):
            return True
        if self._etag_conflict(response):
            return False
        if etag is None and self._get(key)[0] is not None:
            return False  # the insert lost to another writer, whatever status says so
        raise self._failure("save", response)

    def _bulk(self, keys: list[str]) -> Iterator[tuple[str, Any]]:
        for start in range(0, len(keys), _BULK):
            response = self._send("bulk", "POST", self._state_url("bulk"),
                                  json={"keys": keys[start:start + _BULK], "parallelism": 10})
            if response.status_code != 200:
                raise self._failure("bulk", response)
            for item in response.json():
                if item.get("data") is not None:
                    yield item["key"], item["data"]

    # -- the index of ids ----------------------------------------------------------------------

    def _shard(self, workflow_id: str) -> str:
        digest = hashlib.blake2b(workflow_id.encode(), digest_size=8).digest()
        return f"{INDEX_PREFIX}{int.from_bytes(digest, 'big') % self.index_shards}"

    def _index(self, workflow_id: str, present: bool) -> None:
        """Add ``workflow_id`` to (or remove it from) its shard, retrying lost compare-and-sets."""
        key = self._shard(workflow_id)
        for _ in range(self.conflict_attempts):
            ids, etag = self._get(key)
            ids = list(ids or [])
            if (workflow_id in ids) == present:
                return
            ids = sorted({*ids, workflow_id}) if present else [i for i in ids if i != workflow_id]
            if self._set(key, ids, etag):
                return
        raise StoreError(f"dapr: the index item {key!r} kept changing", workflow_id=workflow_id)

    # -- primitives ----------------------------------------------------------------------------

    @staticmethod
    def _check_id(workflow_id: str) -> None:
        if workflow_id.startswith(INDEX_PREFIX):
            raise InvalidInputError(
                f"workflow ids starting with {INDEX_PREFIX!r} are reserved by the dapr store",
                workflow_id=workflow_id)

    def _read(self, workflow_id: str) -> tuple[dict | None, Any]:
        self._check_id(workflow_id)
        return self._get(workflow_id)

    def _write(self, workflow_id: str, doc: dict, revision: Any, state: WorkflowState) -> bool:
        self._check_id(workflow_id)
        if revision is None:
            self._index(workflow_id, True)  # listed before it exists: never an unlisted run
        if not self._set(workflow_id, doc, revision):
            return False
        if revision is None:
            self._index(workflow_id, True)  # again, in case a concurrent delete just removed it
        return True

    def _remove(self, workflow_id: str) -> None:
        self._check_id(workflow_id)
        response = self._send("delete", "DELETE", self._state_url(workflow_id))
        if response.status_code not in (200, 204, 404):
            raise self._failure("delete", response)
        self._index(workflow_id, False)
        if self._get(workflow_id)[0] is not None:
            self._index(workflow_id, True)  # a create slipped in between: keep it listed

    def _remove_at(self, workflow_id: str, revision: Any) -> bool:
        self._check_id(workflow_id)
        response = self._send("delete", "DELETE", self._state_url(workflow_id),
                              headers={"If-Match": str(revision)},
                              params={"concurrency": "first-write"})
        if self._etag_conflict(response):
            return False
        if response.status_code not in (200, 204):
            raise self._failure("delete", response)
        self._index(workflow_id, False)
        if self._get(workflow_id)[0] is not None:
            self._index(workflow_id, True)  # a create slipped in between: keep it listed
        return True

    def _documents(self) -> Iterable[dict]:
        shards = [f"{INDEX_PREFIX}{n}" for n in range(self.index_shards)]
        ids = sorted({i for _, listed in self._bulk(shards) for i in listed})
        return [doc for _, doc in self._bulk(ids)]

    def ping(self) -> None:
        """Ask the sidecar's ``/v1.0/healthz``, then read an index item so a missing component
        fails too.

        Raises:
            StoreError: the sidecar or the state store component does not answer.
        """
        response = self._send("ping", "GET", f"{self.base_url}/v1.0/healthz")
        if response.status_code >= 400:
            raise self._failure("ping", response)
        # The sidecar is up; is the component there? (400 ERR_STATE_STORE_NOT_FOUND if not.)
        self._get(f"{INDEX_PREFIX}0")

    def close(self) -> None:
        """Close this process's ``httpx.Client``; a client given in ``OPTIONS`` is left open."""
        self._http.close()
