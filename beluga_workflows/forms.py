"""The admin's forms at their old import path; they live in ``beluga_workflows.admin.forms``.

Importing this module imports the admin package (which registers ``WorkflowStateAdmin``), so it
needs ``django.contrib.admin`` installed, as the forms' pages do.
"""

from .admin.forms import HumanAnswerForm, JSONInputField, QueryForm, SignalForm, StartWorkflowForm

__all__ = ["HumanAnswerForm", "JSONInputField", "QueryForm", "SignalForm", "StartWorkflowForm"]
