"""``manage.py workflows_send_event NAME``: send an event to the workflows that wait for it."""

from __future__ import annotations

import json

from django.core.management.base import CommandError

from beluga_workflows.management.base import WorkflowCommand


class Command(WorkflowCommand):
    """``workflows_send_event NAME [--data JSON] [--id ID]``: send an event."""
    help = (
        "Send the event NAME with an optional JSON object as its data. Every workflow triggered "
        "by that name (@workflow(on_event=...)) starts one run, runs waiting for it in "
        "ctx.wait_for_event wake, runs it cancels (cancel_on) are canceled. With --id, an event "
        "already accepted under that id is a duplicate and does nothing. Prints what it did as "
        "JSON. Bad JSON, data that is not an object or a bad name exits non-zero."
    )

    def add_arguments(self, parser):
        """Take the positional ``NAME``, ``--data JSON`` and ``--id ID``."""
        parser.add_argument("name", metavar="NAME", help="The event's name, e.g. orders/placed.")
        parser.add_argument("--data", metavar="JSON",
                            help='The event\'s data, a JSON object, e.g. \'{"order_id": "o-1"}\'. '
                                 "Default: {}.")
        parser.add_argument("--id", dest="event_id", metavar="ID",
                            help="The idempotency key (default: generated).")

    def handle(self, *args, name, data, event_id, **options):
        """Send the event and print its ``SendResult`` as one JSON object.

        Exits non-zero when ``--data`` is not a JSON object, or the name or id is not valid.
        """
        from beluga_workflows.engine.events import Event

        value = self.parse_json(data, "--data")
        if value is not None and not isinstance(value, dict):
            raise CommandError(f"--data must be a JSON object, not {type(value).__name__}")
        result = self.executor.send_event(Event(name=name, data=value, id=event_id))
        self.stdout.write(json.dumps({
            "event_id": result.event_id, "duplicate": result.duplicate,
            "started": list(result.started), "woken": list(result.woken),
            "canceled": list(result.canceled)}))
