"""workflows_resume and workflows_fork: continue an ended run, or copy it from a step."""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from beluga_workflows.executor import get_executor

from . import flows
from .conftest import ended, run, waiting_for_signal

pytestmark = pytest.mark.usefixtures("workflow_backend")


def calls(key: str) -> list[int]:
    return [flows.STEP_CALLS.get((key, n), 0) for n in (1, 2, 3)]


def store_rows() -> list[tuple]:
    store = get_executor().store
    return sorted((s.workflow_id, s.run_id, s.status.value, s.version)
                  for s in store.list())


def three_steps(key: str, *, fail: bool, monkeypatch) -> None:
    monkeypatch.setitem(flows.STEP_TWO_FAILS, "on", fail)
    run("workflows_start", "tests.commands.three_steps", "--id", key, "--input", f'"{key}"')
    state = ended(key)
    assert state.status.value == ("failed" if fail else "completed"), state.error


def first_event_of_step(key: str, op: int, kind: str | None = None) -> int:
    history = get_executor().store.load(key).history
    return next(e.id for e in history if e.op == op and (kind is None or e.type.value == kind))


def test_resume_prints_the_id_and_new_run_and_runs_the_failed_step_again(monkeypatch):
    three_steps("cmd-resume", fail=True, monkeypatch=monkeypatch)
    old_run = get_executor().store.load("cmd-resume").run_id
    monkeypatch.setitem(flows.STEP_TWO_FAILS, "on", False)
    out = run("workflows_resume", "cmd-resume")
    new_run = get_executor().store.load("cmd-resume").run_id
    assert new_run != old_run
    assert out == f"Resumed workflow 'cmd-resume' as run {new_run}.\n"
    assert ended("cmd-resume").result == ["step1", "step2", "step3"]
    assert calls("cmd-resume") == [1, 2, 1]


def test_fork_prints_the_new_id_alone_and_reruns_from_the_step(monkeypatch):
    three_steps("cmd-fork", fail=False, monkeypatch=monkeypatch)
    third = first_event_of_step("cmd-fork", 3)
    out = run("workflows_fork", "cmd-fork", "--from-event", str(third), "--new-id", "cmd-fork/2")
    assert out == "cmd-fork/2\n"
    assert ended("cmd-fork/2").result == ["step1", "step2", "step3"]
    assert calls("cmd-fork") == [1, 1, 2]
    forked_from = get_executor().store.load("cmd-fork/2").history[0].result["forked_from"]
    assert forked_from["workflow_id"] == "cmd-fork" and forked_from["from_event"] == third


def test_fork_without_options_starts_over_under_a_generated_id(monkeypatch):
    three_steps("cmd-all", fail=True, monkeypatch=monkeypatch)
    monkeypatch.setitem(flows.STEP_TWO_FAILS, "on", False)
    new_id = run("workflows_fork", "cmd-all").strip()
    assert new_id.startswith("cmd-all-fork-")
    assert ended(new_id).result == ["step1", "step2", "step3"]
    assert calls("cmd-all") == [2, 2, 1]
    assert get_executor().store.load("cmd-all").status.value == "failed"


BAD = [
    (("workflows_resume", "nobody"), "no workflow with id 'nobody'"),
    (("workflows_resume", "done"), "is completed"),
    (("workflows_resume", "open"), "is running"),
    (("workflows_resume", "line\nbreak"), "workflow id must not contain control characters"),
    (("workflows_fork", "nobody"), "no workflow with id 'nobody'"),
    (("workflows_fork", "open"), "is still running"),
    (("workflows_fork", "done", "--from-event", "three"),
     "--from-event must be a whole number (an event id), not 'three'"),
    (("workflows_fork", "done", "--from-event", "1"), "from_event must be an event id"),
    (("workflows_fork", "done", "--from-event", "999"), "from 2 to"),
    (("workflows_fork", "done", "--from-event", "INSIDE"), "is inside step 2"),
    (("workflows_fork", "done", "--new-id", " padded"),
     "workflow id must not start or end with whitespace"),
    (("workflows_fork", "done", "--new-id", "open"), "open run"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a)[:50] for a, _ in BAD])
def test_a_refused_resume_or_fork_is_one_line_and_changes_nothing(args, message, monkeypatch):
    three_steps("done", fail=False, monkeypatch=monkeypatch)
    run("workflows_start", "tests.commands.approval", "--id", "open")
    waiting_for_signal("open")
    if "INSIDE" in args:
        inside = first_event_of_step("done", 2, "activity_completed")
        args = tuple(str(inside) if a == "INSIDE" else a for a in args)
    before = store_rows()
    with pytest.raises(CommandError) as raised:
        run(*args)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert store_rows() == before
