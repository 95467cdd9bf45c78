"""The REST API of beluga_workflows (Django REST framework), mounted with::

    path("api/", include("beluga_workflows.api.urls"))

Every view parses the request, calls the configured executor (``get_executor()``) or its store,
and presents the answer; the operations themselves live in the engine, written once.
"""
