"""The REST API's events: send one, list them, and see what one did.

- ``POST /events/`` ``{"name", "data"?, "id"?}`` sends an event (as ``send_event``) and answers
  202 with its ``SendResult``: a resent id is ``duplicate`` and starts nothing; ``skipped`` and
  ``deferred`` name the workflows that start nothing for it (rate limit, ``where``) or hold it
  in a debounce or batch group.
- ``GET /events/?name=`` lists the accepted events, newest first, a page at a time.
- ``GET /events/{id}/`` is one event with its outcome: the runs it started, woke and canceled,
  and the triggers it skipped, with why.

Writes need ``API_WRITE_PERMISSION_CLASSES`` (with ``HasWorkflowModelPermission``: the
``start_workflow`` permission, since an event may start workflows); reads the read classes.
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from .exceptions import NotFound
from .fields import (
    EVENT_TEXT_PATTERN,
    AnyJSONField,
    FilterTextField,
    JSONObjectField,
    QueryIntegerField,
    TextField,
)
from .serializers import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_POSITION, ErrorSerializer
from .views import WorkflowAPIView, _page_links, _responses

__all__ = ["EventDetailView", "EventListView"]


class StrictSerializerExtension(OpenApiSerializerExtension):
    """Says in the schema what ``StrictSerializer`` enforces: no properties but its fields."""

    target_class = "beluga_workflows.api.events.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        """The serializer's usual schema with ``additionalProperties: false``."""
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        return schema


class StrictSerializer(serializers.Serializer):
    """A request body whose keys must all be fields: a misspelt one is a 400, not ignored."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Refuse keys that are no field of this serializer.

        Raises:
            ValidationError: naming the unknown keys and the fields there are.
        """
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                f"unknown field(s): {', '.join(unknown)}; the fields are "
                f"{', '.join(self.fields)}")
        return attrs


class SendEventSerializer(StrictSerializer):
    """The body of ``POST /events/``."""

    name = TextField(
        min_length=1, max_length=255,
        validators=[RegexValidator(EVENT_TEXT_PATTERN, "An event name must not hold control "
                                                       "characters nor start or end with a space.")],
        help_text="The event's name, e.g. `orders/placed` (1-255 characters, no control "
                  "characters, no surrounding whitespace).",
    )
    data = JSONObjectField(required=False, allow_null=False, help_text="A JSON object "
                                                                       "(omitted: `{}`).")
    id = TextField(required=False, min_length=1, max_length=255,
                   validators=[RegexValidator(EVENT_TEXT_PATTERN, "An event id must not hold "
                                                                  "control characters nor start "
                                                                  "or end with a space.")],
                   help_text="The idempotency key: a second event with an id already accepted "
                             "is not stored again and starts nothing (omitted: generated).")


class EventListQuerySerializer(serializers.Serializer):
    """The query string of ``GET /events/``."""

    name = FilterTextField(required=False, allow_blank=True,
                           help_text="Only events of this name (empty: any).")
    limit = QueryIntegerField(required=False, default=DEFAULT_PAGE_SIZE, min_value=1,
                              max_value=MAX_PAGE_SIZE, help_text="How many events per page.")
    offset = QueryIntegerField(required=False, default=0, min_value=0, max_value=MAX_POSITION,
                               help_text="How many events to skip.")


class SkippedSerializer(serializers.Serializer):
    """A trigger the event did not start, and why."""

    workflow_type = serializers.CharField()
    reason = serializers.CharField(help_text="Its `where` is false, its rate limit is reached, "
                                             "a newer event of its debounce burst came...")


class DeferredSerializer(serializers.Serializer):
    """A workflow holding the event in a debounce or batch group: its run starts later."""

    workflow_type = serializers.CharField()
    reason = serializers.CharField(help_text="Which kind of group holds it.")
    due_at = serializers.CharField(allow_blank=True,
                                   help_text="When the group is due to fire (ISO 8601), as known "
                                             "when the event was accepted; empty if unknown.")


class SendResultSerializer(serializers.Serializer):
    """What sending an event did, as far as known when it was accepted."""

    event_id = serializers.CharField()
    duplicate = serializers.BooleanField(help_text="An event with this id had been accepted "
                                                   "before: nothing was stored or started.")
    started = serializers.ListField(child=serializers.CharField(),
                                    help_text="Ids of the runs its triggers start.")
    woken = serializers.ListField(child=serializers.CharField(),
                                  help_text="Runs whose `wait_for_event` it satisfied, when "
                                            "known already (else see the event's outcome).")
    canceled = serializers.ListField(child=serializers.CharField(),
                                     help_text="Runs it canceled (`cancel_on`), when known "
                                               "already.")
    skipped = SkippedSerializer(many=True, help_text="The workflows it triggers that start "
                                                     "nothing, with why.")
    deferred = DeferredSerializer(many=True, help_text="The workflows holding it in a debounce "
                                                       "or batch group.")


class OutcomeSerializer(serializers.Serializer):
    """What the event's fan-out did."""

    started = serializers.ListField(child=serializers.CharField())
    woken = serializers.ListField(child=serializers.CharField())
    canceled = serializers.ListField(child=serializers.CharField())
    skipped = SkippedSerializer(many=True)


class EventSerializer(serializers.Serializer):
    """One accepted event and its outcome."""

    id = serializers.CharField()
    name = serializers.CharField()
    data = AnyJSONField()
    ts = serializers.DateTimeField(help_text="When it happened (as sent, or when accepted).")
    received_at = serializers.DateTimeField(help_text="When it was accepted.")
    fanned_out = serializers.BooleanField(help_text="Its triggers, waits and cancels are done.")
    outcome = OutcomeSerializer()

    def to_representation(self, record: Any) -> dict[str, Any]:
        """The record as JSON: the event's fields, when it was accepted, and its outcome."""
        outcome = record.outcome or {}
        return super().to_representation({
            "id": record.event.id, "name": record.event.name, "data": record.event.data,
            "ts": record.event.ts, "received_at": record.received_at,
            "fanned_out": record.fanned_out_at is not None,
            "outcome": {key: outcome.get(key) or [] for key in
                        ("started", "woken", "canceled", "skipped")},
        })


class EventPageSerializer(serializers.Serializer):
    """A page of events, newest first."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = EventSerializer(many=True)


class EventListView(WorkflowAPIView):
    """``/events/``: send an event, list the events."""

    operation = "event_list"
    workflow_action = "start"

    @extend_schema(
        operation_id="events_list", summary="List events",
        description="The accepted events, newest first, a page at a time.",
        parameters=[EventListQuerySerializer],
        responses=_responses(r200=EventPageSerializer, r400=ErrorSerializer), tags=["events"],
    )
    def get(self, request: Request) -> Response:
        """List events by ``name``; answers 200 with a page, 400 for a bad query parameter."""
        params = self.parse(EventListQuerySerializer, request.query_params)
        limit, offset, name = params["limit"], params["offset"], params.get("name") or None
        store = self.executor.store
        records = store.list_events(name=name, limit=limit, offset=offset)
        count = store.count_events(name=name)
        next_url, previous_url = _page_links(request, offset, limit, count)
        return Response({"count": count, "next": next_url, "previous": previous_url,
                         "results": EventSerializer(records, many=True).data})

    @extend_schema(
        operation_id="events_send", summary="Send an event",
        description="Accept an event: the workflows it triggers start, the runs waiting for it "
                    "wake, the runs it cancels are canceled (done by the workers, after the "
                    "answer). A resent id is a duplicate and does nothing.",
        request=SendEventSerializer,
        responses=_responses(r202=SendResultSerializer, r400=ErrorSerializer),
        examples=[OpenApiExample("placed", request_only=True, value={
            "name": "orders/placed", "data": {"order_id": "o-1", "total": 42}, "id": "placed-o-1"})],
        tags=["events"],
    )
    def post(self, request: Request) -> Response:
        """Send the event; answers 202 with the ``SendResult``, 400 for a bad body."""
        from ..engine.events import Event

        body = self.parse(SendEventSerializer, request.data)
        event = Event(name=body["name"], data=body.get("data"), id=body.get("id"))
        result = self.executor.send_event(event)
        return Response(SendResultSerializer(result.to_dict()).data,
                        status=status.HTTP_202_ACCEPTED)


class EventDetailView(WorkflowAPIView):
    """``/events/{id}/``: one event and what it did."""

    operation = "event_detail"

    @extend_schema(
        operation_id="events_retrieve", summary="An event and its outcome",
        parameters=[OpenApiParameter("event_id", str, OpenApiParameter.PATH,
                                     description="The event's id.")],
        responses=_responses(r200=EventSerializer, r404=ErrorSerializer), tags=["events"],
    )
    def get(self, request: Request, event_id: str) -> Response:
        """The event with its outcome; 404 when no event has that id."""
        if not event_id or len(event_id) > 255:
            raise NotFound(f"no event can have the id {event_id!r}: an id is 1 to 255 characters")
        record = self.executor.store.get_event(event_id)
        if record is None:
            raise NotFound(f"no event with id {event_id!r}")
        return Response(EventSerializer(record).data)
