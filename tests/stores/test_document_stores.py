"""What the document stores promise beyond the shared contract: options, compare-and-set done by
the backend, several processes at once, each backend's wire contract and what each cannot do."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from beluga_workflows.errors import ConflictError, InvalidInputError, StoreError
from beluga_workflows.stores import create_store
from beluga_workflows.stores.base import RunEnd
from beluga_workflows.stores.dapr import DaprStore
from beluga_workflows.stores.go_document import decode_state
from beluga_workflows.stores.inngest import InngestStore
from beluga_workflows.stores.kafka import KafkaStore
from beluga_workflows.stores.nats import NatsStore, decode_key, encode_key
from beluga_workflows.stores.redis import RedisStore
from beluga_workflows.types import Signal, WorkflowFilter, WorkflowStatus

from .backends import NATS_URL, REDIS_URL, make_document_store, unreachable
from .http_servers import DaprServer, InngestServer
from .test_contract import ODD_IDS, T0, at, claimed, event, new_run

REPO = Path(__file__).resolve().parents[2]
CAS_BACKENDS = [pytest.param("redis", marks=pytest.mark.redis),
                pytest.param("nats", marks=pytest.mark.nats), "dapr",
                pytest.param("kafka", marks=pytest.mark.kafka)]


def make(request, kind: str, **options):
    if unreachable(kind):
        raise pytest.UsageError(f"{unreachable(kind)}; run bin/test, which starts it")
    store, clean = make_document_store(kind, **options)
    request.addfinalizer(clean)
    return store


@pytest.fixture(params=CAS_BACKENDS)
def cas_store(request):
    """A document store whose backend does compare-and-set."""
    return make(request, request.param)


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- options ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("backend", "options", "message"), [
    ("redis", {"host": "x"}, "unknown option.*host"),
    ("redis", {"url": "http://127.0.0.1:6379"}, "not a Redis URL"),
    ("redis", {"socket_timeout": 0}, "socket_timeout"),
    ("nats", {"servers": "x"}, "unknown option.*servers"),
    ("nats", {"url": "redis://127.0.0.1"}, "not a NATS URL"),
    ("nats", {"bucket": "has.dots"}, "not a valid bucket name"),
    ("nats", {"storage": "disk"}, "storage"),
    ("inngest", {"key": "k"}, "unknown option.*key"),
    ("inngest", {"base_url": "localhost:8288"}, "not an http"),
    ("inngest", {"timeout": -1}, "timeout"),
    ("dapr", {"store": "s"}, "unknown option.*store"),
    ("dapr", {"base_url": "ftp://x"}, "not an http"),
    ("dapr", {"store_name": ""}, "store_name"),
    ("dapr", {"index_shards": 0}, "index_shards"),
    ("kafka", {"brokers": "x"}, "unknown option.*brokers"),
    ("kafka", {"bootstrap_servers": "kafka://x"}, "not a list of host:port"),
    ("kafka", {"topic": "no spaces"}, "not a valid topic name"),
    ("kafka", {"fetch_wait_ms": 0}, "fetch_wait_ms"),
])
def test_a_bad_option_is_improperly_configured_naming_it(backend, options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        create_store({"BACKEND": backend, "OPTIONS": options})


def test_the_aliases_build_their_stores_without_connecting():
    port = closed_port()
    built = {
        "redis": create_store({"BACKEND": "redis", "OPTIONS": {"url": f"redis://127.0.0.1:{port}/0"}}),
        "nats": create_store({"BACKEND": "nats", "OPTIONS": {"url": f"nats://127.0.0.1:{port}"}}),
        "inngest": create_store({"BACKEND": "inngest", "OPTIONS": {}}),
        "dapr": create_store({"BACKEND": "dapr", "OPTIONS": {}}),
        "kafka": create_store({"BACKEND": "kafka",
                               "OPTIONS": {"bootstrap_servers": f"127.0.0.1:{port}"}}),
    }
    assert [type(s) for s in built.values()] == [RedisStore, NatsStore, InngestStore, DaprStore,
                                                KafkaStore]
    assert built["kafka"].topic == "beluga-workflows"
    assert built["nats"].bucket == "beluga_workflows"
    assert built["dapr"].store_name == "statestore"
    assert built["inngest"].base_url == "http://localhost:8288"
    assert (built["inngest"].supports_compare_and_set, built["inngest"].supports_listing) == (
        False, False)
    assert all(s.supports_compare_and_set and s.supports_listing
               for k, s in built.items() if k != "inngest")
    for store in built.values():
        store.close()


@pytest.mark.parametrize("backend", ["redis", "nats", "inngest", "dapr", "kafka"])
def test_an_unreachable_server_is_a_store_error_naming_the_backend(backend):
    port = closed_port()
    url = {"redis": f"redis://127.0.0.1:{port}/0", "nats": f"nats://127.0.0.1:{port}",
           "kafka": f"127.0.0.1:{port}"}.get(backend, f"http://127.0.0.1:{port}")
    key = {"redis": "url", "nats": "url", "kafka": "bootstrap_servers"}.get(backend, "base_url")
    options = {key: url, "connect_timeout": 1} if backend in ("nats", "kafka") else {key: url}
    store = create_store({"BACKEND": backend, "OPTIONS": options})
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match=rf"^{backend}") as caught:
            store.load("wf-1")
        assert str(port) in str(caught.value) or backend == "redis"
        with pytest.raises(StoreError, match=backend):
            store.ping()
    finally:
        store.close()
    assert time.monotonic() - started < 10


# -- compare-and-set is the backend's ---------------------------------------------------------------

def test_a_write_based_on_a_stale_read_is_refused(cas_store):
    cas_store.create(new_run("wf-cas"))
    doc, revision = cas_store._read("wf-cas")
    claimed(cas_store, "wf-cas", owner="w2")  # another writer moves the run on
    assert cas_store._write("wf-cas", doc, revision, decode_state(doc)[0]) is False
    assert cas_store.load("wf-cas").lease_owner == "w2"
    # A create-only write (the revision of "missing") is refused once the run exists.
    missing_doc, missing_revision = cas_store._read("wf-new")
    assert missing_doc is None
    cas_store.create(new_run("wf-new"))
    assert cas_store._write("wf-new", doc, missing_revision, decode_state(doc)[0]) is False


def test_inngest_accepts_a_stale_write_as_documented(request):
    store = make(request, "inngest")
    store.create(new_run("wf-lww"))
    doc, revision = store._read("wf-lww")
    claimed(store, "wf-lww", owner="w2")
    assert store._write("wf-lww", doc, revision, decode_state(doc)[0]) is True
    assert store.load("wf-lww").lease_owner == ""  # last writer wins: the claim is lost


def test_a_run_deleted_and_started_again_is_a_new_document(cas_store):
    cas_store.create(new_run("wf-again"))
    doc, revision = cas_store._read("wf-again")
    cas_store.delete("wf-again")
    cas_store.create(new_run("wf-again", created=at(10)))
    # The old revision names a document that is gone: no ABA, the write is refused.
    assert cas_store._write("wf-again", doc, revision, decode_state(doc)[0]) is False


@pytest.mark.parametrize("kind", CAS_BACKENDS)
def test_signals_from_several_processes_are_all_kept_in_order(request, kind):
    store = make(request, kind)
    store.create(new_run("shared"))
    options = {k: v for k, v in store.options.items() if v is not None}
    start_at = time.time() + 2
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    senders = [subprocess.Popen(
        [sys.executable, "-m", "tests.stores.signal_sender", kind, json.dumps(options), "shared",
         str(n), "25", str(start_at)], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for n in range(3)]
    given = []
    for proc in senders:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        given += json.loads(out.strip().splitlines()[-1])
    inbox = store.load("shared").signals
    assert len(given) == len(set(given)) == 75
    assert sorted(s.id for s in inbox) == sorted(given)
    assert Counter(s.payload["sender"] for s in inbox) == {0: 25, 1: 25, 2: 25}
    for n in range(3):  # each sender's signals in the order it sent them
        assert [s.payload["n"] for s in inbox if s.payload["sender"] == n] == list(range(25))
    assert store.load("shared").wake_seq == 75


def test_runs_are_listed_from_the_backend_by_every_instance(cas_store):
    other = type(cas_store)(**{k: v for k, v in cas_store.options.items() if v is not None})
    try:
        cas_store.create(new_run("seen-by-all"))
        assert [s.workflow_id for s in other.list()] == ["seen-by-all"]
        assert other.due(at(1)) == ["seen-by-all"]
        other.delete("seen-by-all")
        assert cas_store.list() == [] and cas_store.count() == 0
    finally:
        other.close()


def test_a_forked_child_uses_connections_of_its_own(cas_store):
    """As a Celery prefork pool child does with a store its parent built and used."""
    cas_store.create(new_run("parent"))
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            cas_store.create(new_run("child"))
            code = 0 if cas_store.load("parent") is not None else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the store")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert cas_store.load("child") is not None and cas_store.load("parent") is not None


# -- redis ---------------------------------------------------------------------------------------

@pytest.mark.redis
def test_redis_keeps_its_indexes_with_the_documents(request):
    store = make(request, "redis")
    store.create(new_run("a", created=at(1), workflow_type="t.one"))
    store.create(new_run("b", created=at(2), workflow_type="t.two"))
    state = claimed(store, "a")
    store.append("a", state.run_id, "w1", [event(2)], lease_until=at(30),
                 end=RunEnd(WorkflowStatus.COMPLETED, 1))
    keys = sorted(k.decode() for k in store.client.scan_iter(f"{store.prefix}*"))
    assert all(k.startswith(store.prefix) for k in keys)
    zset = store.client.zrange
    assert zset(f"{store.prefix}status:completed", 0, -1) == [b"a"]
    assert zset(f"{store.prefix}status:running", 0, -1) == [b"b"]
    assert zset(f"{store.prefix}type:t.two", 0, -1) == [b"b"]
    assert zset(f"{store.prefix}wake", 0, -1) == [b"b"]  # an ended run is never due
    assert store.count(WorkflowFilter(status="completed")) == 1
    store.delete("b")
    assert zset(f"{store.prefix}all", 0, -1) == [b"a"]
    assert zset(f"{store.prefix}status:running", 0, -1) == []


@pytest.mark.redis
def test_redis_uses_a_given_client_and_leaves_it_open(request):
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    store = make(request, "redis", client=client)
    store.create(new_run("given"))
    store.close()
    assert client.ping() is True
    client.close()


# -- nats ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("workflow_id", [*ODD_IDS, "a.b", ".lead", "trail.", "a..b", "a=b", "x=3D"])
def test_nats_keys_are_valid_and_decode_back_to_their_id(workflow_id):
    import re

    key = encode_key(workflow_id)
    assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", key) and not key.startswith(".")
    assert not key.endswith(".") and ".." not in key
    assert decode_key(key) == workflow_id
    assert encode_key("orders-2024.1/x") == "orders-2024.1/x"  # a valid key is kept, as Go's


def test_nats_refuses_an_id_it_cannot_encode():
    store = NatsStore(url=NATS_URL)
    with pytest.raises(InvalidInputError):
        store.load("\ud800")
    with pytest.raises(InvalidInputError):
        store.load("")
    store.close()


@pytest.mark.nats
def test_nats_close_ends_its_thread_and_a_later_call_reconnects(request):
    store = make(request, "nats")
    store.create(new_run("wf-n"))
    thread = store._loop.thread
    store.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert store.load("wf-n").workflow_id == "wf-n"


@pytest.mark.nats
def test_nats_is_safe_from_many_threads(request):
    store = make(request, "nats")
    for n in range(8):
        store.create(new_run(f"wf-{n}"))

    def signal(n: int) -> None:
        for k in range(10):
            store.add_signal(f"wf-{n % 8}", Signal("s", k), T0)

    threads = [threading.Thread(target=signal, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(len(s.signals) for s in store.list()) == 160


# -- inngest -------------------------------------------------------------------------------------

def test_inngest_speaks_the_go_providers_http_contract():
    with InngestServer(event_key="sekret") as server:
        store = InngestStore(base_url=server.url, event_key="sekret")
        store.create(new_run("orders/2024 ünï"))
        assert store.load("orders/2024 ünï").workflow_id == "orders/2024 ünï"
        assert store.load("missing") is None  # 404 on GET: missing
        store.delete("orders/2024 ünï")
        store.delete("orders/2024 ünï")  # 404 on DELETE: fine
        store.close()
        methods_paths = [(m, p) for m, p, _, _ in server.requests]
        escaped = "/v1/workflows/orders%2F2024%20%C3%BCn%C3%AF"
        assert ("PUT", escaped) in methods_paths and ("GET", escaped) in methods_paths
        assert ("DELETE", escaped) in methods_paths
        assert all(h.get("Authorization") == "Bearer sekret" for _, _, h, _ in server.requests)
        put_headers, put_body = next((h, b) for m, _, h, b in server.requests if m == "PUT")
        assert put_headers["Content-Type"] == "application/json"
        assert json.loads(put_body)["WorkflowID"] == "orders/2024 ünï"

    with InngestServer() as server:
        store = InngestStore(base_url=server.url)
        store.load("x")
        assert "Authorization" not in server.requests[0][2]  # no key, no header
        store.close()


@pytest.mark.parametrize(("call", "status"), [("save", 500), ("load", 503), ("delete", 500),
                                              ("load", 401), ("save", 400)])
def test_inngest_reports_an_error_status_naming_the_call(call, status):
    with InngestServer() as server:
        store = InngestStore(base_url=server.url)
        store.create(new_run("wf-e"))
        server.fail_next(status, method={"save": "PUT", "load": "GET", "delete": "DELETE"}[call])
        action = {"save": lambda: store.add_signal("wf-e", Signal("s"), T0),
                  "load": lambda: store.load("wf-e"), "delete": lambda: store.delete("wf-e")}
        with pytest.raises(StoreError, match=rf"^inngest/{call}: status {status}$"):
            action[call]()
        store.close()


def test_inngest_uses_an_injected_client_and_its_timeout():
    sent = []
    client = httpx.Client(event_hooks={"request": [sent.append]}, timeout=0.5)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        store = InngestStore(base_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
                             client=client)
        started = time.monotonic()
        with pytest.raises(StoreError, match="inngest/load: request .* failed: ReadTimeout"):
            store.load("wf")
        assert time.monotonic() - started < 5
        store.close()
    assert len(sent) == 1 and not client.is_closed
    client.close()


def test_inngest_lists_only_what_this_process_wrote_or_read(request):
    store = make(request, "inngest")
    other = InngestStore(base_url=store.server.url)
    store.create(new_run("mine"))
    assert other.list() == [] and other.due(at(1)) == []  # the documented limitation
    assert other.load("mine") is not None  # found by id...
    assert [s.workflow_id for s in other.list()] == ["mine"]  # ...and cached from then on
    other.close()


# -- dapr ----------------------------------------------------------------------------------------

def test_dapr_saves_with_etags_and_first_write_concurrency(request):
    store = make(request, "dapr")
    server = store.server
    store.create(new_run("wf-d"))
    store.add_signal("wf-d", Signal("s", 1), T0)
    saves = [json.loads(b) for m, p, _, b in server.requests
             if m == "POST" and p == "/v1.0/state/statestore"]
    documents = [item for save in saves for item in save if item["key"] == "wf-d"]
    assert documents[0].get("etag") is None  # created: first-write without an ETag
    assert all(item["options"] == {"concurrency": "first-write"} for item in documents)
    assert documents[1]["etag"]  # updated: conditional on the ETag read
    value, etag = server.stores["statestore"]["wf-d"]
    assert value["WorkflowID"] == "wf-d" and etag > 1
    # A stale ETag is a 409 from the sidecar, which the store reads as a lost compare-and-set.
    assert store._set("wf-d", value, "1") is False
    assert store._set("wf-d", value, str(etag)) is True
    # No ETag with first-write: insert-only.
    assert store._set("wf-d", value, None) is False
    assert store._set("wf-fresh", value, None) is True


def test_dapr_retries_a_signal_that_lost_its_etag_race(request):
    store = make(request, "dapr")
    server = store.server
    store.create(new_run("wf-race"))
    state = claimed(store, "wf-race")
    raced = []

    def race() -> None:  # before the first save of add_signal lands, another writer saves
        if not raced:
            raced.append(True)
            item = server.stores["statestore"]["wf-race"]
            with server.lock:
                server.stores["statestore"]["wf-race"] = (item[0], server._next_etag())

    server.before_save = race
    accepted = store.add_signal("wf-race", Signal("s", "kept"), T0)
    server.before_save = None
    assert raced and 409 in server.statuses  # the first save lost to the racing writer...
    assert [s.id for s in store.refresh("wf-race", state.run_id, "w1").signals] == [accepted.id]


def test_dapr_keeps_an_index_of_ids_and_refuses_its_reserved_names(request):
    store = make(request, "dapr", index_shards=4)
    for n in range(10):
        store.create(new_run(f"wf-{n}", created=at(n)))
    shards = {k: v for k, (v, _) in store.server.stores["statestore"].items()
              if k.startswith("beluga_workflows.index.")}
    assert sorted(i for ids in shards.values() for i in ids) == [f"wf-{n}" for n in range(10)]
    assert len(shards) <= 4
    store.delete("wf-3")
    assert store.count() == 9 and "wf-3" not in [s.workflow_id for s in store.list()]
    with pytest.raises(InvalidInputError, match="reserved"):
        store.create(new_run("beluga_workflows.index.0"))


def test_dapr_names_the_missing_component_and_sends_the_api_token():
    with DaprServer(stores=("other",), api_token="tok") as server:
        store = DaprStore(base_url=server.url, api_token="tok")
        with pytest.raises(StoreError, match="dapr/get: status 400.*ERR_STATE_STORE_NOT_FOUND"):
            store.ping()
        store.close()
        assert all(h.get("dapr-api-token") == "tok" for _, _, h, _ in server.requests)
        fine = DaprStore(base_url=server.url, api_token="tok", store_name="other")
        fine.ping()
        fine.close()


def test_a_contended_run_is_ended_only_by_its_lease_holder(cas_store):
    """Two workers whose leases overlap after an expiry: only the holder's end is written."""
    cas_store.create(new_run("wf-twice"))
    first = claimed(cas_store, "wf-twice", owner="w1")
    second = claimed(cas_store, "wf-twice", owner="w2", now=at(31))
    cas_store.append("wf-twice", second.run_id, "w2", [event(2)], lease_until=at(90),
                     end=RunEnd(WorkflowStatus.COMPLETED, "w2"))
    with pytest.raises(ConflictError):
        cas_store.append("wf-twice", first.run_id, "w1", [event(2)], lease_until=at(90),
                         end=RunEnd(WorkflowStatus.COMPLETED, "w1"))
    assert cas_store.load("wf-twice").result == "w2"
