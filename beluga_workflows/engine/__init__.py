"""The engine: durable execution by checkpoint and replay, readable without Django's faces.

A run's workflow code calls a ``WorkflowContext`` (``context``); each call is an operation whose
outcome is recorded in the run's history and returned again on replay (``replay``). The runner
(``runner``) claims a run, replays and runs its code, checkpoints each step and suspends or ends the
run, while the lease keeper (``lease``) renews its claim; the context and the runner meet only
through the ``ActivationPort`` protocol (``port``) and the control-flow exceptions of
``_control``. The executor (``executor``) is the client side: it starts, signals, cancels,
queries and waits for runs, sends events, and runtimes subclass it to say how a run (or an
event's fan-out) reaches a worker.

Events (API.md §8) are values and matching rules (``events``) and a fan-out the runtimes schedule
(``fanout``, whose docstring argues why no event is missed).

The value types, errors, retry policy, clock, JSON rules, registry, hooks and middleware are the
modules of those names. Nothing here imports a face (admin, API, commands), a runtime, the settings
or a store backend; ``tests/engine/test_layering.py`` checks it. The public names are re-exported
by ``beluga_workflows``.
"""
