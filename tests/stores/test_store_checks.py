"""``manage.py check`` on the store settings: a wrong alias, a bad option, an unreachable server,
and a store without compare-and-set under a multi-process executor."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from beluga_workflows import Concurrency, workflow
from beluga_workflows.checks import check_settings

from .backends import REDIS_URL, unreachable
from .http_servers import DaprServer, InngestServer

REPO = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def messages(settings, backend: str, options: dict, executor: str = "local", *,
             flow: bool = False) -> dict[str, str]:
    """The check's messages by id. E006 (flow control on a store without it) depends on which
    workflows this test process registered: left out unless ``flow``."""
    settings.BELUGA_WORKFLOWS = {"STORE": {"BACKEND": backend, "OPTIONS": options},
                                 "EXECUTOR": {"BACKEND": executor, "OPTIONS": {}}, "HOOKS": []}
    return {m.id: f"{m.msg} HINT: {m.hint}" for m in check_settings()
            if flow or m.id != "beluga_workflows.E006"}


def test_a_wrong_alias_is_an_error_naming_the_aliases(settings):
    found = messages(settings, "mongo", {})
    assert list(found) == ["beluga_workflows.E001"]
    assert "'mongo' cannot be imported" in found["beluga_workflows.E001"]
    assert "redis, nats, inngest, dapr" in found["beluga_workflows.E001"]


def test_a_bad_option_is_an_error_naming_it(settings):
    found = messages(settings, "nats", {"bukket": "x"})
    assert list(found) == ["beluga_workflows.E001"]
    assert "unknown option(s) for the nats store: bukket" in found["beluga_workflows.E001"]


@pytest.mark.parametrize(("backend", "hint"), [
    ("redis", "REDIS_URL"), ("nats", "NATS_URL"), ("inngest", "INNGEST_BASE_URL"),
    ("dapr", "DAPR_BASE_URL"), ("kafka", "KAFKA_BOOTSTRAP_SERVERS"),
])
def test_an_unreachable_server_is_an_error_with_a_hint(settings, backend, hint):
    port = closed_port()
    options = {"redis": {"url": f"redis://127.0.0.1:{port}/0"},
               "nats": {"url": f"nats://127.0.0.1:{port}", "connect_timeout": 1},
               "kafka": {"bootstrap_servers": f"127.0.0.1:{port}", "connect_timeout": 1}}.get(
        backend, {"base_url": f"http://127.0.0.1:{port}"})
    found = messages(settings, backend, options)
    assert list(found) == ["beluga_workflows.E004"], found
    assert f"the {backend} workflow store cannot be reached" in found["beluga_workflows.E004"]
    assert hint in found["beluga_workflows.E004"]


@pytest.mark.redis
def test_a_reachable_store_passes(settings):
    if unreachable("redis"):
        raise pytest.UsageError(unreachable("redis"))
    assert messages(settings, "redis", {"url": REDIS_URL}, executor="celery") == {}
    with DaprServer() as server:
        assert messages(settings, "dapr", {"base_url": server.url}, executor="celery") == {}
    with DaprServer(stores=("other",)) as server:  # the sidecar answers, the component is missing
        found = messages(settings, "dapr", {"base_url": server.url})
        assert "ERR_STATE_STORE_NOT_FOUND" in found["beluga_workflows.E004"]


def test_inngest_under_a_multi_process_executor_is_warned_about(settings):
    with InngestServer() as server:
        found = messages(settings, "inngest", {"base_url": server.url}, executor="celery")
        assert list(found) == ["beluga_workflows.W001"]
        warning = found["beluga_workflows.W001"]
        assert "no compare-and-set and no listing" in warning and "'celery'" in warning
        assert "local" in warning
        assert messages(settings, "inngest", {"base_url": server.url}, executor="local") == {}


def test_manage_py_check_exits_non_zero_on_an_unreachable_store():
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELUGA_")}
    env.update(BELUGA_STORE="redis", REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
               DJANGO_SETTINGS_MODULE="beluga_project.settings", BELUGA_EXECUTOR="celery")
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "beluga_workflows.E004" in done.stderr and "HINT: Start Redis" in done.stderr


@workflow(name="tests.checks.limited", concurrency=Concurrency(2, key="input.customer"))
def limited(ctx, _=None) -> None:
    return None


def test_a_flow_control_workflow_on_a_store_without_flow_control_is_an_error(settings):
    with DaprServer() as server:
        found = messages(settings, "dapr", {"base_url": server.url}, flow=True)
    error = found["beluga_workflows.E006"]
    assert "tests.checks.limited" in error and "does not enforce" in error
    assert 'HINT: Use the django store' in error
    assert "beluga_workflows.E006" not in messages(settings, "memory", {}, flow=True)
    assert "beluga_workflows.E006" not in messages(settings, "django", {}, flow=True)
