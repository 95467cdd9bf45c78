"""The ``temporal`` runtime: our workflow functions on a Temporal server (``executor.py``).

Apart, as in Temporal's SDK: ``workflow.py`` and ``context.py`` run inside Temporal workflows,
``activities.py`` in its activity threads, ``worker.py`` is the worker, ``executor.py`` the
client side, ``mapping.py`` the translations they share. Needs the ``temporal`` extra.
"""

from .connection import require_temporal

require_temporal()

from .executor import TemporalExecutor  # noqa: E402 - only once the SDK is known to be there

__all__ = ["TemporalExecutor"]
