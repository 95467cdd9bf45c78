"""The README's two commands: bin/run and bin/test (and CI's .ci/run, which is bin/test)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["bin/run", "bin/test", ".ci/run", "bin/setup.sh"])
def test_the_scripts_are_valid_bash(script):
    result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", ["bin/run", "bin/test", ".ci/run"])
def test_the_commands_are_executable(script):
    assert os.access(ROOT / script, os.X_OK)


def test_ci_runs_bin_test():
    assert "bin/test" in (ROOT / ".ci" / "run").read_text()


def test_bin_test_runs_the_whole_suite_in_one_pytest_invocation():
    code = [line for line in (ROOT / "bin" / "test").read_text().splitlines()
            if "pytest" in line and not line.lstrip().startswith(("#", "say "))]
    assert code == ['exec "$PY" -m pytest tests "$@"']  # one run; its exit status is the script's


def test_the_readme_opens_with_the_run_and_test_commands():
    opening = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "bin/run" in opening and "bin/test" in opening
