"""The workflows_* commands end to end, and their one-line errors on bad input."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError

from beluga_workflows.executor import get_executor
from beluga_workflows.types import WorkflowStatus

from .conftest import ended, run, waiting_for_signal

pytestmark = pytest.mark.usefixtures("workflow_backend")


def test_start_signal_query_show_cancel_list():
    # start: prints the id alone, so scripts can capture it
    out = run("workflows_start", "tests.commands.approval", "--id", "orders/42 ü",
              "--input", '{"total": 42}', "--timeout", "600")
    assert out == "orders/42 ü\n"
    waiting_for_signal("orders/42 ü")

    # query: the answer as JSON
    assert json.loads(run("workflows_query", "orders/42 ü", "stage")) == {
        "stage": "waiting", "input": {"total": 42}}
    assert json.loads(run("workflows_query", "orders/42 ü", "status")) == "running"

    # show while it waits
    shown = run("workflows_show", "orders/42 ü")
    assert "Workflow  orders/42 ü" in shown
    assert "Status    running" in shown
    assert "Waiting   signal 'approval'" in shown
    assert 'Input     {"total":42}' in shown
    assert "Deadline" in shown
    assert "History (1 events)" in shown

    # signal: accepted, received, the run completes
    out = run("workflows_signal", "orders/42 ü", "approval", "--payload", '{"by": "ann"}')
    assert out.startswith("Signal 'approval' accepted by workflow 'orders/42 ü'")
    assert ended("orders/42 ü").result == {"input": {"total": 42}, "approval": {"by": "ann"}}

    shown = run("workflows_show", "orders/42 ü")
    assert "Status    completed" in shown
    assert 'Result    {"input":{"total":42},"approval":{"by":"ann"}}' in shown
    history = shown.split("History", 1)[1].splitlines()[1:]
    assert history[0].split()[0:1] == ["1"] and "workflow_started" in history[0]
    assert any("signal_received" in line and 'payload={"by":"ann"}' in line for line in history)
    assert "workflow_completed" in history[-1]

    as_json = json.loads(run("workflows_show", "orders/42 ü", "--json"))
    assert as_json["workflow"]["status"] == "completed"
    assert [e["id"] for e in as_json["history"]] == list(range(1, len(as_json["history"]) + 1))

    # cancel another run
    run("workflows_start", "tests.commands.approval", "--id", "to-cancel")
    waiting_for_signal("to-cancel")
    assert "Cancel requested for workflow 'to-cancel'" in run("workflows_cancel", "to-cancel")
    assert ended("to-cancel").status is WorkflowStatus.CANCELED

    # list: a table, newest first, aligned
    table = run("workflows_list").splitlines()
    assert table[0].split() == ["ID", "TYPE", "STATUS", "STARTED", "ENDED", "WAITING", "FOR"]
    assert table[1].startswith("to-cancel ")
    assert table[2].startswith("orders/42 ü ")
    assert table[1].index("tests.commands") == table[2].index("tests.commands") == \
        table[0].index("TYPE")
    assert "canceled" in table[1] and "completed" in table[2]

    # list --json: one object per line, the API's fields
    lines = run("workflows_list", "--json").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == ["to-cancel", "orders/42 ü"]
    assert rows[1]["result"]["approval"] == {"by": "ann"}

    # filters and limit
    only = [json.loads(x) for x in run("workflows_list", "--json", "--status", "canceled").splitlines()]
    assert [r["id"] for r in only] == ["to-cancel"]
    assert run("workflows_list", "--type", "no.such.type") == "No workflows.\n"
    limited = run("workflows_list", "--limit", "1").splitlines()
    assert len(limited) == 3 and limited[-1] == "1 of 2 workflows shown (--limit 1)."


def test_list_parent_shows_a_runs_children_and_show_names_the_parent():
    run("workflows_start", "tests.commands.family", "--id", "fam", "--input", "2")
    assert ended("fam").status is WorkflowStatus.COMPLETED
    rows = [json.loads(x) for x in run("workflows_list", "--json", "--parent", "fam").splitlines()]
    assert sorted(r["id"] for r in rows) == ["fam/1", "fam/2"]
    assert {r["parent_id"] for r in rows} == {"fam"}
    assert run("workflows_list", "--parent", "nobody") == "No workflows.\n"
    assert "Parent    fam" in run("workflows_show", "fam/1")
    assert "Parent" not in run("workflows_show", "fam")


def test_start_generates_an_id():
    workflow_id = run("workflows_start", "tests.commands.echo").strip()
    assert workflow_id.startswith("wf-")
    assert ended(workflow_id).status is WorkflowStatus.COMPLETED


def test_start_wait_prints_the_id_then_the_result():
    out = run("workflows_start", "tests.commands.echo", "--id", "echo-1", "--input",
              '{"a": [1, "ü"]}', "--wait")
    assert out.splitlines() == ["echo-1", '{"a":[1,"ü"]}']


def test_start_wait_on_a_failing_run_exits_with_its_error():
    with pytest.raises(CommandError) as raised:
        run("workflows_start", "tests.commands.fail", "--id", "f-1", "--wait")
    assert str(raised.value) == "workflow 'f-1' failed: ValueError: boom on two lines"


def test_start_wait_gives_up_after_the_wait_timeout():
    with pytest.raises(CommandError, match=r"still running after 0.2 s; it goes on"):
        run("workflows_start", "tests.commands.approval", "--id", "slow", "--wait",
            "--wait-timeout", "0.2")
    assert get_executor().get_handle("slow").status() is WorkflowStatus.RUNNING


@pytest.fixture
def ended_run() -> str:
    run("workflows_start", "tests.commands.echo", "--id", "over", "--wait")
    return "over"


@pytest.fixture
def open_run() -> str:
    run("workflows_start", "tests.commands.approval", "--id", "open")
    waiting_for_signal("open")  # settled: nothing but a command can change it now
    return "open"


BAD_INPUTS = [
    (("workflows_start", "no.such.type"), "unknown workflow type 'no.such.type'"),
    (("workflows_start", "tests.commands.echo", "--input", "{bad"), "--input is not valid JSON"),
    (("workflows_start", "tests.commands.echo", "--input", ""), "--input is not valid JSON"),
    (("workflows_start", "tests.commands.echo", "--timeout", "soon"),
     "--timeout must be a number of seconds, not 'soon'"),
    (("workflows_start", "tests.commands.echo", "--timeout", "-5"),
     "--timeout must be a positive number of seconds"),
    (("workflows_start", "tests.commands.echo", "--timeout", "nan"),
     "--timeout must be a positive number of seconds"),
    (("workflows_start", "tests.commands.echo", "--timeout", "1e300"),
     "--timeout must be at most"),
    (("workflows_start", "tests.commands.echo", "--wait-timeout", "x"),
     "--wait-timeout must be a number of seconds"),
    (("workflows_start", "tests.commands.echo", "--id", " padded"),
     "workflow id must not start or end with whitespace"),
    (("workflows_start", "tests.commands.echo", "--id", "x" * 256),
     "workflow id is 256 characters long; the limit is 255"),
    (("workflows_start", "tests.commands.approval", "--id", "open"), "already has an open run"),
    (("workflows_signal", "nobody", "approval"), "no workflow with id 'nobody'"),
    (("workflows_signal", "open", "approval", "--payload", "[1,"), "--payload is not valid JSON"),
    (("workflows_signal", "open", "  "), "signal name must be a non-empty string"),
    (("workflows_signal", "over", "approval"), "workflow 'over' has ended (completed)"),
    (("workflows_cancel", "nobody"), "no workflow with id 'nobody'"),
    (("workflows_cancel", "over"), "workflow 'over' has ended (completed)"),
    (("workflows_query", "nobody", "status"), "no workflow with id 'nobody'"),
    (("workflows_query", "open", "nonsense"), "unknown query type 'nonsense'"),
    (("workflows_list", "--status", "sleeping"), "unknown status 'sleeping'"),
    (("workflows_list", "--limit", "0"), "--limit must be at least 1, not 0"),
    (("workflows_list", "--limit", "ten"), "--limit must be a whole number, not 'ten'"),
    (("workflows_show", "nobody"), "no workflow with id 'nobody'"),
    (("workflows_show", "line\nbreak"), "workflow id must not contain control characters"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS,
                         ids=[" ".join(a)[:60] for a, _ in BAD_INPUTS])
def test_bad_input_is_a_one_line_command_error(open_run, ended_run, args, message):
    before = [(s.workflow_id, s.status, s.version) for s in get_executor().store.list()]
    with pytest.raises(CommandError) as raised:
        run(*args)
    text = str(raised.value)
    assert message in text
    assert "\n" not in text
    after = [(s.workflow_id, s.status, s.version) for s in get_executor().store.list()]
    assert after == before  # a refused command changes nothing


@pytest.mark.parametrize("command", ["workflows_start", "workflows_signal", "workflows_cancel",
                                     "workflows_query", "workflows_list", "workflows_show",
                                     "workflows_resume", "workflows_fork"])
def test_every_command_explains_itself(command):
    from django.core.management import load_command_class

    cmd = load_command_class("beluga_workflows", command)
    parser = cmd.create_parser("manage.py", command)
    text = parser.format_help()
    assert len(cmd.help) > 80
    for action in parser._actions:
        assert action.help, f"{command}: {action.dest} has no help"
    assert "usage: manage.py " + command in text


def test_start_help_lists_the_registered_types():
    from django.core.management import load_command_class

    cmd = load_command_class("beluga_workflows", "workflows_start")
    assert "tests.commands.approval" in cmd.help
