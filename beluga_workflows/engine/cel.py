"""The ``cel`` expression engine: Google's Common Expression Language, through ``cel-python``.

Chosen with ``compile_expression(text, engine="cel")``; it needs the ``cel`` extra
(``pip install "beluga-workflows[cel]"``). It takes the whole CEL language (macros such as
``items.exists(i, i > 2)``, map literals, string methods, timestamps) and CEL's own semantics, at
about a hundred times the builtin engine's cost per evaluation. Where the two differ on the shared
syntax, the builtin engine follows JSON and the cel engine follows cel-python:

- ``7 / 2`` is ``3`` (integer division); the builtin engine gives ``3.5``.
- ``1 == 1.0`` and ``1 == "a"`` are errors (false as a condition), ``true == 1`` is true; the builtin
  engine says true, false and false.
- ``2 in [1, 2.0]`` is an error; the builtin engine compares numbers by value.

Values come back as plain Python (``bool``, ``int``, ``float``, ``str``, ``list``, ``dict``,
``None``); errors are ``ExpressionError`` (``MissingFieldError`` for a missing field or name).
``Expression.paths`` is the builtin parser's when the text is in the shared subset, else what a walk
of CEL's parse tree finds (a macro's loop variable then shows up as a root).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .expression_evaluator import ExpressionError, MissingFieldError
from .expression_parser import MAX_EXPRESSION_LENGTH, ExpressionSyntaxError, parse, tree_paths

__all__ = ["compile_cel"]

_QUOTED = re.compile(r"'([^']*)'")
_MISSING_PREFIXES = ("no such member", "no such key", "undeclared reference")
_MESSAGE_CHARS = 200


def compile_cel(text: str) -> tuple[Callable[[Mapping[str, Any]], Any], tuple[str, ...],
                                    frozenset[str]]:
    """Compile ``text`` with cel-python: a function of the bindings, the paths and the root names.

    Raises:
        ExpressionSyntaxError: CEL cannot parse it, or it is too long or too deeply nested.
        ImportError: cel-python is not installed (the ``cel`` extra).
    """
    if len(text) > MAX_EXPRESSION_LENGTH:
        parse(text)  # raises the builtin engine's "too long" error
    try:
        import celpy
        from celpy.celparser import CELParseError
        from celpy.evaluation import CELEvalError
    except ImportError as exc:
        raise ImportError(f'the "cel" expression engine needs cel-python ({exc}): '
                          'pip install "beluga-workflows[cel]"') from exc
    env = celpy.Environment()
    try:
        program = env.program(env.compile(text))
    except CELParseError as exc:
        # cel-python's message is only its own caret excerpt; ours says the same with a column.
        position = _offset(text, vars(exc).get("line"), vars(exc).get("column"))
        raise ExpressionSyntaxError(text, position, "CEL cannot parse this") from None
    except RecursionError:
        raise ExpressionSyntaxError(text, 0, "the expression is nested too deeply") from None
    paths = _paths(text, env)
    roots = frozenset(p.split(".", 1)[0].split("[", 1)[0] for p in paths)
    def run(bindings: Mapping[str, Any]) -> Any:
        activation = {name: celpy.json_to_cel(value) for name, value in bindings.items()
                      if name in roots}
        try:
            result = program.evaluate(activation)
        except CELEvalError as exc:
            result = exc
        if isinstance(result, CELEvalError):
            message = str(result.args[0] if result.args else result)
            message = message.split(" (in activation", 1)[0][:_MESSAGE_CHARS]  # drop its dump
            if message.startswith(_MISSING_PREFIXES):
                found = _QUOTED.search(message)
                raise MissingFieldError(found.group(1) if found else "?", message) from None
            raise ExpressionError(f"cel: {message}") from None
        return _to_python(result)
    return run, paths, roots


def _offset(text: str, line: int | None, column: int | None) -> int:
    """The 0-based offset of a 1-based line and column (0 when unknown), within the text."""
    if not line or not column:
        return 0
    lines = text.split("\n")
    before = sum(len(part) + 1 for part in lines[:line - 1])
    return min(before + column - 1, len(text))


def _paths(text: str, env: Any) -> tuple[str, ...]:
    try:
        return tree_paths(parse(text))
    except ExpressionSyntaxError:
        return tuple(dict.fromkeys(_tree_paths(env.compile(text))))


def _tree_paths(tree: Any) -> list[str]:
    """The dotted paths in a cel-python (lark) parse tree, left to right, without recursion."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if not hasattr(node, "children"):
            continue
        path = _member_path(node)
        if path is not None:
            found.append(path)
        else:
            stack.extend(reversed(node.children))
    return found


def _member_path(node: Any) -> str | None:
    names = []
    while True:
        kind, children = str(node.data), node.children
        if kind == "member" and len(children) == 1:
            node = children[0]
        elif kind == "member_dot" and len(children) == 2:
            names.append(str(children[1]))
            node = children[0]
        elif (kind == "primary" and len(children) == 1 and hasattr(children[0], "data")
              and str(children[0].data) == "ident"):
            names.append(str(children[0].children[0]))
            return ".".join(reversed(names))
        else:
            return None


def _to_python(value: Any) -> Any:
    """A cel-python value as plain Python data (its types subclass int, str, list, dict...)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    from celpy import celtypes

    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, list):
        return [_to_python(v) for v in value]
    if isinstance(value, dict):
        return {_to_python(k): _to_python(v) for k, v in value.items()}
    if isinstance(value, celtypes.NullType):
        return None
    return value
