"""What the ``workflows_*`` commands share: one-line errors, JSON arguments and output.

A command parses its arguments, calls the configured executor (``get_executor()``) and prints the
answer. Every bad input ends in a ``CommandError`` with one line naming the problem, so
``manage.py`` prints ``CommandError: ...`` and exits non-zero.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError

from ..engine.errors import WorkflowError
from ..engine.executor import WorkflowExecutor
from ..engine.types import WorkflowStatus
from ..runtimes import get_executor

__all__ = ["WorkflowCommand", "one_line"]


def one_line(message: Any) -> str:
    """``message`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(message).split())


class WorkflowCommand(BaseCommand):
    """Base of the ``workflows_*`` commands: engine errors become one-line ``CommandError``."""

    def execute(self, *args: Any, **options: Any) -> Any:
        """Run the command, turning its failures into a one-line ``CommandError``.

        A ``WorkflowError``, ``ImproperlyConfigured`` or ``DatabaseError`` becomes one, so
        ``manage.py`` prints one line and exits non-zero instead of a traceback; a
        ``CommandError`` keeps its return code.
        """
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            raise CommandError(one_line(exc), returncode=exc.returncode) from exc
        except WorkflowError as exc:
            raise CommandError(one_line(exc)) from exc
        except ImproperlyConfigured as exc:
            raise CommandError(one_line(f"beluga_workflows is not configured correctly: {exc}")) from exc
        except DatabaseError as exc:
            raise CommandError(one_line(f"the workflow store's database failed: {exc}")) from exc

    @property
    def executor(self) -> WorkflowExecutor:
        """The configured executor (``get_executor()``), built once per process.

        Raises:
            ImproperlyConfigured: the store or executor of ``BELUGA_WORKFLOWS`` cannot be built.
        """
        return get_executor()

    # -- parsing ----------------------------------------------------------------------------------

    @staticmethod
    def parse_json(text: str | None, option: str) -> Any:
        """The JSON value of an argument (``None`` when not given)."""
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CommandError(f"{option} is not valid JSON ({exc}): {text!r}") from None

    @staticmethod
    def parse_seconds(text: str | None, option: str, *, allow_zero: bool = False,
                      maximum: float | None = None) -> float | None:
        """A positive number of seconds, at most ``maximum`` (``None`` when not given)."""
        if text is None:
            return None
        try:
            seconds = float(text)
        except ValueError:
            raise CommandError(f"{option} must be a number of seconds, not {text!r}") from None
        if math.isnan(seconds) or math.isinf(seconds) or seconds < 0 or (
                seconds == 0 and not allow_zero):
            raise CommandError(f"{option} must be a positive number of seconds, not {text!r}")
        if maximum is not None and seconds > maximum:
            raise CommandError(f"{option} must be at most {maximum:g} seconds, not {text!r}")
        return seconds

    @staticmethod
    def parse_count(text: str, option: str) -> int:
        """A positive whole number."""
        try:
            value = int(text)
        except ValueError:
            raise CommandError(f"{option} must be a whole number, not {text!r}") from None
        if value <= 0:
            raise CommandError(f"{option} must be at least 1, not {value}")
        return value

    # -- output -----------------------------------------------------------------------------------

    @staticmethod
    def dumps(value: Any, *, indent: int | None = None) -> str:
        """``value`` as JSON (Django's encoder types included), unicode kept readable."""
        separators = None if indent else (",", ":")
        return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, indent=indent,
                          separators=separators)

    def style_status(self, status: WorkflowStatus | str) -> str:
        """A run's status, coloured by what it means (on a terminal)."""
        status = WorkflowStatus(status)
        style = {
            WorkflowStatus.RUNNING: self.style.HTTP_INFO,
            WorkflowStatus.COMPLETED: self.style.SUCCESS,
            WorkflowStatus.FAILED: self.style.ERROR,
            WorkflowStatus.CANCELED: self.style.WARNING,
            WorkflowStatus.TIMED_OUT: self.style.ERROR,
        }[status]
        return style(status.value)
