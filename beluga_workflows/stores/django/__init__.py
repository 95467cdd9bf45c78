"""The ``django`` store (the default): runs in a Django database, through the ORM (``orm.py``).

``BELUGA_WORKFLOWS["STORE"]["BACKEND"] = "django"`` is ``beluga_workflows.stores.django.DjangoStore``.
Built for a PostgreSQL alias it is a ``PostgresDjangoStore`` (``postgres.py``), which sends the hot
operations as single prepared statements and pushes run ends over ``LISTEN``/``NOTIFY``
(``listen.py``); ``rows.py`` converts the tables' rows to and from the engine's types. Only
``postgres.py`` needs psycopg: on SQLite this package imports without it.
"""

from __future__ import annotations

from .orm import DjangoStore

__all__ = ["DjangoStore"]
