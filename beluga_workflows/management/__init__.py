"""The ``workflows_*`` management commands: start, list, show, signal, query, cancel, recover.

``base.py`` holds what they share (one-line errors, JSON arguments and output),
``presentation.py`` the JSON they print, ``commands/`` one module per command.
"""
