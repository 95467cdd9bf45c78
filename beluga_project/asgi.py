"""ASGI entry point: ``uvicorn beluga_project.asgi:application`` (or daphne, hypercorn...).

Async views use the executor's async twins (``await executor.aexecute(...)``, ``await
handle.aresult()``): ``beluga_project/demo/views.py`` under ``/demo/async/``.
"""

import gc
import os

from django.core.asgi import get_asgi_application
from django.urls import get_resolver

from beluga_workflows.contrib.asgi import reuse_request_threads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beluga_project.settings")

# Each request still has a thread of its own for its synchronous parts (Django's rule), taken
# from idle ones instead of started and joined on the event loop for every request.
application = reuse_request_threads(get_asgi_application())

# What the site loads at startup (Django, the URLconf with the admin and the API) stays for the
# life of the process. Frozen, out of the collector's view, it is no longer walked by every full
# collection, which otherwise holds the event loop 80-120 ms (measured in the tests).
get_resolver().url_patterns  # noqa: B018 (imports the URLconf now, not at the first request)
gc.freeze()
