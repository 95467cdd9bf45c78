"""The async demo views (``views.py``), under ``/demo/async/``."""

from django.urls import path

from . import views

urlpatterns = [
    path("runs/", views.start_run, name="demo-async-start"),
    path("runs/<path:workflow_id>/signal/", views.signal_run, name="demo-async-signal"),
    path("runs/<path:workflow_id>/result/", views.run_result, name="demo-async-result"),
]
