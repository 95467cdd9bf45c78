"""``workflows_send_event NAME [--data JSON] [--id ID]``: sends an event, prints what it did."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError

from beluga_workflows import workflow
from beluga_workflows.executor import get_executor

from .conftest import ended, run, wait_until

pytestmark = pytest.mark.usefixtures("workflow_backend")


@workflow(name="tests.commands.on_shipped", on_event="tests/shipped")
def on_shipped(ctx, event: dict) -> str:
    """Started by each ``tests/shipped`` event."""
    return event["data"]["parcel"]


def test_sends_the_event_and_prints_its_result_as_json():
    out = json.loads(run("workflows_send_event", "tests/shipped", "--data", '{"parcel": "p-1"}',
                         "--id", "shipped-p-1"))
    assert out["event_id"] == "shipped-p-1" and out["duplicate"] is False
    (started,) = out["started"]
    wait_until(lambda: get_executor().store.load(started, with_history=False),
               what=f"{started} to start")
    assert ended(started).result == "p-1"
    again = json.loads(run("workflows_send_event", "tests/shipped", "--id", "shipped-p-1"))
    assert again["duplicate"] is True and again["started"] == []


@pytest.mark.parametrize(("args", "message"), [
    (["tests/x", "--data", "{not json"], "--data is not valid JSON"),
    (["tests/x", "--data", "[1, 2]"], "--data must be a JSON object"),
    (["", "--data", "{}"], "name"),
    (["x" * 256], "name"),
])
def test_bad_input_is_a_one_line_error_and_sends_nothing(args, message):
    with pytest.raises(CommandError, match=message) as raised:
        run("workflows_send_event", *args)
    assert "\n" not in str(raised.value)
    assert get_executor().store.count_events() == 0
