"""``manage.py workflows_show ID``: a workflow's state and its history."""

from __future__ import annotations

from typing import Any

from beluga_workflows.engine.types import HistoryEvent, WorkflowState
from beluga_workflows.management.base import WorkflowCommand
from beluga_workflows.management.presentation import event_json, workflow_json

DETAIL_WIDTH = 70


class Command(WorkflowCommand):
    """``workflows_show ID``: a workflow's latest run and its history."""
    help = (
        "Show the workflow ID (its latest run): type, status, input, result or error, what it "
        "waits for, then its history, one event per line in order. --json prints the same as "
        "one JSON object. An unknown id exits non-zero."
    )

    def add_arguments(self, parser):
        """Take one positional ``ID``, the workflow id, and ``--json``."""
        parser.add_argument("workflow_id", metavar="ID", help="The workflow id.")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help='Print {"workflow": ..., "history": [...]} as JSON.')

    def handle(self, *args, workflow_id, as_json, **options):
        """Print the run's fields then its history one event per line, or both as one JSON object
        with ``--json``.

        Exits non-zero when no run has that id.
        """
        handle = self.executor.get_handle(workflow_id)
        state = handle.state()
        events = self.executor.store.history(handle.id)
        if as_json:
            self.stdout.write(self.dumps({
                "workflow": workflow_json(state),
                "history": [event_json(event) for event in events],
            }, indent=2))
            return
        self.write_state(state)
        self.stdout.write("")
        self.write_history(events)

    def write_state(self, state: WorkflowState) -> None:
        """Print the run's fields as aligned label/value lines (only those it has)."""
        fields: list[tuple[str, Any]] = [
            ("Workflow", state.workflow_id),
            ("Run", state.run_id),
            ("Type", state.workflow_type),
            *([("Parent", state.parent_id)] if state.parent_id else []),
            ("Status", self.style_status(state.status)
             + (" (cancel requested)" if state.cancel_requested and state.is_open else "")),
            ("Started", state.created_at.isoformat()),
            ("Updated", state.updated_at.isoformat()),
        ]
        if state.ended_at:
            fields.append(("Ended", state.ended_at.isoformat()))
        if state.duration is not None:
            fields.append(("Duration", f"{state.duration:.3f} s"))
        if state.deadline:
            fields.append(("Deadline", state.deadline.isoformat()))
        if state.is_open and state.wait_kind:
            until = f" until {state.wait_until.isoformat()}" if state.wait_until else ""
            name = f" {state.wait_name!r}" if state.wait_name else ""
            fields.append(("Waiting", f"{state.wait_kind}{name}{until}"))
        fields.append(("Input", self.dumps(state.input)))
        if state.error:
            fields.append(("Error", self.style.ERROR(
                f"{state.error.get('type', 'Error')}: {state.error.get('message', '')}")))
        else:
            fields.append(("Result", self.dumps(state.result)))
        for label, value in fields:
            self.stdout.write(f"{self.style.MIGRATE_LABEL(label.ljust(9))} {value}")

    def write_history(self, events: list[HistoryEvent]) -> None:
        """Print a heading with the event count, then one line per event: number, time, type
        and its most telling value.
        """
        self.stdout.write(self.style.MIGRATE_HEADING(f"History ({len(events)} events)"))
        width = len(str(events[-1].id)) if events else 1
        for event in events:
            when = event.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            kind = event.type.value.ljust(22)
            style = self.style.ERROR if event.error else (lambda text: text)
            self.stdout.write(
                f"  {str(event.id).rjust(width)}  {when}  {style(kind)} {describe(event)}".rstrip()
            )


def describe(event: HistoryEvent) -> str:
    """The event's name and its most telling value, shortened to one line."""
    parts = []
    if event.name:
        parts.append(event.name)
    if event.attempt:
        parts.append(f"attempt {event.attempt}")
    if event.error:
        parts.append(f"{event.error.get('type', 'Error')}: {event.error.get('message', '')}")
    elif event.signal_payload is not None:
        parts.append(f"payload={WorkflowCommand.dumps(event.signal_payload)}")
    elif event.result is not None:
        parts.append(f"result={WorkflowCommand.dumps(event.result)}")
    elif event.input is not None:
        parts.append(f"input={WorkflowCommand.dumps(event.input)}")
    if event.fire_at is not None:
        parts.append(f"due {event.fire_at.isoformat()}")
    if event.duration is not None:
        parts.append(f"({event.duration:.3f} s)")
    text = " ".join(" ".join(parts).split())
    return text if len(text) <= DETAIL_WIDTH else text[:DETAIL_WIDTH - 1] + "…"
