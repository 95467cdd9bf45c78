"""How a URL below ``workflows/`` names an operation and a workflow id.

Workflow ids may contain ``/`` (and HTTP servers decode ``%2F`` before Django sees the path), so
``workflows/a/history/`` could be the history of ``a`` or the workflow ``a/history``. The URL
patterns capture the id greedily with the ``path`` converter; this module then settles which
reading the request means:

1. Only readings whose operation accepts the request's method count: ``POST .../signal/``,
   ``POST .../cancel/``, ``POST .../resume/``, ``POST .../fork/`` and ``POST .../human-task/``
   are always that operation; ``GET a/signal/`` is the workflow ``a/signal``.
2. Of several readings for the method, the first (query, history, human task, then detail) whose
   workflow exists wins; when none exists, the first one answers (with its 404).

So every id that ``execute`` accepts is reachable, except when two workflows both exist whose
ids make the same URL (``a`` and ``a/history``): then ``GET .../a/history/`` is the history of
``a`` (and ``GET .../a/human-task/`` the human task of ``a``, even when it waits for none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..engine.errors import WorkflowError
from ..engine.executor import validate_workflow_id
from ..runtimes import get_executor

__all__ = ["Reading", "choose_reading", "readings_of"]

_GET = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})
_GET_POST = _GET | _POST

# (operation, pattern of the URL tail after "workflows/", methods), in priority order. The same
# shapes as the routes in urls.py: a greedy id (newlines too), then a fixed suffix.
_PATTERNS: tuple[tuple[str, re.Pattern[str], frozenset[str]], ...] = (
    ("query", re.compile(r"(?P<workflow_id>.+)/query/(?P<query_type>[^/]+)/", re.S), _GET),
    ("history", re.compile(r"(?P<workflow_id>.+)/history/", re.S), _GET),
    ("human_task", re.compile(r"(?P<workflow_id>.+)/human-task/", re.S), _GET_POST),
    ("signal", re.compile(r"(?P<workflow_id>.+)/signal/", re.S), _POST),
    ("cancel", re.compile(r"(?P<workflow_id>.+)/cancel/", re.S), _POST),
    ("resume", re.compile(r"(?P<workflow_id>.+)/resume/", re.S), _POST),
    ("fork", re.compile(r"(?P<workflow_id>.+)/fork/", re.S), _POST),
    ("detail", re.compile(r"(?P<workflow_id>.+)/", re.S), _GET),
)

SUFFIXES = {
    "history": "history/",
    "human_task": "human-task/",
    "signal": "signal/",
    "cancel": "cancel/",
    "resume": "resume/",
    "fork": "fork/",
    "detail": "",
}


@dataclass(frozen=True)
class Reading:
    """One way to read a URL tail: an operation and its URL arguments."""

    operation: str
    kwargs: dict[str, str]


def tail_of(operation: str, kwargs: dict[str, str]) -> str:
    """The URL tail (after ``workflows/``) of ``operation`` with these URL arguments."""
    if operation == "query":
        return f"{kwargs['workflow_id']}/query/{kwargs['query_type']}/"
    return f"{kwargs['workflow_id']}/{SUFFIXES[operation]}"


def readings_of(tail: str, method: str) -> list[Reading]:
    """Every reading of ``tail`` whose operation accepts ``method``, in priority order."""
    found = []
    for operation, pattern, methods in _PATTERNS:
        match = pattern.fullmatch(tail)
        if match and method in methods:
            found.append(Reading(operation, match.groupdict()))
    return found


def _exists(workflow_id: str) -> bool:
    try:
        validate_workflow_id(workflow_id)
        return get_executor().store.load(workflow_id, with_history=False) is not None
    except WorkflowError:
        return False


def choose_reading(operation: str, kwargs: dict[str, str], method: str) -> Reading:
    """The reading a request means, given the route Django matched (``operation``, ``kwargs``).

    Only ambiguous URLs cost a store read: one that has a single reading for the method is taken
    as it is.
    """
    matched = Reading(operation, dict(kwargs))
    candidates = readings_of(tail_of(operation, kwargs), method.upper())
    if not candidates:
        return matched  # no operation takes this method here: let the matched view say 405
    if len(candidates) == 1:
        return candidates[0]
    for candidate in candidates:
        if _exists(candidate.kwargs["workflow_id"]):
            return candidate
    return candidates[0]
