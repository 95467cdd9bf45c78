"""ASGI entry point: ``uvicorn beluga_project.asgi:application`` (or daphne, hypercorn...).

Async views use the executor's async twins (``await executor.aexecute(...)``, ``await
handle.aresult()``): ``beluga_project/demo/views.py`` under ``/demo/async/``.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beluga_project.settings")
application = get_asgi_application()
