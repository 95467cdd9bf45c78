"""Executor middleware: wrap an executor to add behaviour around its operations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .async_api import AsyncExecutorOperations
from .executor import WorkflowExecutor
from .hooks import Hooks

__all__ = ["ExecutorMiddleware", "Middleware", "apply_middleware", "with_hooks"]

Middleware = Callable[[Any], Any]


class ExecutorMiddleware(AsyncExecutorOperations):
    """Base of executor wrappers: every attribute not overridden is the inner executor's (the
    async twins call the wrapper's own operations, so an overridden ``execute`` applies to
    ``aexecute`` too)."""

    def __init__(self, inner: WorkflowExecutor):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def apply_middleware(executor: Any, *middlewares: Middleware) -> Any:
    """Wrap ``executor`` so that the first middleware is the outermost."""
    for middleware in reversed(middlewares):
        executor = middleware(executor)
    return executor


def with_hooks(hooks: Hooks) -> Middleware:
    """A middleware that fires ``hooks`` in the activations the wrapped executor runs."""
    if not isinstance(hooks, Hooks):
        raise TypeError("with_hooks needs a Hooks object")

    def middleware(executor: Any) -> Any:
        executor.add_hooks(hooks)
        return ExecutorMiddleware(executor)

    return middleware
