"""URLs of the example project: the admin and the workflows API (with its schema and docs)."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    # /api/workflows/..., /api/schema/ (OpenAPI 3) and /api/docs/ (Swagger UI).
    path("api/", include("beluga_workflows.api.urls")),
    # Async views (ASGI): start, signal and await a demo workflow (beluga_project/demo/views.py).
    path("demo/async/", include("beluga_project.demo.urls")),
]
