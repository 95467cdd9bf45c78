"""The workflow admin: watch, start, signal, cancel and query runs, and answer human tasks.

The pages read the configured store (``get_executor().store``) and act through the executor, so
they show the same thing whatever store is configured (``django``, ``memory``, ``redis``...). The
``WorkflowState`` model is registered for its place on the admin index and its permissions; its
changelist, change and add views are replaced by the pages of this package:

- ``base``: ``WorkflowAdminBase``, what every page uses (store, executor, permission checks,
  page context, URLs, the admin log, the sender of signals);
- ``workflows``: the run pages (list, start, run, signal, cancel); ``lifecycle``: resume an
  ended run, or fork it from one of its steps;
- ``human_tasks``: the pending human tasks and the answer form;
- ``events``: the accepted events and what each did; ``flow``: the flow control each workflow
  type declares and the concurrency slots in use;
- ``forms``: the forms of those pages; ``options``: ``WorkflowStateAdmin`` and its URLs;
- ``schedules``: ``ScheduleAdmin``, the Schedules pages (a ``ModelAdmin`` of the ``Schedule``
  table: list, add, edit, delete, pause, resume, trigger now).

Permissions: viewing needs the model's view permission; acting needs
``beluga_workflows.start_workflow`` (also to resume or fork), ``signal_workflow`` (signals and human-task answers) or
``cancel_workflow``. Buttons show only to those who may use them and form URLs answer 403 to
everyone else.
"""

from django.contrib import admin

from ..models import Schedule, WorkflowState
from .options import WorkflowStateAdmin
from .schedules import ScheduleAdmin

__all__ = ["ScheduleAdmin", "WorkflowStateAdmin"]

admin.site.register(WorkflowState, WorkflowStateAdmin)
admin.site.register(Schedule, ScheduleAdmin)
