"""Django forms of the admin pages: start a workflow, send a signal, query, answer a human task,
fork a run.

Forms only parse and check what a person typed (JSON syntax, through the engine's own
``to_json_value`` for what JSON cannot say: size, types). Whether the operation is allowed (the id
is free, the run is open, the task still pending) is the executor's to decide; the views put its
errors on the form, so a refused request shows why and changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from ..engine.errors import InvalidInputError
from ..engine.executor import MAX_ID_LENGTH, validate_workflow_id
from ..engine.registry import get_workflow, registered_workflows
from ..engine.serialization import to_json_value
from ..human import HUMAN_DECISIONS
from ..runtimes import get_executor

__all__ = ["ForkForm", "HumanAnswerForm", "JSONInputField", "QueryForm", "SignalForm",
           "StartWorkflowForm"]

_JSON_ATTRS = {"rows": 8, "cols": 80, "class": "vLargeTextField beluga-json", "spellcheck": "false"}


class JSONInputField(forms.CharField):
    """A textarea holding a JSON document; ``cleaned_data`` holds the decoded value.

    Empty text means ``null`` (or is refused when ``required``). The decoded value goes through
    the engine's ``to_json_value`` so the payload size limit is checked here already.
    """

    def __init__(self, *, what: str = "value", **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs=_JSON_ATTRS))
        kwargs.setdefault("required", False)
        super().__init__(strip=True, **kwargs)
        self.what = what

    def to_python(self, value: Any) -> Any:
        """The decoded JSON value of the text (``None`` when empty), checked by ``to_json_value``.

        Raises:
            ValidationError: (``invalid_json``) the text is not JSON, or the value is not one the
                engine stores (e.g. larger than the executor's ``max_payload_bytes``).
        """
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"Invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
                code="invalid_json",
            ) from None
        try:
            return to_json_value(decoded, self.what, max_bytes=get_executor().max_payload_bytes)
        except InvalidInputError as exc:
            raise ValidationError(str(exc), code="invalid_json") from None

    def prepare_value(self, value: Any) -> Any:
        """The text to show: a decoded value as indented JSON, text (a re-shown bad input) as is."""
        if isinstance(value, str) or value is None:
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


def _started_by_events_only(name: str) -> bool:
    """Whether the workflow debounces or batches its events: only events start its runs."""
    flow = get_workflow(name).flow
    return flow is not None and flow.groups_events


class StartWorkflowForm(forms.Form):
    """Start a run of a registered workflow type (not one that debounces or batches events)."""

    workflow_type = forms.ChoiceField(label="Workflow type")
    id = forms.CharField(
        label="Workflow id", required=False, max_length=MAX_ID_LENGTH,
        help_text="Optional; a unique id is generated when empty.",
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )
    input = JSONInputField(label="Input (JSON)", what="workflow input",
                           help_text='The workflow\'s input, e.g. {"total": 42}. Empty: null.')
    timeout = forms.FloatField(
        label="Timeout (seconds)", required=False, min_value=0.001,
        help_text="Optional; past it the run ends as timed out.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workflow_type"].choices = [("", "---------")] + [
            (name, name) for name in registered_workflows() if not _started_by_events_only(name)
        ]

    def clean_id(self) -> str | None:
        """The id, or ``None`` when empty (one is generated).

        Raises:
            ValidationError: (``invalid_id``) ``validate_workflow_id`` refuses it.
        """
        return optional_id(self.cleaned_data.get("id"))


class ForkForm(forms.Form):
    """Fork an ended run: the event to start from (empty: from the start) and a new id."""

    from_event = forms.IntegerField(
        label="Fork from", required=False, min_value=2,
        help_text="The first event of the step the new run goes live at; the events before it "
                  "are replayed, so their steps are not run again.",
    )
    new_id = forms.CharField(
        label="New workflow id", required=False, max_length=MAX_ID_LENGTH,
        help_text="Optional; “<id>-fork-<8 hex digits>” when empty. The run's own id replaces "
                  "the ended run.",
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )

    def clean_new_id(self) -> str | None:
        """The id, or ``None`` when empty (one is generated).

        Raises:
            ValidationError: (``invalid_id``) ``validate_workflow_id`` refuses it.
        """
        return optional_id(self.cleaned_data.get("new_id"))


class SignalForm(forms.Form):
    """Send a signal (name + JSON payload) to an open run."""

    name = forms.CharField(label="Signal name", max_length=255,
                           widget=forms.TextInput(attrs={"class": "vTextField"}))
    payload = JSONInputField(label="Payload (JSON)", what="signal payload",
                             help_text="Any JSON value; empty sends null.")

    def clean_name(self) -> str:
        """The name as typed.

        Raises:
            ValidationError: (``blank``) it is only whitespace.
        """
        name = self.cleaned_data["name"]
        if not name.strip():
            raise ValidationError("Signal name must not be blank.", code="blank")
        return name


class SendEventForm(forms.Form):
    """Send an event: a name, a JSON object as its data, an optional idempotency id."""

    name = forms.CharField(label="Event name", max_length=255,
                           widget=forms.TextInput(attrs={"class": "vTextField",
                                                         "placeholder": "orders/placed"}))
    data = JSONInputField(label="Data (JSON object)", what="event data",
                          help_text="A JSON object; empty sends {}.")
    event_id = forms.CharField(label="Id", max_length=255, required=False,
                               widget=forms.TextInput(attrs={"class": "vTextField"}),
                               help_text="Optional: an event already accepted under this id is "
                                         "a duplicate and does nothing.")

    def clean_data(self) -> dict:
        """The data, a JSON object (empty: ``{}``).

        Raises:
            ValidationError: (``not_object``) it is a list, a string, a number...
        """
        data = self.cleaned_data["data"]
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValidationError("Event data must be a JSON object.", code="not_object")
        return data


class QueryForm(forms.Form):
    """Ask a run a query: a built-in (status, result, history) or one of its query handlers."""

    query = forms.CharField(label="Query", max_length=255,
                            widget=forms.TextInput(attrs={"list": "beluga-queries",
                                                          "placeholder": "status"}))


class HumanAnswerForm(forms.Form):
    """Answer a human task: a decision among the task's choices, feedback, a modified value."""

    request_id = forms.CharField(widget=forms.HiddenInput)
    decision = forms.ChoiceField(label="Decision", widget=forms.RadioSelect)
    feedback = forms.CharField(label="Feedback", required=False,
                               widget=forms.Textarea(attrs={"rows": 3, "cols": 80,
                                                            "class": "vLargeTextField"}))
    modified = JSONInputField(label="Modified data (JSON)", what="modified value",
                              help_text='Only for "modify": the data as it should be.')

    def __init__(self, *args: Any, choices: list[str] | tuple[str, ...] = HUMAN_DECISIONS,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["decision"].choices = [(c, c.capitalize()) for c in choices]

    def clean(self) -> dict[str, Any]:
        """The cleaned data; a ``modify`` decision without modified data puts an error on
        ``modified``.
        """
        data = super().clean()
        if data.get("decision") == "modify" and not (self.data.get(self.add_prefix("modified"))
                                                    or "").strip():
            self.add_error("modified", "Give the modified data (JSON) when choosing modify.")
        return data


def optional_id(value: str | None) -> str | None:
    """A workflow id typed in a form, or ``None`` when empty.

    Raises:
        ValidationError: (``invalid_id``) ``validate_workflow_id`` refuses it.
    """
    if not value:
        return None
    try:
        return validate_workflow_id(value)
    except InvalidInputError as exc:
        raise ValidationError(str(exc), code="invalid_id") from None
