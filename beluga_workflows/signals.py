"""Django signals sent as runs progress, with the same meanings as the ``Hooks`` callbacks.

Receivers get ``sender`` (the string ``"beluga_workflows"``), ``workflow_id`` and the hook's other
values as keyword arguments. Like hooks, they are sent in the worker that runs the workflow.
"""

from __future__ import annotations

from django.dispatch import Signal

from .engine.hooks import Hooks

__all__ = [
    "activity_completed",
    "activity_failed",
    "activity_started",
    "activity_retried",
    "signal_hooks",
    "workflow_canceled",
    "workflow_completed",
    "workflow_failed",
    "workflow_signaled",
    "workflow_started",
]

workflow_started = Signal()        # workflow_id, input
workflow_completed = Signal()      # workflow_id, result
workflow_failed = Signal()         # workflow_id, error
workflow_canceled = Signal()       # workflow_id
workflow_signaled = Signal()       # workflow_id, signal
activity_started = Signal()        # workflow_id, activity_name, input
activity_completed = Signal()      # workflow_id, activity_name, result
activity_failed = Signal()         # workflow_id, activity_name, error
activity_retried = Signal()        # workflow_id, activity_name, error, attempt, delay

SENDER = "beluga_workflows"


def _send(signal: Signal, *names: str):
    def send(*args):
        signal.send(sender=SENDER, **dict(zip(names, args, strict=False)))

    return send


signal_hooks = Hooks(
    on_workflow_start=_send(workflow_started, "workflow_id", "input"),
    on_workflow_complete=_send(workflow_completed, "workflow_id", "result"),
    on_workflow_fail=_send(workflow_failed, "workflow_id", "error"),
    on_activity_start=_send(activity_started, "workflow_id", "activity_name", "input"),
    on_activity_complete=_send(activity_completed, "workflow_id", "activity_name", "result"),
    on_activity_fail=_send(activity_failed, "workflow_id", "activity_name", "error"),
    on_signal=_send(workflow_signaled, "workflow_id", "signal"),
    on_retry=_send(activity_retried, "workflow_id", "activity_name", "error", "attempt", "delay"),
    on_cancel=_send(workflow_canceled, "workflow_id"),
)
