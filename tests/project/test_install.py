"""A site that installs ``beluga-workflows`` alone, with no extra: it works on Django alone.

For real, in subprocesses: a fresh virtualenv (no system site packages), ``pip install`` of a copy
of this repository (not editable; PyPI and pip's default cache), and a minimal site of its own
(settings written here: the django store on SQLite, the local executor). It migrates, passes
``check``, runs a workflow with an activity and a durable sleep to completion, answers the admin's
pages and the commands - with no Celery, no Django REST framework, no Redis installed. Then
the ``redis`` extra is added: ``check`` refuses the celery executor, naming the ``celery`` extra,
and the local executor still works. Every subprocess has a deadline; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What the copy of the repository leaves out: version control, caches, local state, earlier builds.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "var", "test-artifacts", "build", "dist", "*.egg-info", "__pycache__",
    "*.pyc", ".ruff_cache", ".hypothesis", ".benchmarks", ".pytest_cache", "node_modules",
)
PIP_TIMEOUT = 300  # seconds; the first run downloads Django (later ones use pip's cache)
COMMAND_TIMEOUT = 60

SETTINGS = '''
"""The smallest site using beluga_workflows: Django's admin, SQLite, the local executor."""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECRET_KEY = "install-test-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "beluga_workflows",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "site_urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": HERE / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "static/"
BELUGA_WORKFLOWS = {
    "STORE": {"BACKEND": "django", "OPTIONS": {}},
    "EXECUTOR": {"BACKEND": os.environ.get("SITE_EXECUTOR", "local"), "OPTIONS": {}},
}
'''

URLS = '''
from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
'''

# What the core installs, and what it must not: the extras' libraries and the example project.
PROBE = '''
import importlib, importlib.metadata, json

def importable(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True

import django

django.setup()
api_error = ""
try:
    import beluga_workflows.api  # noqa: F401
except Exception as exc:
    api_error = f"{type(exc).__name__}: {exc}"

dist = importlib.metadata.distribution("beluga-workflows")
print(json.dumps({
    "importable": {name: importable(name) for name in (
        "celery", "rest_framework", "drf_spectacular", "redis", "nats", "httpx", "psycopg",
        "environ", "beluga_project")},
    "core": {name: importable(name) for name in (
        "beluga_workflows.admin", "beluga_workflows.testing", "beluga_workflows.stores.django",
        "beluga_workflows.runtimes.local")},
    "files": sorted(str(path) for path in dist.files),
    "requires": dist.requires or [],
    "api_error": api_error,
}))
'''

# A workflow with an activity and a durable sleep, run to its end by the configured executor;
# then the admin's pages, through Django's test client.
RUN = '''
import sys

import django

django.setup()

from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.test import Client

from beluga_workflows import WorkflowContext, WorkflowOptions, activity, get_executor, workflow


@activity(name="site.shout")
def shout(text: str) -> str:
    return text.upper() + "!"


@workflow(name="site.greet")
def greet(ctx: WorkflowContext, name: str) -> dict:
    loud = ctx.execute_activity(shout, f"hello {name}")
    ctx.sleep(0.1)
    return {"greeting": loud, "slept": True}


workflow_id = sys.argv[1]
handle = get_executor().execute("site.greet", WorkflowOptions(id=workflow_id, input="ann"))
result = handle.result(timeout=30)
assert result == {"greeting": "HELLO ANN!", "slept": True}, result
events = [e.type.value for e in get_executor().store.history(handle.id)]
assert "timer_fired" in events and "activity_completed" in events, events

admin = get_user_model().objects.filter(username="admin").first()
admin = admin or get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
client = Client()
client.force_login(admin)
base = "/admin/beluga_workflows/workflowstate/"
for url, text in [("/admin/", "Workflow runs"), (base, workflow_id),
                  (f"{base}{quote(workflow_id)}/change/", "HELLO ANN!"),
                  (f"{base}human-tasks/", "No human task is waiting")]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert text in response.content.decode(), (url, text)
get_executor().close()
print("ok", result["greeting"])
'''


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float
        ) -> subprocess.CompletedProcess:
    """Run ``args``, failing the test (with its output) when it does not end within ``timeout``."""
    try:
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(args)} did not end within {timeout} s:\n{exc.stdout}\n{exc.stderr}")


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class Site:
    """A virtualenv with the package installed from a copy of the repository, and a site."""

    def __init__(self, base: Path) -> None:
        self.source = base / "source"
        self.venv = base / "venv"
        self.dir = base / "site"
        self.python = str(self.venv / "bin" / "python")
        self.env = {k: v for k, v in os.environ.items() if k not in (
            "DJANGO_SETTINGS_MODULE", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
        self.env.update(DJANGO_SETTINGS_MODULE="site_settings", PYTHONNOUSERSITE="1",
                        PYTHONDONTWRITEBYTECODE="1", PIP_NO_INPUT="1",
                        PIP_DISABLE_PIP_VERSION_CHECK="1")

    def create(self) -> None:
        # A copy: pip builds in the source tree, which must not gain build/ or egg-info here.
        shutil.copytree(ROOT, self.source, ignore=NOT_COPIED)
        ok(run([sys.executable, "-m", "venv", str(self.venv)], cwd=self.source.parent,
               env=self.env, timeout=120))
        config = (self.venv / "pyvenv.cfg").read_text()
        assert "include-system-site-packages = false" in config, config
        self.dir.mkdir()
        (self.dir / "site_settings.py").write_text(SETTINGS)
        (self.dir / "site_urls.py").write_text(URLS)
        (self.dir / "probe.py").write_text(PROBE)
        (self.dir / "run_workflow.py").write_text(RUN)

    def pip_install(self, requirement: str) -> None:
        ok(run([self.python, "-m", "pip", "install", "-q", requirement], cwd=self.dir,
               env=self.env, timeout=PIP_TIMEOUT))

    def python_run(self, *args: str, executor: str = "local",
                   timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
        """``python ARGS`` in the site's directory (``-m django ...`` for manage.py commands)."""
        return run([self.python, *args], cwd=self.dir, env={**self.env, "SITE_EXECUTOR": executor},
                   timeout=timeout)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    site = Site(tmp_path_factory.mktemp("install"))
    site.create()
    site.pip_install(str(site.source))
    return site


def test_a_site_with_the_core_alone_migrates_checks_and_runs_workflows(site):
    probe = json.loads(ok(site.python_run("probe.py")))
    # Django alone: no extra's library, and not the example project.
    assert probe["importable"] == {
        "celery": False, "rest_framework": False, "drf_spectacular": False, "redis": False,
        "nats": False, "httpx": False, "psycopg": False, "environ": False,
        "beluga_project": False}
    assert all(probe["core"].values()), probe["core"]
    # The core: Django, and cronsim for the schedules' cron expressions (pure Python, no deps).
    assert [r for r in probe["requires"] if "extra ==" not in r] == ["django<6.0,>=5.2",
                                                                      "cronsim>=2.7"]
    tops = {path.split("/")[0] for path in probe["files"]}
    assert "beluga_workflows" in tops
    assert not tops & {"beluga_project", "tests", "bench", "templates"}, tops
    for data in ("beluga_workflows/py.typed", "beluga_workflows/migrations/0001_initial.py",
                 "beluga_workflows/static/beluga_workflows/admin.css",
                 "beluga_workflows/templates/admin/beluga_workflows/change_list.html"):
        assert data in probe["files"]
    # The API names its extra.
    assert probe["api_error"].startswith("ImproperlyConfigured: ")
    assert 'pip install "beluga-workflows[api]"' in probe["api_error"]

    ok(site.python_run("-m", "django", "migrate", "--noinput", "-v", "0"))
    assert "no issues" in ok(site.python_run("-m", "django", "check"))
    assert ok(site.python_run("run_workflow.py", "greet/ann")).split() == ["ok", "HELLO", "ANN!"]

    # The commands print the API's JSON without the API's library.
    [listed] = [json.loads(line) for line in
                ok(site.python_run("-m", "django", "workflows_list", "--json")).splitlines()]
    assert (listed["id"], listed["status"]) == ("greet/ann", "completed")
    assert listed["result"] == {"greeting": "HELLO ANN!", "slept": True}
    shown = json.loads(ok(site.python_run("-m", "django", "workflows_show", "greet/ann", "--json")))
    assert shown["workflow"] == listed
    assert [e["type"] for e in shown["history"]][-1] == "workflow_completed"


def test_with_the_redis_extra_check_refuses_celery_naming_its_extra(site):
    site.pip_install(f"{site.source}[redis]")
    probe = json.loads(ok(site.python_run("probe.py")))
    assert probe["importable"]["redis"] and not probe["importable"]["celery"]

    refused = site.python_run("-m", "django", "check", executor="celery")
    assert refused.returncode != 0, refused.stdout
    assert 'pip install "beluga-workflows[celery]"' in refused.stderr + refused.stdout

    assert "no issues" in ok(site.python_run("-m", "django", "check"))
    assert ok(site.python_run("run_workflow.py", "greet/again")).split() == ["ok", "HELLO", "ANN!"]
