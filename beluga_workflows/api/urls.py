"""URLs of the REST API; mount them with ``path("api/", include("beluga_workflows.api.urls"))``.

Workflow ids are captured with a ``path`` converter, so ids containing ``/`` work: each route
ends in a fixed suffix after a greedy id, and ``routing`` settles the URLs two routes could match
(``workflows/a/history/``: the history of ``a``, or the workflow ``a/history``). Pending human
tasks are listed at ``human-tasks/`` and answered at ``workflows/{id}/human-task/``; an ended
run is continued at ``workflows/{id}/resume/`` and copied from a step at ``.../fork/``; events are
sent and listed at ``events/``, and ``events/{id}/`` tells what one did; ``flow-control/`` lists
each workflow type's flow control and the slots in use (``flow-control/{type}/`` one type);
schedules are at ``schedules/`` (ids hold no ``/``), each with ``pause/``, ``resume/`` and
``trigger/``.

The OpenAPI schema is served at ``schema/`` and browsable docs at ``docs/`` next to the API.
"""

from django.urls import path, register_converter
from django.urls.converters import PathConverter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import events, flow, lifecycle, schedules, views


class WorkflowIdConverter(PathConverter):
    """Django's ``path`` converter, newlines included: every id, even one ``execute`` refuses,
    reaches a view, which answers 404 in JSON rather than the site's HTML page."""

    regex = r"[\s\S]+"


register_converter(WorkflowIdConverter, "beluga_workflow_id")

app_name = views.URL_NAMESPACE

ID = "workflows/<beluga_workflow_id:workflow_id>"
SCHEDULE = "schedules/<beluga_workflow_id:schedule_id>"

urlpatterns = [
    path("workflows/", views.WorkflowListView.as_view(), name="workflow-list"),
    # Query first: its type is one segment, so "a/query/history/" is the "history" query of "a".
    path(f"{ID}/query/<str:query_type>/", views.WorkflowQueryView.as_view(), name="workflow-query"),
    path(f"{ID}/history/", views.WorkflowHistoryView.as_view(), name="workflow-history"),
    path(f"{ID}/signal/", views.WorkflowSignalView.as_view(), name="workflow-signal"),
    path(f"{ID}/cancel/", views.WorkflowCancelView.as_view(), name="workflow-cancel"),
    path(f"{ID}/resume/", lifecycle.WorkflowResumeView.as_view(), name="workflow-resume"),
    path(f"{ID}/fork/", lifecycle.WorkflowForkView.as_view(), name="workflow-fork"),
    path(f"{ID}/human-task/", views.WorkflowHumanTaskView.as_view(), name="workflow-human-task"),
    path(f"{ID}/", views.WorkflowDetailView.as_view(), name="workflow-detail"),
    path("human-tasks/", views.HumanTaskListView.as_view(), name="human-task-list"),
    path("events/", events.EventListView.as_view(), name="event-list"),
    path("events/<beluga_workflow_id:event_id>/", events.EventDetailView.as_view(),
         name="event-detail"),
    path("schedules/", schedules.ScheduleListView.as_view(), name="schedule-list"),
    # Ids hold no "/", so the fixed suffixes come first and any other path is one schedule's.
    path(f"{SCHEDULE}/pause/", schedules.SchedulePauseView.as_view(), name="schedule-pause"),
    path(f"{SCHEDULE}/resume/", schedules.ScheduleResumeView.as_view(), name="schedule-resume"),
    path(f"{SCHEDULE}/trigger/", schedules.ScheduleTriggerView.as_view(),
         name="schedule-trigger"),
    path(f"{SCHEDULE}/", schedules.ScheduleDetailView.as_view(), name="schedule-detail"),
    path("flow-control/", flow.FlowControlListView.as_view(), name="flow-control-list"),
    path("flow-control/<beluga_workflow_id:workflow_type>/", flow.FlowControlDetailView.as_view(),
         name="flow-control-detail"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name=f"{app_name}:schema"), name="docs"),
]
