"""Template filters of the workflow admin pages: status badges, JSON blocks, durations."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.html import format_html

register = template.Library()


@register.filter
def status_badge(status: Any) -> str:
    """A coloured badge for a run status (``running``, ``completed``, ...)."""
    value = getattr(status, "value", status) or ""
    return format_html('<span class="beluga-badge beluga-{}">{}</span>', value,
                       str(value).replace("_", " "))


@register.filter
def pretty_json(value: Any) -> str:
    """``value`` as indented JSON (non-ASCII kept readable)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, cls=DjangoJSONEncoder)


@register.filter
def duration(seconds: Any) -> str:
    """Seconds as a short human duration: ``850 ms``, ``12.3 s``, ``4 min 5 s``, ``2 d 3 h``."""
    if seconds is None or seconds == "":
        return "—"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def json_preview(value: Any, length: int = 80) -> str:
    """``value`` as one line of compact JSON, cut to ``length`` characters."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), cls=DjangoJSONEncoder)
    return text if len(text) <= int(length) else text[: int(length) - 1] + "…"


# The timeline chart reads at most this many events of a run.
CHART_EVENTS = 5000


def _with_history(state: Any) -> Any:
    """``state`` with its history (the run page loads it without: it pages the events), read
    from the executor's store, as every admin page reads."""
    if state.history:
        return state
    import dataclasses

    from ..runtimes import get_executor

    return dataclasses.replace(state, history=get_executor().store.history(
        state.workflow_id, limit=CHART_EVENTS))


@register.simple_tag
def run_timeline(state: Any) -> str:
    """The run's timeline chart (``admin/timeline.py``): an inline SVG, children linked to
    their pages (relative to the run's own page, ``.../<id>/change/``); at most
    ``CHART_EVENTS`` events are drawn."""
    from django.contrib.admin.utils import quote

    from ..admin.timeline import timeline_svg

    return timeline_svg(_with_history(state),
                        child_url=lambda child_id: f"../../{quote(child_id)}/change/")


# The run page names this many children; the rest are on the list page (``?parent=``).
CHILDREN_SHOWN = 20


@register.simple_tag
def run_relatives(state: Any) -> dict[str, Any]:
    """The run's parent and the children its history started: ``{"parent": id or None,
    "children": the first CHILDREN_SHOWN ids, "more": how many more}``."""
    from ..engine.types import EventType

    history = _with_history(state).history
    children = [e.signal_name for e in history if e.type is EventType.CHILD_WORKFLOW_STARTED]
    return {"parent": state.parent_id or None, "children": children[:CHILDREN_SHOWN],
            "more": max(len(children) - CHILDREN_SHOWN, 0)}


@register.filter
def admin_id(value: Any) -> str:
    """A workflow id quoted as the admin puts it in a URL path segment."""
    from django.contrib.admin.utils import quote

    return quote(str(value))
