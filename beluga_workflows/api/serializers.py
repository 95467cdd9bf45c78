"""Serializers of the REST API: request bodies and query strings in; workflows, events and human
tasks out.

They parse and present only; what is a valid workflow type, id, input, timeout or answer is
decided by the engine, whose ``InvalidInputError`` the views answer with 400.
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..engine.errors import InvalidInputError
from ..engine.executor import MAX_ID_LENGTH, validate_workflow_id
from ..engine.types import EventType, WorkflowState, WorkflowStatus
from .fields import (
    MAX_TIMEOUT_SECONDS,
    SIGNAL_NAME_PATTERN,
    AnyJSONField,
    DecisionField,
    ErrorInfoField,
    FilterTextField,
    JSONIntegerField,
    PlainTextField,
    QueryIntegerField,
    SecondsField,
    TextField,
    WorkflowIdField,
    WorkflowTypeField,
)

__all__ = [
    "ErrorSerializer",
    "ForkWorkflowSerializer",
    "HistoryEventSerializer",
    "HistoryPageSerializer",
    "HistoryQuerySerializer",
    "HumanAnswerAcceptedSerializer",
    "HumanAnswerSerializer",
    "HumanTaskListQuerySerializer",
    "HumanTaskPageSerializer",
    "HumanTaskSerializer",
    "ListQuerySerializer",
    "QueryResultSerializer",
    "SignalAcceptedSerializer",
    "SignalRequestSerializer",
    "StartWorkflowSerializer",
    "WorkflowPageSerializer",
    "WorkflowSerializer",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
DEFAULT_HISTORY_PAGE_SIZE = 100
MAX_HISTORY_PAGE_SIZE = 1000
# Largest offset or sequence number taken: every database's integers hold it.
MAX_POSITION = 2**31 - 1

_STATUS_CHOICES = [s.value for s in WorkflowStatus]
_EVENT_CHOICES = [e.value for e in EventType]


# -- requests ------------------------------------------------------------------------------------

class StartWorkflowSerializer(serializers.Serializer):
    """The body of ``POST /workflows/``."""

    workflow_type = WorkflowTypeField(
        max_length=255, help_text="The registered name of the workflow to run."
    )
    id = WorkflowIdField(
        required=False, allow_null=True, max_length=MAX_ID_LENGTH,
        help_text="The workflow id: 1 to 255 characters, `/`, spaces and unicode included; no "
                  "control characters, no leading or trailing whitespace, not `.` or `..`. "
                  "Omitted: a UUID-based id is generated. An id whose run has ended starts a "
                  "new run.",
    )
    input = AnyJSONField(required=False, default=None, help_text="The workflow's JSON input.")
    timeout = SecondsField(
        required=False, allow_null=True, max_value=MAX_TIMEOUT_SECONDS,
        help_text="Seconds (> 0) the run may take from its start; past it the run ends "
                  "`timed_out`.",
    )


class SignalRequestSerializer(serializers.Serializer):
    """The body of ``POST /workflows/{id}/signal/``."""

    name = TextField(
        min_length=1, max_length=255,
        validators=[RegexValidator(SIGNAL_NAME_PATTERN,
                                   "A signal name must not be blank nor hold NUL.")],
        help_text="The signal's name (what the workflow's `ctx.receive_signal` waits for).",
    )
    payload = AnyJSONField(required=False, default=None, help_text="The signal's JSON payload.")


class ForkWorkflowSerializer(serializers.Serializer):
    """The body of ``POST /workflows/{id}/fork/`` (may be empty)."""

    from_event = JSONIntegerField(
        required=False, allow_null=True, min_value=2, max_value=MAX_POSITION,
        help_text="The id of the event the new run goes live at: the first event of a step (its "
                  "`op` changes there), from 2 to the last event's id. The events before it are "
                  "replayed, so the steps they record are not run again. Omitted: from the "
                  "start, replaying nothing.",
    )
    id = WorkflowIdField(
        required=False, allow_null=True, max_length=MAX_ID_LENGTH,
        help_text="The new run's workflow id (the rules of a start's `id`). Omitted: "
                  "`<id>-fork-<8 hex digits>`. The forked run's own id replaces that run; an id "
                  "whose run is open is refused (409).",
    )

    def validate_id(self, value: str | None) -> str | None:
        """The id as the executor takes it (``validate_workflow_id``), or ``None``."""
        if value is None:
            return None
        try:
            return validate_workflow_id(value)
        except InvalidInputError as exc:
            raise serializers.ValidationError(str(exc)) from None


class ListQuerySerializer(serializers.Serializer):
    """The query string of ``GET /workflows/``."""

    status = serializers.ChoiceField(choices=_STATUS_CHOICES, required=False, allow_blank=True,
                                     help_text="Only runs in this status (empty: any).")
    workflow_type = FilterTextField(required=False, allow_blank=True,
                                    help_text="Only runs of this type (empty: any).")
    parent_id = FilterTextField(required=False, allow_blank=True,
                                help_text="Only the child runs of the workflow with this id "
                                          "(empty: any run).")
    limit = QueryIntegerField(
        required=False, default=DEFAULT_PAGE_SIZE, min_value=1, max_value=MAX_PAGE_SIZE,
        help_text="How many workflows per page.",
    )
    offset = QueryIntegerField(required=False, default=0, min_value=0, max_value=MAX_POSITION,
                               help_text="How many workflows to skip.")


class HistoryQuerySerializer(serializers.Serializer):
    """The query string of ``GET /workflows/{id}/history/``."""

    after = QueryIntegerField(
        required=False, default=0, min_value=0, max_value=MAX_POSITION,
        help_text="Only events whose sequence number is greater than this.",
    )
    limit = QueryIntegerField(
        required=False, default=DEFAULT_HISTORY_PAGE_SIZE, min_value=1,
        max_value=MAX_HISTORY_PAGE_SIZE, help_text="How many events per page.",
    )


class HumanTaskListQuerySerializer(serializers.Serializer):
    """The query string of ``GET /human-tasks/``."""

    workflow_type = FilterTextField(required=False, allow_blank=True,
                                    help_text="Only tasks of runs of this type (empty: any).")
    limit = QueryIntegerField(
        required=False, default=DEFAULT_PAGE_SIZE, min_value=1, max_value=MAX_PAGE_SIZE,
        help_text="How many tasks per page.",
    )
    offset = QueryIntegerField(required=False, default=0, min_value=0, max_value=MAX_POSITION,
                               help_text="How many tasks to skip.")


class HumanAnswerSerializer(serializers.Serializer):
    """The body of ``POST /workflows/{id}/human-task/``: a person's answer."""

    decision = DecisionField(help_text="The decision; it must be one of the task's `choices`.")
    feedback = PlainTextField(required=False,
                              help_text="Why, in the person's words (plain text; default empty).")
    modified = AnyJSONField(required=False, default=None,
                            help_text="For `modify`: the data as it should be (any JSON).")
    request_id = TextField(
        required=False, allow_null=True, default=None, min_length=1, max_length=255,
        validators=[RegexValidator(r"^[^\x00]+$", "A request id must not hold NUL.")],
        help_text="The request answered, its `request_id` as listed: when the run has moved on "
                  "to another request the answer is refused (400). Omitted: whatever request the "
                  "run waits for.",
    )


# -- responses -----------------------------------------------------------------------------------

class WaitSerializer(serializers.Serializer):
    """What an open run waits for."""

    kind = serializers.CharField(help_text="`signal`, `timer`, `retry`, ...")
    name = serializers.CharField(allow_blank=True, help_text="The signal or timer name.")
    until = serializers.DateTimeField(allow_null=True, help_text="When the wait times out or fires.")


class WorkflowSerializer(serializers.Serializer):
    """One run of a workflow (the latest run of its id)."""

    id = serializers.CharField(source="workflow_id", help_text="The workflow id.")
    run_id = serializers.CharField(help_text="This run's id; a restarted id gets a new one.")
    workflow_type = serializers.CharField()
    status = serializers.ChoiceField(choices=_STATUS_CHOICES)
    input = AnyJSONField()
    result = AnyJSONField(help_text="The return value, once completed.")
    error = ErrorInfoField(help_text="Why the run failed, was canceled or timed out.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    deadline = serializers.DateTimeField(allow_null=True,
                                         help_text="When the run times out, if it has a timeout.")
    duration = serializers.FloatField(
        allow_null=True, help_text="Seconds from start to end (to the last update while running)."
    )
    cancel_requested = serializers.BooleanField()
    parent_id = serializers.CharField(
        allow_blank=True, help_text="The id of the workflow that started this run as a child "
                                    "(empty for other runs).")
    waiting_for = serializers.SerializerMethodField()

    @extend_schema_field(WaitSerializer(allow_null=True))
    def get_waiting_for(self, state: WorkflowState) -> dict[str, Any] | None:
        """``{"kind", "name", "until"}`` of what the open run waits for; ``None`` when it has
        ended or waits for nothing.
        """
        if not state.is_open or not state.wait_kind:
            return None
        return WaitSerializer({"kind": state.wait_kind, "name": state.wait_name,
                               "until": state.wait_until}).data


class WorkflowPageSerializer(serializers.Serializer):
    """A page of workflows, newest first."""

    count = serializers.IntegerField(help_text="How many workflows match, on every page.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = WorkflowSerializer(many=True)


class HistoryEventSerializer(serializers.Serializer):
    """One recorded event; ``id`` is its 1-based sequence number in the run."""

    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=_EVENT_CHOICES)
    timestamp = serializers.DateTimeField()
    activity_name = serializers.CharField(allow_blank=True)
    input = AnyJSONField()
    result = AnyJSONField()
    error = ErrorInfoField()
    signal_name = serializers.CharField(allow_blank=True)
    signal_payload = AnyJSONField()
    duration = serializers.FloatField(allow_null=True, help_text="Seconds the step took.")
    attempt = serializers.IntegerField(help_text="The activity attempt (1-based), 0 otherwise.")
    op = serializers.IntegerField(help_text="The workflow-code operation the event belongs to.")
    fire_at = serializers.DateTimeField(allow_null=True,
                                        help_text="When a timer, timeout or retry is due.")


class HistoryPageSerializer(serializers.Serializer):
    """A page of a run's history, in order."""

    workflow_id = serializers.CharField()
    run_id = serializers.CharField()
    next = serializers.URLField(allow_null=True, help_text="The next page, if there may be one.")
    results = HistoryEventSerializer(many=True)


class SignalAcceptedSerializer(serializers.Serializer):
    """A signal the run's inbox has accepted (it will not be lost)."""

    workflow_id = serializers.CharField()
    id = serializers.IntegerField(allow_null=True, help_text="The signal's place in the inbox.")
    name = serializers.CharField()
    payload = AnyJSONField()
    sent_at = serializers.DateTimeField(allow_null=True)
    sender_id = serializers.CharField(allow_blank=True)


class HumanTaskSerializer(serializers.Serializer):
    """A request of a ``HumanActivity`` waiting for a person's answer."""

    workflow_id = serializers.CharField()
    run_id = serializers.CharField()
    workflow_type = serializers.CharField()
    request_id = serializers.CharField(
        help_text="Which request of the run this is (its step); send it back with the answer."
    )
    title = serializers.CharField(help_text="What the person is asked, one line.")
    description = serializers.CharField(allow_blank=True, help_text="More context, plain text.")
    choices = serializers.ListField(child=DecisionField(), help_text="The decisions offered.")
    data = AnyJSONField(help_text="What to decide on, as the workflow gave it.")
    asked_at = serializers.DateTimeField(help_text="When the request was recorded.")
    due_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the request times out (the workflow then decides), if it has a timeout.",
    )


class HumanTaskPageSerializer(serializers.Serializer):
    """A page of pending human tasks, the newest runs first."""

    count = serializers.IntegerField(help_text="How many runs wait for a person, on every page.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = HumanTaskSerializer(many=True)


class HumanAnswerAcceptedSerializer(serializers.Serializer):
    """An answer the run has accepted: it resumes with it (it will not be lost)."""

    workflow_id = serializers.CharField()
    request_id = serializers.CharField(help_text="The request answered.")
    decision = DecisionField()
    feedback = serializers.CharField(allow_blank=True)
    modified = AnyJSONField()
    sent_at = serializers.DateTimeField(allow_null=True)
    sender_id = serializers.CharField(allow_blank=True, help_text="Who answered.")


class QueryResultSerializer(serializers.Serializer):
    """The answer to a query."""

    result = AnyJSONField()


class ErrorSerializer(serializers.Serializer):
    """Every error answer."""

    detail = serializers.CharField(help_text="What is wrong, in one line.")
    code = serializers.CharField(required=False, help_text="A machine-readable error code.")
    errors = serializers.DictField(
        child=serializers.JSONField(), required=False,
        help_text="The invalid fields of a request body or query string, with their messages.",
    )
