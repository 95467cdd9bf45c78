"""docker-compose.yml: the services it promises, their health checks, and the settings they feed.

No Docker engine runs here, so the file is read, not run: it must parse, name web, worker, beat,
postgres, redis, nats and kafka with health checks, and hand the app services every environment variable
the settings need - and only names the settings actually read (a typo would be silently ignored).
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from urllib.parse import urlparse

import environ
import pytest
import yaml  # PyYAML, a dev extra: a missing one fails the run (bin/test installs it)

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("web", "worker", "beat")
BACKENDS = ("postgres", "redis", "nats", "kafka")
REQUIRED_ENV = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "NATS_URL",
                "KAFKA_BOOTSTRAP_SERVERS", "BELUGA_STORE")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


class _RecordingEnviron(dict):
    """os.environ's stand-in that remembers every name looked up."""

    def __init__(self, base):
        super().__init__(base)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)

    def setdefault(self, key, default=None):
        self.read.add(key)
        return super().setdefault(key, default)


@pytest.fixture(scope="module")
def names_the_settings_read(tmp_path_factory) -> set[str]:
    base = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV}
    base["BELUGA_VAR_DIR"] = str(tmp_path_factory.mktemp("var"))
    recorder = _RecordingEnviron(base)
    original = environ.Env.ENVIRON
    environ.Env.ENVIRON = recorder
    try:
        runpy.run_path(str(ROOT / "beluga_project" / "settings.py"))
    finally:
        environ.Env.ENVIRON = original
    return recorder.read


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def test_it_describes_web_worker_beat_postgres_redis_nats_and_kafka(compose):
    assert set(APP_SERVICES + BACKENDS) <= set(compose["services"])


@pytest.mark.parametrize("name", APP_SERVICES + BACKENDS)
def test_every_service_has_a_health_check(compose, name):
    check = compose["services"][name].get("healthcheck")
    assert check and check.get("test"), f"{name} has no health check"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_the_app_services_get_what_the_settings_need(compose, names_the_settings_read, name):
    env = environment(compose["services"][name])
    for key in REQUIRED_ENV:
        assert env.get(key), f"{name} does not set {key}"
    assert env["BELUGA_EXECUTOR"] == "celery"
    unread = set(env) - names_the_settings_read
    assert not unread, f"{name} sets {sorted(unread)}, which the settings never read"


def test_the_settings_read_the_documented_variables(names_the_settings_read):
    documented = {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "NATS_URL", "BELUGA_STORE",
                  "INNGEST_BASE_URL", "INNGEST_EVENT_KEY", "KAFKA_BOOTSTRAP_SERVERS",
                  "BELUGA_KAFKA_TOPIC"}
    assert documented <= names_the_settings_read


@pytest.mark.parametrize("name", APP_SERVICES)
def test_the_app_services_wait_for_healthy_backends_and_point_at_them(compose, name):
    service = compose["services"][name]
    depends = service["depends_on"]
    for backend in BACKENDS:
        assert depends[backend]["condition"] == "service_healthy"
    env = environment(service)
    hosts = {key: urlparse(env[key]).hostname for key in
             ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "NATS_URL")}
    assert hosts == {"DATABASE_URL": "postgres", "CELERY_BROKER_URL": "redis",
                     "REDIS_URL": "redis", "NATS_URL": "nats"}
    assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] == "kafka"


def test_the_workers_and_beat_start_after_the_web_service_migrated(compose):
    for name in ("worker", "beat"):
        assert compose["services"][name]["depends_on"]["web"]["condition"] == "service_healthy"
    assert "migrate" in compose["services"]["web"]["command"]
    assert "worker" in compose["services"]["worker"]["command"]
    assert " beat " in compose["services"]["beat"]["command"]


def test_the_database_credentials_match_the_postgres_service(compose):
    url = urlparse(environment(compose["services"]["web"])["DATABASE_URL"])
    postgres = environment(compose["services"]["postgres"])
    assert (url.username, url.password, url.path.lstrip("/")) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])


def test_the_image_installs_what_the_example_project_uses(compose):
    # The core installs Django alone: the project runs the celery executor on Redis, the API and
    # PostgreSQL (the "all" extra), reads its settings with django-environ and brands the admin
    # from the top-level templates/ folder.
    dockerfile = compose["x-app"]["build"]["dockerfile_inline"]
    install = next(line for line in dockerfile.splitlines() if "pip install" in line)
    assert '".[all]"' in install and "django-environ" in install
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY")}
    assert {"beluga_project", "beluga_workflows", "templates"} <= copied
