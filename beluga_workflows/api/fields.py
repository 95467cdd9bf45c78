"""Fields of the API's serializers, and how the OpenAPI schema describes each.

Request fields take JSON as sent (a number is not a string, an empty query value is not a
missing one), so the schema's types are what the API enforces; what a valid workflow id, type
or timeout is stays the executor's to decide, the schema only describes it.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..engine.errors import WorkflowError
from ..engine.executor import MAX_ID_LENGTH
from ..engine.registry import get_workflow, registered_workflows
from ..engine.types import MAX_DURATION_SECONDS
from ..human import HUMAN_DECISIONS

__all__ = [
    "EVENT_TEXT_PATTERN",
    "JSONObjectField",
    "MAX_TIMEOUT_SECONDS",
    "SIGNAL_NAME_PATTERN",
    "WORKFLOW_ID_PATTERN",
    "AnyJSONField",
    "DecisionField",
    "ErrorInfoField",
    "FilterTextField",
    "JSONIntegerField",
    "PlainTextField",
    "QueryIntegerField",
    "SecondsField",
    "TextField",
    "WorkflowIdField",
    "WorkflowTypeField",
    "startable_workflows",
]

# The control characters ids may not hold, and the rest of what ``str.strip`` removes.
_SPACE = r" \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CONTROL = r"\x00-\x1f\x7f"
_INNER, _EDGE, _EDGE_NO_DOT = f"[^{_CONTROL}]", f"[^{_SPACE}{_CONTROL}]", f"[^{_SPACE}{_CONTROL}.]"
# What ``validate_workflow_id`` accepts (length aside), as a JSON Schema pattern: no control
# characters, no surrounding whitespace, not "." or "..". No look-arounds, so fuzzers can use it.
WORKFLOW_ID_PATTERN = (
    rf"^(?:{_EDGE_NO_DOT}|{_EDGE_NO_DOT}{_EDGE}|\.{_EDGE_NO_DOT}|{_EDGE}{_INNER}+{_EDGE})$"
)
# An event's name or id (events.validate_event_name): no control characters, no surrounding
# whitespace ("." allowed, unlike workflow ids).
EVENT_TEXT_PATTERN = rf"^(?:{_EDGE}|{_EDGE}{_INNER}*{_EDGE})$"
# A signal name: not only whitespace, and no NUL (which text columns cannot hold).
SIGNAL_NAME_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}\t\n\x0b\x0c\r\x1c-\x1f][^\x00]*$"
# Longest workflow timeout the API takes (the engine's 100 years): later deadlines cannot be
# represented.
MAX_TIMEOUT_SECONDS = int(MAX_DURATION_SECONDS)


class TextField(serializers.CharField):
    """A JSON string, taken as given: numbers are not turned into text, whitespace is kept."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        """The string as sent (not trimmed).

        Raises:
            ValidationError: the value is not a JSON string (a number is not taken as text).
        """
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SecondsField(serializers.FloatField):
    """A JSON number of seconds (not a string, not a boolean)."""

    def to_internal_value(self, data: Any) -> float:
        """The number as a float, checked against the field's bounds.

        Raises:
            ValidationError: a string, a boolean or another non-number, or a value out of bounds.
        """
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class JSONIntegerField(serializers.IntegerField):
    """A JSON integer: not a string of digits, a boolean or a float (``2.0`` is refused)."""

    def to_internal_value(self, data: Any) -> int:
        """The integer, checked against the field's bounds.

        Raises:
            ValidationError: not a JSON integer, or out of bounds.
        """
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class SecondsFieldExtension(OpenApiSerializerFieldExtension):
    """Describes a ``SecondsField`` in the schema: a number above 0, at most its ``max_value``."""
    target_class = SecondsField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        """The field's schema: a double greater than 0, at most ``max_value`` when it has one."""
        schema: dict[str, Any] = {"type": "number", "format": "double", "minimum": 0,
                                  "exclusiveMinimum": True}
        if self.target.max_value is not None:
            schema["maximum"] = self.target.max_value
        return schema


class QueryIntegerField(serializers.IntegerField):
    """A whole number in the query string, in digits: ``?limit=`` and ``?limit=2.0`` are refused."""

    def get_value(self, dictionary: Any) -> Any:
        """The query value as sent: an empty ``?limit=`` is a value (which is refused), not a
        missing one as DRF would take it for a field that is not required.
        """
        return dictionary.get(self.field_name, serializers.empty)

    def to_internal_value(self, data: Any) -> int:
        """The value as an ``int``.

        Raises:
            ValidationError: not digits with an optional ``-`` (``2.0``, ``1e3``, empty), or out of
                the field's bounds.
        """
        if isinstance(data, str) and not re.fullmatch(r"-?[0-9]+", data):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "pattern": r"^[^\x00]+$"})
class FilterTextField(serializers.CharField):
    """Text in a query string; like every DRF text field it refuses NUL, as the schema says."""


# Not "*": spectacular describes a blank-allowed pattern as oneOf [pattern, empty], and "" must
# match exactly one of them.
@extend_schema_field({"type": "string", "pattern": r"^[^\x00]+$"})
class PlainTextField(TextField):
    """Text that may be empty; like every DRF text field it refuses NUL, as the schema says."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)


class DecisionField(serializers.ChoiceField):
    """A decision on a human task: ``approve``, ``reject`` or ``modify``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(HUMAN_DECISIONS, **kwargs)


class DecisionFieldExtension(OpenApiSerializerFieldExtension):
    """One ``Decision`` component for an answer's decision and a task's choices (spectacular
    would name the same enum after each field, and warn)."""

    target_class = DecisionField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        """A reference to the shared ``Decision`` component, registered on first use."""
        component = ResolvedComponent(
            name="Decision", type=ResolvedComponent.SCHEMA, object="Decision",
            schema={"type": "string", "enum": list(HUMAN_DECISIONS),
                    "description": "A decision on a human task."},
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


class WorkflowIdField(TextField):
    """A workflow id. The executor judges it (and says what is wrong); the schema describes it."""


class WorkflowIdFieldExtension(OpenApiSerializerFieldExtension):
    """Describes a ``WorkflowIdField`` in the schema by its length and ``WORKFLOW_ID_PATTERN``."""
    target_class = WorkflowIdField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        """The field's schema: 1 to ``MAX_ID_LENGTH`` characters, matching ``WORKFLOW_ID_PATTERN``
        (no control characters, no surrounding whitespace, not ``.`` or ``..``).
        """
        return {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
                "pattern": WORKFLOW_ID_PATTERN}


class WorkflowTypeField(TextField):
    """A registered workflow name; the schema lists the names registered when it is served."""


def startable_workflows() -> list[str]:
    """The registered workflow names a start (``execute``) accepts: all but those that debounce
    or batch their events, whose runs only events start."""
    names = []
    for name in registered_workflows():
        try:
            flow = get_workflow(name).flow
        except WorkflowError:
            continue  # unregistered meanwhile
        if flow is None or not flow.groups_events:
            names.append(name)
    return names


class WorkflowTypeFieldExtension(OpenApiSerializerFieldExtension):
    """Describes a ``WorkflowTypeField`` with the workflow names registered when it is served."""
    target_class = WorkflowTypeField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        """The field's schema: 1 to 255 characters, and an ``enum`` of the registered workflow
        names a start accepts (``startable_workflows``) when there are any.
        """
        schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 255}
        names = startable_workflows()
        if names:
            schema["enum"] = names
        return schema


class AnyJSONField(serializers.JSONField):
    """Any JSON value, ``null`` included."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(AnyJSONField):
    """A JSON object (``null`` allowed when the field allows it)."""

    def to_internal_value(self, data: Any) -> Any:
        """The object as given.

        Raises:
            ValidationError: the value is a list, a string, a number or a boolean.
        """
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be a JSON object")
        return super().to_internal_value(data)


class ErrorInfoSerializer(serializers.Serializer):
    """How a run or an activity failed."""

    type = serializers.CharField(help_text="The exception's class name.")
    message = serializers.CharField(allow_blank=True)
    traceback = serializers.CharField(allow_blank=True, required=False)


@extend_schema_field(ErrorInfoSerializer(allow_null=True))
class ErrorInfoField(serializers.JSONField):
    """The recorded ``{"type", "message", "traceback"}`` of a failure, or ``null``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)
