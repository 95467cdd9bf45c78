"""The Redis, NATS and Kafka stores under real Celery workers, killed with ``kill -9`` mid-run.

The same cluster as ``test_workers.py`` (a Redis broker, worker processes, beat), but the workers
run with ``BELUGA_STORE=redis`` / ``nats`` / ``kafka`` (the example project's settings read the
server and the key prefix / bucket / topic from the environment) and the test reads the same store. The store's keys live
under this session's prefix in the broker's Redis database, or in a bucket / topic of its own,
removed afterwards.
"""

from __future__ import annotations

import time
import uuid

import pytest

from beluga_workflows.errors import StoreError
from beluga_workflows.runtimes.celery import CeleryExecutor
from beluga_workflows.types import EventType

from ..stores.backends import KAFKA_FETCH_WAIT_MS, KAFKA_SERVERS, NATS_URL, unreachable
from . import workflows as test_workflows  # noqa: F401 - registers the test workflows
from .conftest import PREFIX, REDIS_URL

pytestmark = [pytest.mark.celery, pytest.mark.postgres]

WORKFLOWS, STEPS = 50, 5


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("nats", marks=pytest.mark.nats),
                        pytest.param("kafka", marks=pytest.mark.kafka)])
def store_cluster(request, cluster):
    """``cluster`` with its workers and its executor on the ``redis``, ``nats`` or ``kafka``
    store."""
    kind = request.param
    if unreachable(kind):
        raise pytest.UsageError(f"{unreachable(kind)}; run bin/test, which starts it")
    namespace = f"{uuid.uuid4().hex[:8]}"
    if kind == "redis":
        from beluga_workflows.stores.redis import RedisStore

        prefix = f"{PREFIX}:store-{namespace}:"
        store = RedisStore(url=REDIS_URL, key_prefix=prefix)
        cluster.configure(BELUGA_STORE="redis", REDIS_URL=REDIS_URL,
                          BELUGA_REDIS_KEY_PREFIX=prefix)
    elif kind == "kafka":
        from beluga_workflows.stores.kafka import KafkaStore

        topic = f"beluga-celery-{namespace}"
        store = KafkaStore(bootstrap_servers=KAFKA_SERVERS, topic=topic,
                           fetch_wait_ms=KAFKA_FETCH_WAIT_MS)
        cluster.configure(BELUGA_STORE="kafka", KAFKA_BOOTSTRAP_SERVERS=KAFKA_SERVERS,
                          BELUGA_KAFKA_TOPIC=topic, BELUGA_KAFKA_FETCH_WAIT_MS=KAFKA_FETCH_WAIT_MS)
    else:
        from beluga_workflows.stores.nats import NatsStore

        bucket = f"beluga_celery_{namespace}"
        store = NatsStore(url=NATS_URL, bucket=bucket)
        cluster.configure(BELUGA_STORE="nats", NATS_URL=NATS_URL, BELUGA_NATS_BUCKET=bucket)
    cluster.store = store
    cluster.executor = CeleryExecutor(store=store, app=cluster.app)
    try:
        yield cluster
    finally:
        cluster.stop()
        if kind == "redis":
            keys = list(store.client.scan_iter(f"{prefix}*", count=1000))
            for start in range(0, len(keys), 500):
                store.client.delete(*keys[start:start + 500])
            store.close()
        elif kind == "kafka":
            store.delete_topic()
        else:
            try:
                store.drop_bucket()
            except StoreError:
                store.close()


def test_kill_9_of_every_worker_mid_run_loses_nothing_and_repeats_no_recorded_step(
        store_cluster, rng):
    cluster = store_cluster
    cluster.configure(BELUGA_LEASE_SECONDS=2, BELUGA_TEST_SWEEP_GRACE=3)
    cluster.start_beat()
    cluster.start_workers(2)
    started = time.monotonic()
    ids = cluster.start("celery_tests.steps", [{"steps": STEPS, "pause": 0.02}] * WORKFLOWS,
                        id_prefix=f"{cluster.store.backend_name}-crash")
    kills = []
    for _ in range(2):
        time.sleep(rng.uniform(0.5, 2.0))
        done = cluster.count("completed")
        groups = cluster.kill_workers()
        kills.append({"at": round(time.monotonic() - started, 1), "completed": done,
                      "groups": groups})
        time.sleep(rng.uniform(0.0, 0.5))
        cluster.start_workers(2)
    cluster.wait_ended(WORKFLOWS, timeout=240)
    total = time.monotonic() - started
    assert kills[0]["completed"] < WORKFLOWS, "the first kill came after every run had ended"

    repeated = []
    for workflow_id in ids:
        state = cluster.store.load(workflow_id)
        assert state.status.value == "completed", (workflow_id, state.error)
        tokens = [e.result["token"] for e in state.history
                  if e.type is EventType.ACTIVITY_COMPLETED]
        assert state.result == tokens and len(tokens) == STEPS
        for i in range(STEPS):
            runs = cluster.effects(workflow_id, i)
            assert runs, f"{workflow_id} step {i} never ran"
            # The recorded execution is the last one: a recorded step never runs again.
            assert runs[-1][2] == tokens[i], f"{workflow_id} step {i} ran after it was recorded"
            if len(runs) > 1:
                # Every earlier execution was in flight in a worker that was killed.
                assert all(group in cluster.killed_groups for group, _, _ in runs[:-1]), runs
                repeated.append((workflow_id, i))
    assert len(repeated) <= 2 * len(kills)  # at most one step in flight per pool process
    assert cluster.count("running") == 0
    assert cluster.store.due(cluster.executor.clock.now(), 10) == []
    print(f"{cluster.store.backend_name} store, {WORKFLOWS} workflows x {STEPS} activities on 2 "
          f"worker processes killed {len(kills)} times: {total:.1f} s; kills {kills}; steps run "
          f"twice (in flight at a kill): {len(repeated)}")
