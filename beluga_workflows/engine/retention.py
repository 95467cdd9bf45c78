"""Retention: deleting ended runs by end time, in bounded batches (API.md §11).

The store deletes (``WorkflowStore.purge_ended``: one bounded batch per call, each run's
condition checked again in the write that deletes it); this module decides how many calls, and
how old a run must be. The executor's ``purge``, ``count_purgeable`` and ``apply_retention`` (the
sweep's pass) are built on it, and ``workflows_purge`` on them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError
from .types import WorkflowStatus, to_seconds

if TYPE_CHECKING:
    from ..stores.base import WorkflowStore

__all__ = ["DEFAULT_BATCH", "ENDED_STATUSES", "positive_duration", "purge_cutoff",
           "purge_filter", "purge_filters", "purge_in_batches"]

# Runs one store call deletes at most: each batch's statements stay this small.
DEFAULT_BATCH = 500


def positive_duration(value: timedelta | float | str | None, what: str) -> float | None:
    """``value`` as seconds by the rules of every duration (``None`` stays ``None``).

    Raises:
        InvalidInputError: not a duration, or zero.
    """
    seconds = to_seconds(value, what)
    if seconds == 0:
        raise InvalidInputError(f"{what} must be a positive duration, not 0")
    return seconds


def purge_cutoff(now: datetime, older_than: timedelta | float | str | None,
                 retention: float | None, *, what: str = "older_than") -> datetime:
    """The end time before which ended runs go: ``now`` less ``older_than`` (default
    ``retention``, in seconds). ``what`` names ``older_than`` in errors.

    Raises:
        InvalidInputError: ``older_than`` is not a positive duration, or neither is given.
    """
    seconds = positive_duration(older_than, what)
    if seconds is None:
        seconds = retention
    if seconds is None:
        raise InvalidInputError(
            f'no retention: give {what} (how long ago runs must have ended) or set '
            f'BELUGA_WORKFLOWS["RETENTION"]')
    return now - timedelta(seconds=seconds)


# The statuses ``purge_ended``/``count_ended`` may be narrowed to: every final one.
ENDED_STATUSES = tuple(s for s in WorkflowStatus if not s.is_open)


def purge_filter(status: WorkflowStatus | str | None, workflow_type: str | None, *,
                 what: str = "status") -> tuple[WorkflowStatus | None, str | None]:
    """The retention filters of ``purge_ended``/``count_ended`` checked and normalised: the
    ended status (``None``: any) and the workflow type (``None`` or ``""``: any). ``what``
    names ``status`` in errors.

    Raises:
        InvalidInputError: ``status`` is ``running`` or not a status, or ``workflow_type`` is not
            a string.
    """
    allowed = ", ".join(s.value for s in ENDED_STATUSES)
    if status is not None:
        try:
            status = WorkflowStatus(status)
        except ValueError:
            raise InvalidInputError(
                f"{what} {status!r} is not an ended status (one of {allowed})") from None
        if status.is_open:
            raise InvalidInputError(
                f"{what} {status.value!r} is not an ended status: only ended runs are purged "
                f"(one of {allowed})")
    if workflow_type is not None and not isinstance(workflow_type, str):
        raise InvalidInputError(f"workflow_type must be a string, not {workflow_type!r}")
    return status, workflow_type or None


def purge_filters(status: WorkflowStatus | str | None = None,
                  workflow_type: str | None = None) -> dict[str, Any]:
    """The filters of ``purge_ended``/``count_ended`` checked, as the keywords to pass: only
    those given, so a store call without filters is the one it always was.

    Raises:
        InvalidInputError: ``status`` is not an ended status, or ``workflow_type`` not a string.
    """
    status, workflow_type = purge_filter(status, workflow_type)
    return {k: v for k, v in (("status", status), ("workflow_type", workflow_type))
            if v is not None}


def purge_in_batches(store: WorkflowStore, before: datetime, *, limit: int | None,
                     batch: int = DEFAULT_BATCH, status: WorkflowStatus | str | None = None,
                     workflow_type: str | None = None) -> list[str]:
    """``store.purge_ended(before)`` in calls of ``batch`` runs, at most ``limit`` in all
    (``None``: until a call finds fewer than it asked for); the deleted ids, oldest first.
    ``status`` and ``workflow_type`` (optional) narrow it to ended runs of that status and type.

    Raises:
        InvalidInputError: ``batch`` is not a whole number of at least 1, or a bad filter
            (checked before the store is called).
        StoreError: the store cannot purge.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InvalidInputError(f"batch must be a whole number of runs of at least 1, not {batch!r}")
    filters = purge_filters(status, workflow_type)
    gone: list[str] = []
    while limit is None or len(gone) < limit:
        size = batch if limit is None else min(batch, limit - len(gone))
        deleted = store.purge_ended(before, limit=size, **filters)
        gone += deleted
        if len(deleted) < size:
            break  # none left (or the rest are being written: the next pass gets them)
    return gone
