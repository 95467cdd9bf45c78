"""The REST API of beluga_workflows (Django REST framework), mounted with::

    path("api/", include("beluga_workflows.api.urls"))

Every view parses the request, calls the configured executor (``get_executor()``) or its store,
and presents the answer; the operations themselves live in the engine, written once.

It needs the ``api`` extra (``pip install "beluga-workflows[api]"``: Django REST framework and
drf-spectacular); without it, importing this package raises ``ImproperlyConfigured`` saying so.
The admin and the management commands do not need it.
"""

from django.core.exceptions import ImproperlyConfigured

try:
    import drf_spectacular  # noqa: F401
    import rest_framework  # noqa: F401
except ImportError as exc:
    raise ImproperlyConfigured(
        f"beluga_workflows.api needs Django REST framework and drf-spectacular ({exc}): "
        f'pip install "beluga-workflows[api]"'
    ) from exc
