"""Lifecycle hooks: callbacks fired in the worker that runs the workflow.

Hooks fire once per live event, never again when a run is replayed. An exception raised by a hook
is logged and swallowed: observability must not break a workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Hooks", "compose_hooks"]

logger = logging.getLogger("beluga_workflows.hooks")


@dataclass(frozen=True)
class Hooks:
    """Optional callbacks; any may be ``None``.

    Signatures (``workflow_id`` first, as in the Go package):

    - ``on_workflow_start(workflow_id, input)``
    - ``on_workflow_complete(workflow_id, result)``
    - ``on_workflow_fail(workflow_id, error: BaseException)``
    - ``on_activity_start(workflow_id, activity_name, input)``
    - ``on_activity_complete(workflow_id, activity_name, result)``
    - ``on_activity_fail(workflow_id, activity_name, error: BaseException)``
    - ``on_signal(workflow_id, signal: Signal)``
    - ``on_retry(workflow_id, activity_name, error: BaseException, attempt: int, delay: float)``
    - ``on_cancel(workflow_id)``
    """

    on_workflow_start: Callable[..., Any] | None = None
    on_workflow_complete: Callable[..., Any] | None = None
    on_workflow_fail: Callable[..., Any] | None = None
    on_activity_start: Callable[..., Any] | None = None
    on_activity_complete: Callable[..., Any] | None = None
    on_activity_fail: Callable[..., Any] | None = None
    on_signal: Callable[..., Any] | None = None
    on_retry: Callable[..., Any] | None = None
    on_cancel: Callable[..., Any] | None = None

    def fire(self, name: str, *args: Any) -> None:
        """Call hook ``name`` if it is set; log and swallow what it raises."""
        callback = getattr(self, name)
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("beluga_workflows hook %s raised", name)


HOOK_NAMES = tuple(f.name for f in fields(Hooks))


def compose_hooks(*hooks: Hooks | None) -> Hooks:
    """One ``Hooks`` that calls each given hook in order (``None`` entries are skipped)."""
    present = [h for h in hooks if h is not None]
    if len(present) == 1:
        return present[0]

    def chain(name: str) -> Callable[..., Any] | None:
        callbacks = [getattr(h, name) for h in present if getattr(h, name) is not None]
        if not callbacks:
            return None

        def call_all(*args: Any) -> None:
            for callback in callbacks:
                try:
                    callback(*args)
                except Exception:
                    logger.exception("beluga_workflows hook %s raised", name)

        return call_all

    return Hooks(**{name: chain(name) for name in HOOK_NAMES})
