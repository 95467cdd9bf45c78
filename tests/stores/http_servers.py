"""Small real HTTP servers that follow the contracts the ``inngest`` and ``dapr`` stores speak.

Both run a ``ThreadingHTTPServer`` on 127.0.0.1 (a free port), keep their data in memory, and can be
told to fail the next requests, so the tests see what a real server would send over a real socket.

- ``InngestServer``: the Go Beluga Inngest provider's contract, ``PUT/GET/DELETE
  /v1/workflows/{id}`` (the id URL-escaped in one path segment), JSON bodies, ``Authorization:
  Bearer <event key>`` checked when the server has a key (401 otherwise), 404 for a missing id.
- ``DaprServer``: the Dapr sidecar's state API (docs.dapr.io/reference/api/state_api):
  ``POST /v1.0/state/{store}`` (an array of items; ``etag`` must match the current one, else 409;
  ``options.concurrency = "first-write"`` without an ETag inserts only, else 409, as Dapr's
  PostgreSQL, MySQL, Redis and Azure Blob components do), ``GET /v1.0/state/{store}/{key}`` (200
  with an ``ETag`` header, 204 when missing), ``POST /v1.0/state/{store}/bulk``, ``DELETE
  /v1.0/state/{store}/{key}`` (``If-Match`` checked), ``GET /v1.0/healthz``; an unknown store
  name is a 400 ``ERR_STATE_STORE_NOT_FOUND``; ``dapr-api-token`` checked when the server has one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real servers
    # One write per response, sent at once (no Nagle + delayed-ACK stall of 40 ms per call).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        server: _Server = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with server.lock:
            server.requests.append((self.command, self.path, dict(self.headers), body))
            failure = next((f for f in server.failures if f[0] in (None, self.command)), None)
            if failure is not None:
                server.failures.remove(failure)
        if failure is not None:
            status, payload, headers = failure[1], {"error": "injected failure"}, {}
        else:
            status, payload, headers = server.handle(self.command, self.path, self.headers, body)
        with server.lock:
            server.statuses.append(status)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = _serve


class _Server:
    """A threaded HTTP server on a free local port; ``handle`` answers each request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict, bytes]] = []  # method, path, headers, body
        self.statuses: list[int] = []  # what each request was answered
        self.failures: list[tuple[str | None, int]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> _Server:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def fail_next(self, *statuses: int, method: str | None = None) -> None:
        """Answer the next requests (of ``method``, or any) with these statuses."""
        with self.lock:
            self.failures.extend((method, status) for status in statuses)

    def handle(self, method: str, path: str, headers, body: bytes
               ) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InngestServer(_Server):
    """``/v1/workflows/{id}``: documents by workflow id, in memory."""

    def __init__(self, event_key: str = "") -> None:
        super().__init__()
        self.event_key = event_key
        self.documents: dict[str, Any] = {}

    def handle(self, method, path, headers, body):
        if self.event_key and headers.get("Authorization") != f"Bearer {self.event_key}":
            return 401, {"error": "unauthorized"}, {}
        parts = urlsplit(path).path.split("/")
        if len(parts) != 4 or parts[:3] != ["", "v1", "workflows"] or not parts[3]:
            return 404, {"error": "no such route"}, {}
        workflow_id = unquote(parts[3])
        with self.lock:
            if method == "PUT":
                try:
                    self.documents[workflow_id] = json.loads(body)
                except ValueError:
                    return 400, {"error": "malformed JSON"}, {}
                return 200, {"status": "ok"}, {}
            if method == "GET":
                if workflow_id not in self.documents:
                    return 404, {"error": "not found"}, {}
                return 200, self.documents[workflow_id], {}
            if method == "DELETE":
                if self.documents.pop(workflow_id, None) is None:
                    return 404, {"error": "not found"}, {}
                return 200, {"status": "deleted"}, {}
        return 405, {"error": "method not allowed"}, {}


class DaprServer(_Server):
    """A Dapr sidecar's state API over in-memory state stores (``statestore`` by default)."""

    def __init__(self, stores: tuple[str, ...] = ("statestore",), api_token: str = "") -> None:
        super().__init__()
        self.api_token = api_token
        self.stores: dict[str, dict[str, tuple[Any, int]]] = {name: {} for name in stores}
        self._etags = 0
        # Called (outside the lock) before each save is applied: lets a test race a write in.
        self.before_save: Callable[[], None] | None = None

    def _next_etag(self) -> int:
        self._etags += 1
        return self._etags

    @staticmethod
    def _error(status: int, code: str, message: str) -> tuple[int, Any, dict]:
        return status, {"errorCode": code, "message": message}, {}

    def handle(self, method, path, headers, body):
        if self.api_token and headers.get("dapr-api-token") != self.api_token:
            return self._error(401, "ERR_UNAUTHORIZED", "invalid api token")
        parts = urlsplit(path).path.split("/")
        if parts[:3] == ["", "v1.0", "healthz"]:
            return 204, None, {}
        if len(parts) < 4 or parts[:3] != ["", "v1.0", "state"]:
            return 404, None, {}
        store = self.stores.get(unquote(parts[3]))
        if store is None:
            return self._error(400, "ERR_STATE_STORE_NOT_FOUND",
                               f"state store {unquote(parts[3])} is not found")
        rest = parts[4:]
        try:
            if method == "POST" and not rest:
                return self._save(store, json.loads(body))
            if method in ("POST", "PUT") and rest == ["bulk"]:
                return self._bulk(store, json.loads(body))
        except (ValueError, KeyError, TypeError) as exc:
            return self._error(400, "ERR_MALFORMED_REQUEST", str(exc))
        if len(rest) == 1 and rest[0]:
            key = unquote(rest[0])
            if method == "GET":
                with self.lock:
                    item = store.get(key)
                if item is None:
                    return 204, None, {}
                return 200, item[0], {"ETag": str(item[1])}
            if method == "DELETE":
                with self.lock:
                    expected = headers.get("If-Match")
                    if expected and (key not in store or str(store[key][1]) != expected):
                        return self._error(409, "ERR_STATE_DELETE", "possible etag mismatch")
                    store.pop(key, None)
                return 204, None, {}
        return 405, None, {}

    def _save(self, store, items: list[dict]):
        if self.before_save is not None:
            self.before_save()
        with self.lock:
            for item in items:
                key, etag = item["key"], item.get("etag")
                first_write = (item.get("options") or {}).get("concurrency") == "first-write"
                current = store.get(key)
                if etag not in (None, ""):
                    if current is None or str(current[1]) != str(etag):
                        return self._error(409, "ERR_STATE_SAVE",
                                           f"failed saving state in state store: possible etag "
                                           f"mismatch for key {key}")
                elif first_write and current is not None:
                    return self._error(409, "ERR_STATE_SAVE",
                                       f"failed saving state: key {key} already exists")
            for item in items:
                store[item["key"]] = (item["value"], self._next_etag())
        return 204, None, {}

    def _bulk(self, store, request: dict):
        with self.lock:
            answer = []
            for key in request["keys"]:
                item = store.get(key)
                answer.append({"key": key} if item is None
                              else {"key": key, "data": item[0], "etag": str(item[1])})
        return 200, answer, {}
