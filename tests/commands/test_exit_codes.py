"""Run from a shell, a bad input exits non-zero with one line on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.commands.settings",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("workflows_show", "no-such-id"), "CommandError: no workflow with id 'no-such-id'"),
        (("workflows_start", "no.such.type"), "CommandError: unknown workflow type 'no.such.type'"),
        (("workflows_start", "demo.hello", "--input", "{oops"), "CommandError: --input is not valid JSON"),
        (("workflows_resume", "no-such-id"), "CommandError: no workflow with id 'no-such-id'"),
        (("workflows_fork", "no-such-id", "--from-event", "x"),
         "CommandError: --from-event must be a whole number"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(args, message):
    result = manage(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message)


def test_a_good_run_exits_zero_and_prints_the_result():
    result = manage("workflows_start", "demo.hello", "--input", '"Ann"', "--wait",
                    "--wait-timeout", "30")
    assert result.returncode == 0, result.stderr
    workflow_id, answer = result.stdout.splitlines()
    assert workflow_id.startswith("wf-")
    assert answer == '"Hello, Ann!"'


def test_help_explains_the_command():
    result = manage("workflows_list", "--help")
    assert result.returncode == 0
    assert "newest first" in result.stdout
    assert "--status S" in result.stdout
