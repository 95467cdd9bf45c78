"""One module per ``manage.py workflows_*`` command, each a ``Command`` over the executor."""
