"""The commands' JSON (``--json``) is the REST API's, though made without Django REST framework."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.utils import timezone as django_timezone

from beluga_workflows.api.serializers import HistoryEventSerializer, WorkflowSerializer
from beluga_workflows.engine.types import EventType, HistoryEvent, WorkflowState, WorkflowStatus
from beluga_workflows.management.base import WorkflowCommand
from beluga_workflows.management.presentation import event_json, workflow_json

START = datetime(2025, 3, 30, 0, 59, 59, 123456, tzinfo=timezone.utc)  # a DST change in Europe


def states() -> list[WorkflowState]:
    return [
        WorkflowState(  # waits for a signal with a timeout, has a deadline, cancel requested
            workflow_id="orders/42 ü", run_id="r1", workflow_type="demo.order",
            input={"total": 42}, created_at=START, updated_at=START + timedelta(seconds=3),
            deadline=START + timedelta(hours=1), wait_kind="signal", wait_name="approval",
            wait_until=START + timedelta(minutes=5), cancel_requested=True,
        ),
        WorkflowState(  # scheduled: open, waits for nothing yet
            workflow_id="new", run_id="r2", workflow_type="demo.order", created_at=START,
            updated_at=START,
        ),
        WorkflowState(
            workflow_id="done", run_id="r3", workflow_type="demo.order",
            status=WorkflowStatus.COMPLETED, input=None, result=[1, "two", {"3": None}],
            created_at=START, updated_at=START + timedelta(seconds=2),
            ended_at=START + timedelta(seconds=2, microseconds=5), wait_kind="timer",
        ),
        WorkflowState(
            workflow_id="broken", run_id="r4", workflow_type="demo.fail",
            status=WorkflowStatus.FAILED, error={"type": "ValueError", "message": "bad",
                                                 "traceback": "Traceback ..."},
            created_at=START, updated_at=START, ended_at=START,
        ),
    ]


def events() -> list[HistoryEvent]:
    return [
        HistoryEvent(id=1, type=EventType.WORKFLOW_STARTED, timestamp=START,
                     activity_name="demo.order", input={"total": 42}),
        HistoryEvent(id=2, type=EventType.ACTIVITY_FAILED, timestamp=START, activity_name="charge",
                     error={"type": "IOError", "message": "down"}, duration=0.25, op=1,
                     attempt=1, fire_at=START + timedelta(seconds=2)),
        HistoryEvent(id=3, type=EventType.SIGNAL_RECEIVED, timestamp=START,
                     signal_name="approval", signal_payload={"by": "ann"}, op=2),
        HistoryEvent(id=4, type=EventType.WORKFLOW_COMPLETED, timestamp=START, result="ok"),
    ]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/Chicago"])
def test_workflows_and_events_match_the_api_serializers(settings, zone):
    settings.TIME_ZONE = zone
    with django_timezone.override(zone):
        for state in states():
            api = WorkflowSerializer(state).data
            assert workflow_json(state) == api
            assert WorkflowCommand.dumps(workflow_json(state)) == WorkflowCommand.dumps(api)
        api_events = HistoryEventSerializer(events(), many=True).data
        ours = [event_json(e) for e in events()]
        assert ours == api_events
        assert WorkflowCommand.dumps(ours, indent=2) == WorkflowCommand.dumps(api_events, indent=2)


def test_without_use_tz_datetimes_are_naive_utc_as_in_the_api(settings):
    settings.USE_TZ = False
    state = states()[0]
    assert workflow_json(state) == WorkflowSerializer(state).data
    assert workflow_json(state)["created_at"] == "2025-03-30T00:59:59.123456"
