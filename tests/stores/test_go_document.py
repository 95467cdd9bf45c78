"""The Go Beluga document layout: what Go wrote we read, what we write Go can read.

The fixtures in ``go_documents/`` are documents as the Go package's ``encoding/json`` marshals its
``WorkflowState`` (Go field names, RFC 3339 times with up to nanoseconds and any offset,
``Duration`` in nanoseconds, ``Error`` as a string, no ``"beluga"`` key). Each document store gets
them written straight into its backend with the backend's own client, as a Go service would, and
must read them back; and what each store writes must have exactly the Go shape.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from beluga_workflows.errors import StoreError
from beluga_workflows.stores.go_document import decode_state, encode_state, format_time, parse_time
from beluga_workflows.types import EventType, Signal, WorkflowFilter, WorkflowStatus

from .backends import make_document_store, unreachable
from .test_contract import T0, at, event, new_run

FIXTURES = Path(__file__).parent / "go_documents"
BACKENDS = [pytest.param("redis", marks=pytest.mark.redis),
            pytest.param("nats", marks=pytest.mark.nats), "inngest", "dapr",
            pytest.param("kafka", marks=pytest.mark.kafka)]
GO_STATE_FIELDS = {"WorkflowID": str, "RunID": str, "Status": str, "Input": object,
                   "Result": object, "Error": str, "History": list, "CreatedAt": str,
                   "UpdatedAt": str}
GO_EVENT_FIELDS = {"ID": int, "Type": str, "Timestamp": str, "ActivityName": str, "Input": object,
                   "Result": object, "Error": str, "SignalName": str, "SignalPayload": object,
                   "Duration": int}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


def go_fixture(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text()


@pytest.fixture(params=BACKENDS)
def store(request):
    if unreachable(request.param):
        raise pytest.UsageError(f"{unreachable(request.param)}; run bin/test, which starts it")
    instance, clean = make_document_store(request.param)
    yield instance
    clean()


def put_raw(store, workflow_id: str, text: str) -> None:
    """Write ``text`` into the backend with its own client, as a Go service would."""
    kind = store.backend_name
    if kind == "redis":
        # Go has no Redis provider: the document goes in our hash, indexed as any other.
        store._write(workflow_id, json.loads(text), "", decode_state(json.loads(text))[0])
    elif kind == "nats":
        from beluga_workflows.stores.nats import encode_key

        key = encode_key(workflow_id)
        store._call(lambda kv: kv.put(key, text.encode()))
    elif kind == "inngest":
        httpx.put(store._url(workflow_id), content=text.encode(),
                  headers={"Content-Type": "application/json"}).raise_for_status()
    elif kind == "dapr":
        httpx.post(store._state_url(), json=[{"key": workflow_id, "value": json.loads(text)}]
                   ).raise_for_status()
    elif kind == "kafka":
        # Go's write-behind cache: the bare document keyed by id, none of our headers.
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": store.bootstrap_servers})
        producer.produce(store.topic, key=workflow_id.encode(), value=text.encode(), partition=0)
        assert producer.flush(10) == 0


def get_raw(store, workflow_id: str) -> dict:
    """The document as the backend holds it, read with the backend's own client."""
    kind = store.backend_name
    if kind == "redis":
        return json.loads(store.client.hget(store._key(workflow_id), "doc"))
    if kind == "nats":
        from beluga_workflows.stores.nats import encode_key

        key = encode_key(workflow_id)
        return json.loads(store._call(lambda kv: kv.get(key)).value)
    if kind == "inngest":
        return httpx.get(store._url(workflow_id)).json()
    if kind == "kafka":  # the id's last record in the topic
        from .test_kafka_store import raw_records

        return json.loads([r for r in raw_records(store) if r[1] == workflow_id][-1][2])
    return httpx.get(store._state_url(workflow_id)).json()


def assert_go_shape(doc: dict) -> None:
    """What Go's ``json.Unmarshal`` into ``workflow.WorkflowState`` needs, key by key."""
    assert set(doc) == set(GO_STATE_FIELDS) | {"beluga"}
    for name, kind in GO_STATE_FIELDS.items():
        assert isinstance(doc[name], kind), (name, doc[name])
    assert doc["Status"] in {"running", "completed", "failed", "canceled", "timed_out"}
    for name in ("CreatedAt", "UpdatedAt"):
        assert RFC3339.match(doc[name]), doc[name]
    for item in doc["History"]:
        assert set(item) - {"beluga"} == set(GO_EVENT_FIELDS), item
        for name, kind in GO_EVENT_FIELDS.items():
            assert isinstance(item[name], kind) and not isinstance(item[name], bool), (name, item)
        assert RFC3339.match(item["Timestamp"]), item["Timestamp"]


# -- through every document store ---------------------------------------------------------------

def test_a_completed_run_written_by_go_is_read_back(store):
    put_raw(store, "go-order-42", go_fixture("completed"))
    state = store.load("go-order-42")
    assert state.status is WorkflowStatus.COMPLETED and state.run_id.startswith("0b6f6c1e")
    assert state.input == {"order": 42, "items": ["book", "pen"]}
    assert state.result == {"receipt": "r-42", "total": 19.5} and state.error is None
    assert state.created_at == datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert state.updated_at == datetime(2025, 3, 1, 10, 31, 0, 500000, tzinfo=timezone.utc)
    assert [e.id for e in state.history] == [1, 2, 3, 4, 5, 6]
    assert [e.type for e in state.history] == [
        EventType.WORKFLOW_STARTED, EventType.ACTIVITY_STARTED, EventType.ACTIVITY_COMPLETED,
        EventType.SIGNAL_RECEIVED, EventType.TIMER_FIRED, EventType.WORKFLOW_COMPLETED]
    charged = state.history[2]
    assert (charged.activity_name, charged.result, charged.duration) == ("charge", {"receipt": "r-42"}, 1.5)
    signal = state.history[3]
    assert (signal.signal_name, signal.signal_payload) == ("approval", {"by": "ann"})
    assert signal.timestamp == datetime(2025, 3, 1, 10, 30, tzinfo=timezone.utc)  # from +02:00
    assert state.history[4].duration == 60.0 and state.history[0].duration is None
    # Nothing of ours in a Go run: no lease, no inbox, nothing due.
    assert (state.lease_owner, state.signals, state.wake_at, state.workflow_type) == ("", [], None, "")
    assert store.due(datetime(2100, 1, 1, tzinfo=timezone.utc)) == []


def test_a_failed_run_written_by_go_keeps_its_error_messages(store):
    put_raw(store, "go-report-7", go_fixture("failed"))
    state = store.load("go-report-7")
    assert state.status is WorkflowStatus.FAILED
    assert state.error["message"] == 'activity "render" failed after 3 attempts: template missing'
    assert state.history[1].error["message"] == "template missing"
    assert state.history[1].duration == 0.0025


def test_a_running_go_run_with_no_history_and_a_zero_time_is_read(store):
    put_raw(store, "go-chat-1", go_fixture("running"))
    state = store.load("go-chat-1")
    assert state.is_open and state.history == [] and state.input is None
    assert state.updated_at == state.created_at == datetime(2025, 3, 3, 9, tzinfo=timezone.utc)


def test_a_signal_to_a_go_run_keeps_it_readable_by_go(store):
    put_raw(store, "go-chat-1", go_fixture("running"))
    accepted = store.add_signal("go-chat-1", Signal("msg", {"text": "hi"}), T0)
    doc = get_raw(store, "go-chat-1")
    assert_go_shape(doc)
    assert doc["WorkflowID"] == "go-chat-1" and doc["RunID"] == "run-1"
    assert doc["beluga"]["signals"][0]["id"] == accepted.id
    assert store.load("go-chat-1").signals[0].payload == {"text": "hi"}


def test_a_document_we_write_has_the_go_field_names(store):
    state = new_run("ours-1", input={"n": 1}, deadline=at(3600))
    state.history += [
        event(2, EventType.ACTIVITY_STARTED, activity_name="charge", input={"n": 1}, attempt=1),
        event(3, EventType.ACTIVITY_FAILED, activity_name="charge", attempt=1, duration=0.25,
              error={"type": "ValueError", "message": "boom", "traceback": "tb"}, fire_at=at(9)),
        event(4, EventType.TIMER_FIRED, activity_name="sleep", duration=60.0),
        event(5, EventType.WORKFLOW_FAILED, error={"type": "ActivityError", "message": "gave up",
                                                   "traceback": "tb"}),
    ]
    state.status = WorkflowStatus.FAILED
    state.error = {"type": "ActivityError", "message": "gave up", "traceback": "tb"}
    state.signals = [Signal("approval", {"by": "ann"}, sent_at=at(5))]
    store.save(state)

    doc = get_raw(store, "ours-1")
    assert_go_shape(doc)
    assert (doc["WorkflowID"], doc["RunID"], doc["Status"]) == ("ours-1", state.run_id, "failed")
    assert doc["Error"] == "ActivityError: gave up"
    assert doc["CreatedAt"] == "2030-01-01T12:00:00Z"
    failed = doc["History"][2]
    assert failed["Duration"] == 250_000_000 and failed["Error"] == "ValueError: boom"
    assert failed["beluga"] == {"op": 3, "attempt": 1, "fire_at": "2030-01-01T12:00:09Z",
                                "error": state.history[2].error}
    assert doc["History"][3]["Duration"] == 60_000_000_000
    assert doc["beluga"]["workflow_type"] == "tests.flow"
    assert doc["beluga"]["deadline"] == "2030-01-01T13:00:00Z"


def test_go_runs_are_listed_where_the_backend_lists_itself(store):
    put_raw(store, "go-order-42", go_fixture("completed"))
    put_raw(store, "go-report-7", go_fixture("failed"))
    store.create(new_run("ours-2"))
    listed = [s.workflow_id for s in store.list()]
    if store.backend_name in ("nats", "redis", "kafka"):
        assert sorted(listed) == ["go-order-42", "go-report-7", "ours-2"]
        assert [s.workflow_id for s in store.list(WorkflowFilter(status="failed"))] == ["go-report-7"]
    else:
        # dapr lists from its own index (Go does not maintain it) and inngest from this
        # process's cache: a run written by Go is found by id, not by listing.
        assert listed == ["ours-2"]
        assert store.load("go-report-7") is not None


# -- the codec alone ------------------------------------------------------------------------------

def test_times_are_written_as_go_writes_them_and_read_in_any_rfc3339_form():
    assert format_time(datetime(2030, 1, 1, 12, tzinfo=timezone.utc)) == "2030-01-01T12:00:00Z"
    assert format_time(datetime(2030, 1, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)) == \
        "2030-01-01T12:00:00.25Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2030, 1, 1, 14, tzinfo=plus_two)) == "2030-01-01T12:00:00Z"
    assert parse_time("2030-01-01T12:00:00.123456789Z") == datetime(
        2030, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert parse_time("2030-01-01T14:00:00+02:00") == datetime(2030, 1, 1, 12, tzinfo=timezone.utc)
    assert parse_time("0001-01-01T00:00:00Z") is None and parse_time(None) is None
    assert parse_time("") is None


@pytest.mark.parametrize("seconds", [None, 0.0, 0.25, 1 / 3, 86400 * 7, 1e-9])
def test_durations_are_nanoseconds_for_go_and_exact_for_us(seconds):
    state = new_run("d")
    state.history.append(event(2, EventType.TIMER_FIRED, duration=seconds))
    doc = json.loads(json.dumps(encode_state(state)))
    assert isinstance(doc["History"][1]["Duration"], int)
    assert doc["History"][1]["Duration"] == (round(seconds * 1e9) if seconds else 0)
    assert decode_state(doc)[0].history[1].duration == seconds


def test_keys_are_matched_without_regard_to_case_as_go_does():
    doc = json.loads(go_fixture("failed"))
    doc = {k.lower(): v for k, v in doc.items()}
    doc["history"] = [{k.upper(): v for k, v in e.items()} for e in doc["history"]]
    state, _ = decode_state(doc)
    assert state.workflow_id == "go-report-7" and state.status is WorkflowStatus.FAILED
    assert [e.id for e in state.history] == [1, 2, 3]


def test_a_document_that_is_no_run_is_a_store_error(store):
    if store.backend_name == "redis":
        store.client.hset(store._key("junk"), mapping={"doc": '{"Status": "nonsense"}', "rev": "1"})
    else:
        put_raw(store, "junk", '{"WorkflowID": "junk", "Status": "nonsense"}')
    with pytest.raises(StoreError, match="junk.*not a workflow run"):
        store.load("junk")
