"""What the runtimes that send work after a commit (celery, django_tasks) share."""

from __future__ import annotations

__all__ = ["in_default_transaction"]


def in_default_transaction() -> bool:
    """Whether the caller is inside a transaction of the ``default`` database (so work sent
    now must wait for its commit even when the runs live in another database)."""
    from django.conf import settings
    from django.db import DEFAULT_DB_ALIAS, connections

    if not settings.configured or DEFAULT_DB_ALIAS not in settings.DATABASES:
        return False
    return connections[DEFAULT_DB_ALIAS].in_atomic_block
