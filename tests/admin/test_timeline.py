"""The run page's timeline chart (``admin/timeline.py``) drawn from a recorded history: one row per
operation, bars where the recorded times say, attempts and their failures, waits, children."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from beluga_workflows.admin.timeline import CHART_WIDTH, LABEL_WIDTH, spans_of, timeline_svg
from beluga_workflows.types import EventType, HistoryEvent, WorkflowState, WorkflowStatus

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
SVG = "{http://www.w3.org/2000/svg}"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run() -> WorkflowState:
    """3 parallel activities (the second retried once), a timer, then a child; 10 s in all."""
    events = [HistoryEvent(1, EventType.WORKFLOW_STARTED, at(0), activity_name="orders.fulfil")]

    def add(op: int, type_: EventType, seconds: float, **fields) -> None:
        events.append(HistoryEvent(len(events) + 1, type_, at(seconds), op=op, **fields))

    for op in (1, 2, 3):
        add(op, EventType.ACTIVITY_SCHEDULED, 0, activity_name=f"check_{op}")
    add(1, EventType.ACTIVITY_STARTED, 0.5, activity_name="check_1", attempt=1)
    add(1, EventType.ACTIVITY_COMPLETED, 2.0, activity_name="check_1", attempt=1)
    add(2, EventType.ACTIVITY_STARTED, 0.5, activity_name="check_2", attempt=1)
    add(2, EventType.ACTIVITY_FAILED, 1.0, activity_name="check_2", attempt=1, fire_at=at(2),
        error={"type": "ConnectionError", "message": "warehouse 2 did not answer"})
    add(2, EventType.ACTIVITY_STARTED, 2.0, activity_name="check_2", attempt=2)
    add(2, EventType.ACTIVITY_COMPLETED, 3.0, activity_name="check_2", attempt=2)
    add(3, EventType.ACTIVITY_STARTED, 1.0, activity_name="check_3", attempt=1)
    add(3, EventType.ACTIVITY_COMPLETED, 4.0, activity_name="check_3", attempt=1)
    add(4, EventType.SIDE_EFFECT_RECORDED, 4.0, activity_name="gather")
    add(5, EventType.TIMER_STARTED, 4.0, activity_name="sleep", fire_at=at(6))
    add(5, EventType.TIMER_FIRED, 6.0, activity_name="sleep")
    add(6, EventType.CHILD_WORKFLOW_STARTED, 6.0, activity_name="shipping.label",
        signal_name="order-1/6")
    add(6, EventType.CHILD_WORKFLOW_COMPLETED, 9.5, activity_name="shipping.label",
        signal_name="order-1/6", result="label-1")
    events.append(HistoryEvent(len(events) + 1, EventType.WORKFLOW_COMPLETED, at(10)))
    return WorkflowState(workflow_id="order-1", run_id="r1", workflow_type="orders.fulfil",
                         status=WorkflowStatus.COMPLETED, created_at=T0, updated_at=at(10),
                         ended_at=at(10), history=events)


def shapes(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [e for e in root.iter(f"{SVG}rect") if e.get("data-kind")]


def x_of(seconds: float) -> float:
    return LABEL_WIDTH + CHART_WIDTH * seconds / 10


def test_each_attempt_is_a_bar_where_its_recorded_times_are():
    bars = [e for e in shapes(timeline_svg(run())) if e.get("class") == "bar"]
    by = {(int(e.get("data-op")), e.get("data-kind"), e.get("data-start")): e for e in bars}
    first_attempt = by[(2, "failed", at(0.5).isoformat())]
    assert float(first_attempt.get("x")) == round(x_of(0.5), 1)
    assert float(first_attempt.get("width")) == round(x_of(1.0) - x_of(0.5), 1)
    assert "warehouse 2 did not answer" in first_attempt.find(f"{SVG}title").text
    assert (2, "completed", at(2.0).isoformat()) in by
    # The three activities overlap in time: side by side on their rows.
    assert [float(by[(op, "completed", at(s).isoformat())].get("x"))
            for op, s in ((1, 0.5), (3, 1.0))] == [round(x_of(0.5), 1), round(x_of(1.0), 1)]


def test_waits_retries_queues_children_and_markers_have_their_shapes():
    kinds = [(s.op, s.kind) for s in spans_of(run(), child_url=lambda c: f"/runs/{c}/")]
    assert (1, "queued") in kinds and (2, "retry") in kinds and (5, "wait") in kinds
    assert (6, "child") in kinds and (4, "marker") in kinds
    svg = timeline_svg(run(), child_url=lambda c: f"/runs/{c}/")
    assert '<a href="/runs/order-1/6/">' in svg
    labels = re.findall(r'<text x="4" y="\d+" fill="#333">([^<]+)</text>', svg)
    assert labels == ["1. check_1", "2. check_2", "3. check_3", "4. gather", "5. sleep",
                      "6. shipping.label"]


def test_text_from_the_history_is_escaped():
    state = run()
    state.history[5].error = {"type": "<script>", "message": "a & b"}
    svg = timeline_svg(state)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    ET.fromstring(svg)  # still well-formed


def test_an_empty_run_draws_nothing():
    state = run()
    state.history = state.history[:1]
    assert timeline_svg(state) == ""
