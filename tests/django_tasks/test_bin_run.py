"""``bin/run`` on a fresh clone, with no settings: the web app and ``db_worker`` processes on
SQLite (the django_tasks executor, no broker), and a workflow started from the admin completes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import REPO, wait_for

pytestmark = pytest.mark.timeout(180)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mark_installed(clone: Path) -> None:
    """Give the clone bin/setup.sh's "installed" stamp: this interpreter already has the project
    and its dev tools, and a pip install from the clone would repoint the editable install."""
    digest = subprocess.run(
        ["bash", "-c", f"(cat pyproject.toml; {sys.executable} -c 'import sys; "
                       f"print(sys.executable)') | cksum | cut -d' ' -f1"],
        cwd=clone, capture_output=True, text=True, check=True).stdout.strip()
    (clone / "var").mkdir(exist_ok=True)
    (clone / "var" / f".installed-{digest}").touch()


def test_bin_run_on_a_fresh_clone_runs_a_workflow_started_from_the_admin(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    _mark_installed(clone)
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BELUGA_", "CELERY_", "DJANGO_", "DATABASE_URL"))}
    env.update({"BELUGA_PORT": str(port), "PYTHON": sys.executable, "PYTHONPATH": "",
                "DJANGO_SETTINGS_MODULE": "beluga_project.settings"})
    # bin/setup.sh installs the project when this import fails: refuse to let it (see above).
    imports = subprocess.run(["bash", "-c", ". bin/setup.sh >/dev/null; $PY -c \"import $DEV_IMPORTS\""],
                             cwd=clone, env=env, capture_output=True, text=True)
    assert imports.returncode == 0, imports.stderr
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["bin/run"], cwd=clone, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    output = lambda: (tmp_path / "run.log").read_text(errors="replace")  # noqa: E731
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            def up():
                try:
                    return http.get("/admin/login/").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(up, 90, lambda: f"the web app to answer\n{output()}", interval=0.5)
            assert "db_worker" in output() and "Celery" not in output()
            page = http.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            http.post("/admin/login/", data={"username": "admin", "password": "admin",
                                             "csrfmiddlewaretoken": token, "next": "/admin/"})
            add = "/admin/beluga_workflows/workflowstate/start/"
            page = http.get(add)
            assert page.status_code == 200, page.headers.get("location")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            started = http.post(add, data={"workflow_type": "demo.hello", "id": "from-admin",
                                           "input": '"admin"', "timeout": "",
                                           "csrfmiddlewaretoken": token})
            assert started.status_code == 302, started.text[:1000]

            def completed():
                answer = http.get("/api/workflows/from-admin/")
                return answer.status_code == 200 and answer.json()["status"] == "completed" \
                    and answer.json()
            run = wait_for(completed, 60, lambda: f"the run to complete\n{output()}", interval=0.3)
            assert run["result"] == "Hello, admin!"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        print(output()[-3000:])
    deadline = time.monotonic() + 10  # its children exit after it: give them a moment
    while True:
        leftover = subprocess.run(["pgrep", "-f", str(clone)], capture_output=True, text=True)
        if leftover.stdout.strip() == "" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert leftover.stdout.strip() == "", "bin/run left processes behind"
