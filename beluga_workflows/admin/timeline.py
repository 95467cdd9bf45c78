"""The run page's timeline chart: a run's steps on a time axis, as an inline SVG (no JavaScript).

``timeline_svg(state, child_url)`` draws one row per operation, in operation order, against one
time axis from the run's start to its end (or now):

- activities as bars, one per attempt (failed attempts red, the completed one green), a retry's
  backoff as a dashed span between them; a started activity (``ctx.start_activity``) also shows
  its wait for a worker (from ``activity_scheduled`` to its first attempt) as a pale span, so
  parallel activities are bars side by side in time on consecutive rows;
- timers, signal, event and human waits as grey spans (open ones up to now);
- child workflows as purple bars linked to the child's page;
- markers (``now``, ``side_effect``, ``gather``...) as small ticks.

Every shape has a ``<title>`` (its tooltip: what, when, how long, the error) and ``data-start`` /
``data-end`` attributes (ISO times) so tests can check the bars against the recorded times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from ..engine.types import EventType, HistoryEvent, WorkflowState, utcnow

__all__ = ["Span", "spans_of", "timeline_svg"]

LABEL_WIDTH = 230
CHART_WIDTH = 720
ROW_HEIGHT = 22
AXIS_HEIGHT = 26
_COLORS = {
    "completed": "#2e7d32", "failed": "#c62828", "retry": "#c62828", "queued": "#ffcc80",
    "wait": "#90a4ae", "child": "#6a1b9a", "child-failed": "#c62828", "marker": "#455a64",
    "running": "#1565c0",
}
_WAIT_STARTS = {
    EventType.TIMER_STARTED: "timer", EventType.SIGNAL_WAIT_STARTED: "signal",
    EventType.EVENT_WAIT_STARTED: "event",
}
_WAIT_ENDS = {EventType.TIMER_FIRED, EventType.SIGNAL_RECEIVED, EventType.SIGNAL_TIMED_OUT,
              EventType.EVENT_RECEIVED, EventType.EVENT_TIMED_OUT}


@dataclass
class Span:
    """One shape of the chart: operation ``op``'s ``kind`` from ``start`` to ``end``."""

    op: int
    kind: str  # a key of _COLORS
    start: datetime
    end: datetime
    title: str
    link: str | None = None


def _seconds(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 0.01:  # a run of a few milliseconds: its axis marks must still differ
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _activity_spans(op: int, events: list[HistoryEvent], now: datetime) -> list[Span]:
    spans: list[Span] = []
    scheduled = next((e for e in events if e.type is EventType.ACTIVITY_SCHEDULED), None)
    starts = [e for e in events if e.type is EventType.ACTIVITY_STARTED]
    if scheduled is not None:
        first = starts[0].timestamp if starts else now
        spans.append(Span(op, "queued", scheduled.timestamp, first,
                          f"{scheduled.activity_name}: waiting for a worker "
                          f"({_seconds(first - scheduled.timestamp)})"))
    previous_end: datetime | None = None
    for started in starts:
        ended = next((e for e in events if e.id > started.id and e.attempt == started.attempt
                      and e.type in (EventType.ACTIVITY_COMPLETED, EventType.ACTIVITY_FAILED)),
                     None)
        if previous_end is not None and started.timestamp > previous_end:
            spans.append(Span(op, "retry", previous_end, started.timestamp,
                              f"backoff before attempt {started.attempt} "
                              f"({_seconds(started.timestamp - previous_end)})"))
        end = ended.timestamp if ended is not None else now
        kind = ("running" if ended is None else
                "completed" if ended.type is EventType.ACTIVITY_COMPLETED else "failed")
        text = f"{started.activity_name} attempt {started.attempt}: {kind} ({_seconds(end - started.timestamp)})"
        if ended is not None and ended.error:
            text += f": {ended.error.get('type', 'Error')}: {ended.error.get('message', '')}"
        spans.append(Span(op, kind, started.timestamp, end, text))
        previous_end = end
    return spans


def _child_spans(op: int, events: list[HistoryEvent], now: datetime,
                 child_url: Callable[[str], str] | None) -> list[Span]:
    started = events[0]
    ended = next((e for e in events if e.type in (EventType.CHILD_WORKFLOW_COMPLETED,
                                                  EventType.CHILD_WORKFLOW_FAILED)), None)
    end = ended.timestamp if ended is not None else now
    failed = ended is not None and ended.type is EventType.CHILD_WORKFLOW_FAILED
    status = "running" if ended is None else (
        (ended.error or {}).get("status", "failed") if failed else "completed")
    return [Span(op, "child-failed" if failed else "child", started.timestamp, end,
                 f"child {started.signal_name} ({started.activity_name}): {status} "
                 f"({_seconds(end - started.timestamp)})",
                 child_url(started.signal_name) if child_url else None)]


def _wait_spans(op: int, events: list[HistoryEvent], now: datetime) -> list[Span]:
    first = events[0]
    kind = _WAIT_STARTS.get(first.type)
    if kind is None:  # a signal taken at once: a point
        return [Span(op, "marker", first.timestamp, first.timestamp,
                     f"{first.type.value.replace('_', ' ')} {first.name}")]
    ended = next((e for e in events if e.type in _WAIT_ENDS), None)
    end = ended.timestamp if ended is not None else now
    how = ended.type.value.replace("_", " ") if ended is not None else "waiting"
    return [Span(op, "wait", first.timestamp, end,
                 f"{kind} {first.name}: {how} ({_seconds(end - first.timestamp)})")]


def spans_of(state: WorkflowState, child_url: Callable[[str], str] | None = None,
             now: datetime | None = None) -> list[Span]:
    """The chart's shapes for ``state``'s history, by operation."""
    now = state.ended_at or now or utcnow()
    by_op: dict[int, list[HistoryEvent]] = {}
    for event in state.history:
        if event.op:
            by_op.setdefault(event.op, []).append(event)
    spans: list[Span] = []
    for op in sorted(by_op):
        events = by_op[op]
        first = events[0].type
        if first in (EventType.ACTIVITY_SCHEDULED, EventType.ACTIVITY_STARTED,
                     EventType.ACTIVITY_COMPLETED, EventType.ACTIVITY_FAILED):
            spans.extend(_activity_spans(op, events, now))
        elif first is EventType.CHILD_WORKFLOW_STARTED:
            spans.extend(_child_spans(op, events, now, child_url))
        elif first in _WAIT_STARTS or first in _WAIT_ENDS:
            spans.extend(_wait_spans(op, events, now))
        else:
            spans.append(Span(op, "marker", events[0].timestamp, events[0].timestamp,
                              f"{first.value.replace('_', ' ')} {events[0].name}"))
    return spans


def _label(state: WorkflowState, op: int) -> str:
    events = [e for e in state.history if e.op == op]
    name = next((e.name for e in events if e.name), events[0].type.value if events else "")
    return f"{op}. {name}"[:34]


def timeline_svg(state: WorkflowState, child_url: Callable[[str], str] | None = None,
                 now: datetime | None = None) -> SafeString:
    """The chart of ``state`` (with its history) as SVG markup; empty when nothing ran yet."""
    spans = spans_of(state, child_url, now)
    if not spans:
        return mark_safe("")
    # A resumed or forked run replays events recorded before it began: start the axis there.
    begin = min([state.created_at] + [s.start for s in spans])
    end = max([state.ended_at or now or utcnow()] + [s.end for s in spans])
    total = max((end - begin).total_seconds(), 0.001)
    ops = sorted({s.op for s in spans})
    row = {op: index for index, op in enumerate(ops)}
    height = AXIS_HEIGHT + ROW_HEIGHT * len(ops) + 8
    width = LABEL_WIDTH + CHART_WIDTH + 20

    def x(at: datetime) -> float:
        return LABEL_WIDTH + CHART_WIDTH * max((at - begin).total_seconds(), 0.0) / total

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="beluga-chart-svg" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'aria-label="Timeline of the run\'s steps" font-family="sans-serif" font-size="11">']
    for tick in range(6):
        at = begin + timedelta(seconds=total * tick / 5)
        tx = x(at)
        parts.append(f'<line x1="{tx:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{tx:.1f}" y2="{height}" '
                     f'stroke="#e0e0e0"/>')
        parts.append(f'<text x="{tx:.1f}" y="{AXIS_HEIGHT - 10}" text-anchor="middle" '
                     f'fill="#555">+{escape(_seconds(at - begin))}</text>')
    for op in ops:
        y = AXIS_HEIGHT + row[op] * ROW_HEIGHT
        parts.append(f'<text x="4" y="{y + 15}" fill="#333">{escape(_label(state, op))}</text>')
    for span in spans:
        y = AXIS_HEIGHT + row[span.op] * ROW_HEIGHT
        x0, x1 = x(span.start), x(span.end)
        data = (f'data-op="{span.op}" data-kind="{span.kind}" '
                f'data-start="{span.start.isoformat()}" data-end="{span.end.isoformat()}"')
        title = f"<title>{escape(span.title)}</title>"
        color = _COLORS[span.kind]
        if span.kind == "marker":
            shape = (f'<rect class="mark" {data} x="{x0 - 2:.1f}" y="{y + 5}" width="4" '
                     f'height="12" fill="{color}">{title}</rect>')
        elif span.kind in ("retry", "wait", "queued"):
            dash = ' stroke-dasharray="4 3"' if span.kind == "retry" else ""
            shape = (f'<rect class="span" {data} x="{x0:.1f}" y="{y + 8}" '
                     f'width="{max(x1 - x0, 1):.1f}" height="6" fill="{color}" '
                     f'fill-opacity="0.6" stroke="{color}"{dash}>{title}</rect>')
        else:
            shape = (f'<rect class="bar" {data} x="{x0:.1f}" y="{y + 3}" '
                     f'width="{max(x1 - x0, 2):.1f}" height="16" rx="2" fill="{color}">'
                     f'{title}</rect>')
        if span.link:
            shape = f'<a href="{escape(span.link)}">{shape}</a>'
        parts.append(shape)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
