"""Expressions: a small, safe language in the style of CEL for ``where=`` filters and flow keys.

::

    expr = compile_expression("event.data.total > 100 && event.data.region in ['eu', 'uk']")
    expr.matches({"event": event.to_dict()})          # -> bool, never raises on the data
    expr.evaluate({"input": {"customer": {"id": 7}}})  # -> the value, or ExpressionError

The syntax is ``expression_parser``'s: dotted paths, ``[index]``, numbers, strings, ``true false
null``, lists, ``! -``, ``* / %``, ``+ -``, ``== != < <= > >= in``, ``&&``, ``||``, ``a ? b : c``,
``size(x)`` and ``has(x.y)``. The text is parsed by hand and turned into nested closures; Python's
``eval`` never sees it. Compiling is cached by text.

Semantics. Bindings are plain JSON data (dicts, lists, str, int, float, bool, None) under names:

1. A name is looked up in the bindings; ``.key`` and ``["key"]`` index dicts, ``[n]`` lists
   (``0 <= n < len``). Nothing else is reached: no attribute of a Python object is ever read, so
   ``event.__class__`` is only a field that is missing.
2. A missing field is an error (``MissingFieldError``); ``has(x.y)`` is true when the whole path
   resolves and false otherwise.
3. ``==`` and ``!=`` never fail: values of different kinds are unequal (``1 == "1"`` and
   ``true == 1`` are false), an int equals the float of the same value, lists and dicts compare
   element by element.
4. ``< <= > >=`` order two numbers, two strings or two booleans; other pairs are type errors.
5. ``+`` adds numbers and joins two strings or two lists; ``- * / %`` take numbers. ``/`` is true
   division (``7 / 2 == 3.5``, where CEL's integer division gives 3); ``%`` takes the sign of the
   dividend. Dividing by zero, and an integer result outside 64 bits, are errors.
6. ``x in y``: ``x`` is an element of the list ``y``, a key of the dict ``y``, or a substring of
   the string ``y``.
7. ``&&``, ``||``, ``!`` and the test of ``?:`` take booleans (there is no truthiness). As in CEL,
   ``&&`` and ``||`` forgive an error the other side decides: ``false && <error>`` and
   ``<error> && false`` are false, ``true || <error>`` and ``<error> || true`` are true.
8. ``size(x)`` is the length of a string (in characters), a list or a dict.

``Expression.evaluate`` returns the value or raises ``ExpressionError``. ``Expression.matches`` is
the condition form: true only for the value ``true``, so a missing field, a type error or a value
that is not a boolean makes the condition false.

Errors::

    InvalidInputError
    ├── ExpressionSyntaxError   compile time: position, line and column, a caret excerpt
    └── ExpressionError         evaluation: a type error, division by zero, an overflow
        └── MissingFieldError   evaluation: a field or name the bindings lack (``path``)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from .errors import InvalidInputError
from .expression_evaluator import ExpressionError, MissingFieldError, Run, compile_tree, thaw
from .expression_parser import (
    MAX_EXPRESSION_DEPTH,
    MAX_EXPRESSION_LENGTH,
    ExpressionSyntaxError,
    parse,
    tree_paths,
)

__all__ = [
    "ENGINES",
    "MAX_EXPRESSION_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "Expression",
    "ExpressionError",
    "ExpressionSyntaxError",
    "MissingFieldError",
    "compile_expression",
    "resolve_path",
]

ENGINES = ("builtin", "cel")
_MISSING = object()


class Expression:
    """A compiled expression; made by ``compile_expression``, immutable and safe to share.

    Attributes:
        text: the source text.
        engine: ``"builtin"`` or ``"cel"``.
        paths: the paths it reads, in order of appearance (``("event.data.total",)``), with
            ``["key"]`` for keys that are not identifiers; a computed index ends a path.
        roots: the binding names it reads (``frozenset({"event"})``), to check at decoration time.
    """

    __slots__ = ("_run", "engine", "paths", "roots", "text")

    def __init__(self, text: str, engine: str, run: Run, paths: tuple[str, ...],
                 roots: frozenset[str]) -> None:
        self.text, self.engine, self.paths, self.roots, self._run = text, engine, paths, roots, run

    def evaluate(self, bindings: Mapping[str, Any]) -> Any:
        """The value of the expression with ``bindings`` (names to JSON data).

        Raises:
            MissingFieldError: a name or field the bindings lack.
            ExpressionError: a type error, a division by zero or an integer overflow.
            InvalidInputError: ``bindings`` is not a mapping.
        """
        _check_bindings(bindings)
        try:
            value = self._run(bindings)
            # Constant lists are kept as tuples (a cached constant must not be mutated): give lists.
            return thaw(value) if type(value) in (list, tuple) else value
        except ExpressionError:
            raise
        except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            raise ExpressionError(f"cannot evaluate {self.text!r}: {exc}") from exc

    def matches(self, bindings: Mapping[str, Any]) -> bool:
        """Whether the expression is ``true`` with ``bindings``; any error makes it ``False``.

        Raises:
            InvalidInputError: ``bindings`` is not a mapping (a caller's mistake, not the data's).
        """
        if type(bindings) is not dict:
            _check_bindings(bindings)
        try:
            return self._run(bindings) is True
        except (ExpressionError, TypeError, ValueError, ArithmeticError, RecursionError):
            return False

    def __repr__(self) -> str:
        return f"Expression({self.text!r})" if self.engine == "builtin" else (
            f"Expression({self.text!r}, engine={self.engine!r})")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Expression) and other.text == self.text
                and other.engine == self.engine)

    def __hash__(self) -> int:
        return hash((self.text, self.engine))

    def __reduce__(self) -> tuple:
        return compile_expression, (self.text, self.engine)


def compile_expression(text: str, engine: str = "builtin") -> Expression:
    """Parse and compile ``text`` (cached by text and engine).

    Args:
        text: the expression, at most ``MAX_EXPRESSION_LENGTH`` characters and
            ``MAX_EXPRESSION_DEPTH`` levels of brackets deep.
        engine: ``"builtin"`` (this module's evaluator) or ``"cel"`` (the ``cel-python`` library,
            from the ``cel`` extra: the full CEL language, with CEL's own semantics, slower).

    Raises:
        ExpressionSyntaxError: (an ``InvalidInputError``) a syntax error, too long, too deep.
        InvalidInputError: ``text`` is not a string, or an unknown engine.
        ImportError: ``engine="cel"`` without the ``cel-python`` library.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"an expression must be a string, not {type(text).__name__}")
    if engine not in ENGINES:
        raise InvalidInputError(f"unknown expression engine {engine!r}; expected one of: "
                                f"{', '.join(ENGINES)}")
    return _compile_cached(str(text), engine)


@functools.lru_cache(maxsize=1024)
def _compile_cached(text: str, engine: str) -> Expression:
    if engine == "cel":
        from .cel import compile_cel

        run, paths, roots = compile_cel(text)
        return Expression(text, engine, run, paths, roots)
    tree = parse(text)
    paths = tree_paths(tree)
    roots = frozenset(p.split(".", 1)[0].split("[", 1)[0] for p in paths)
    return Expression(text, engine, compile_tree(tree), paths, roots)


def resolve_path(obj: Any, path: str | tuple[str, ...]) -> tuple[bool, Any]:
    """The value at a dotted path in nested dicts: ``(True, value)``, or ``(False, None)``.

    ``resolve_path(event, "data.order_id")`` reads ``event["data"]["order_id"]``; a step on a list
    takes a decimal index (``"items.0.sku"``). Nothing but dict keys and list items is read.

    Raises:
        InvalidInputError: ``path`` is empty or has an empty step (``"data..id"``).
    """
    value = obj
    for step in _split_path(path) if isinstance(path, str) else path:
        if isinstance(value, dict):
            value = dict.get(value, step, _MISSING)
        elif isinstance(value, (list, tuple)) and step.isdigit() and step.isascii():
            index = int(step)
            value = value[index] if index < len(value) else _MISSING
        else:
            return False, None
        if value is _MISSING:
            return False, None
    return True, value


@functools.lru_cache(maxsize=1024)
def _split_path(path: str) -> tuple[str, ...]:
    steps = tuple(path.split("."))
    if not path or "" in steps:
        raise InvalidInputError(f"invalid path {path!r}: write field names joined by dots, such "
                                "as 'data.order_id'")
    return steps


def _check_bindings(bindings: Any) -> None:
    if not isinstance(bindings, Mapping):
        raise InvalidInputError("expression bindings must be a mapping of names to values, not "
                                f"{type(bindings).__name__}")
