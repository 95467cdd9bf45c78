"""Evaluating expressions: the operators over JSON values, and the tree turned into closures.

The semantics are those listed in ``expressions`` (rules 1 to 8). ``compile_tree`` turns each node of
``expression_parser``'s tree into a Python closure once, so evaluating is a few nested calls and no
walk of the tree: a static path is one loop of ``dict.get``, a comparison with a literal keeps the
literal in the closure, ``x in ["a", "b"]`` becomes a frozenset lookup, and a subtree of constants
is computed at compile time. Errors are raised as ``ExpressionError`` (``MissingFieldError`` for a
missing field); the closures never read a Python attribute of the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidInputError
from .expression_parser import (
    Call,
    Chain,
    Conditional,
    Constant,
    ListOf,
    Member,
    Node,
    Unary,
    Variable,
    format_key,
)

__all__ = ["ExpressionError", "MissingFieldError", "Run", "compile_tree", "thaw"]

_MISSING = object()
_INT64 = 2 ** 63
_KINDS = {type(None): "null", bool: "bool", int: "number", float: "number", str: "string",
          list: "list", tuple: "list", dict: "map"}
_NUMBER_PAIRS = {(int, int), (int, float), (float, int), (float, float)}
_ORDERED_PAIRS = _NUMBER_PAIRS | {(str, str)}
_ORDERED_KINDS = ("number", "string", "bool")
_PLAIN = {str, int, float, bool, type(None)}
_EMPTY: Mapping[str, Any] = {}

Run = Callable[[Mapping[str, Any]], Any]
"""A compiled expression: a function of the bindings returning the value (or raising)."""


class ExpressionError(InvalidInputError):
    """An expression could not be evaluated on the given bindings (a type error, ``1 / 0``...)."""


class MissingFieldError(ExpressionError):
    """The bindings lack a name or field the expression reads.

    Attributes:
        path: the path up to and including the missing step (``event.data.total``).
    """

    def __init__(self, path: str, why: str = "") -> None:
        super().__init__(f"no field {path}" + (f" ({why})" if why else ""))
        self.path, self.why = path, why

    def __reduce__(self) -> tuple:
        return type(self), (self.path, self.why)



# -- values ---------------------------------------------------------------------------------------

def _kind(value: Any) -> str:
    """The JSON kind of a value: null, bool, number, string, list, map, or its Python type's name."""
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    for types, name in ((bool, "bool"), ((int, float), "number"), (str, "string"),
                        (dict, "map"), ((list, tuple), "list")):
        if isinstance(value, types):
            return name
    return type(value).__name__


def _type_error(op: str, *values: Any) -> ExpressionError:
    kinds = " and ".join(_kind(v) for v in values)
    return ExpressionError(f"'{op}' does not apply to {kinds}")


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def thaw(value: Any) -> Any:
    """``value`` with the tuples the compiler keeps constant lists in turned back into lists."""
    return [thaw(v) for v in value] if isinstance(value, (list, tuple)) else value


def _int_checked(value: Any) -> Any:
    if type(value) is int and not -_INT64 <= value < _INT64:
        raise ExpressionError("integer overflow (beyond 64 bits)")
    return value


# -- operators (rules 3 to 8 of the module docstring) ---------------------------------------------

def _equal(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if ta is tb and ta in _PLAIN:
        return a == b
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return False
    if ka == "list":
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "map":
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if ka in ("null", "bool", "number", "string"):
        return a == b
    return ta is tb and bool(a == b)


def _not_equal(a: Any, b: Any) -> bool:
    return not _equal(a, b)


def _ordered(op: str, a: Any, b: Any) -> None:
    """Refuse an ordering of two values that are not two numbers, strings or booleans."""
    if (type(a), type(b)) not in _ORDERED_PAIRS:
        kind = _kind(a)
        if kind != _kind(b) or kind not in _ORDERED_KINDS:
            raise _type_error(op, a, b)


def _less(a: Any, b: Any) -> bool:
    _ordered("<", a, b)
    return a < b


def _less_equal(a: Any, b: Any) -> bool:
    _ordered("<=", a, b)
    return a <= b


def _greater(a: Any, b: Any) -> bool:
    _ordered(">", a, b)
    return a > b


def _greater_equal(a: Any, b: Any) -> bool:
    _ordered(">=", a, b)
    return a >= b


def _contains(a: Any, b: Any) -> bool:
    kind = _kind(b)
    if kind == "list":
        return any(_equal(a, item) for item in b)
    if kind == "map":
        return a in b if type(a) is str else any(_equal(a, key) for key in b)
    if kind == "string" and _kind(a) == "string":
        return a in b
    raise _type_error("in", a, b)


def _numbers(op: str, a: Any, b: Any) -> None:
    if (type(a), type(b)) not in _NUMBER_PAIRS and not (_kind(a) == _kind(b) == "number"):
        raise _type_error(op, a, b)


def _add(a: Any, b: Any) -> Any:
    if (type(a), type(b)) in _NUMBER_PAIRS:
        return _int_checked(a + b)
    kind = _kind(a)
    if kind == _kind(b):
        if kind == "number":
            return _int_checked(a + b)
        if kind == "string":
            return a + b
        if kind == "list":
            return [*a, *b]
    raise _type_error("+", a, b)


def _subtract(a: Any, b: Any) -> Any:
    _numbers("-", a, b)
    return _int_checked(a - b)


def _multiply(a: Any, b: Any) -> Any:
    _numbers("*", a, b)  # numbers only: "x" * 10**9 must not build a gigabyte string
    return _int_checked(a * b)


def _divide(a: Any, b: Any) -> Any:
    _numbers("/", a, b)
    if b == 0:
        raise ExpressionError("division by zero")
    try:
        return a / b
    except OverflowError:
        raise ExpressionError("the quotient is too large") from None


def _remainder(a: Any, b: Any) -> Any:
    _numbers("%", a, b)
    if b == 0:
        raise ExpressionError("modulo by zero")
    if isinstance(a, float) or isinstance(b, float):
        return math.fmod(a, b)
    remainder = abs(a) % abs(b)
    return remainder if a >= 0 else -remainder


def _negate(a: Any) -> Any:
    if _kind(a) != "number":
        raise _type_error("-", a)
    return _int_checked(-a)


def _not(a: Any) -> bool:
    if a is True or a is False:
        return not a
    raise _type_error("!", a)


def _size(a: Any) -> int:
    if _kind(a) in ("string", "list", "map"):
        return len(a)
    raise ExpressionError(f"size() does not apply to {_kind(a)}")


_BINARY = {"==": _equal, "!=": _not_equal, "<": _less, "<=": _less_equal, ">": _greater,
           ">=": _greater_equal, "in": _contains, "+": _add, "-": _subtract, "*": _multiply,
           "/": _divide, "%": _remainder}
_UNARY = {"-": _negate, "!": _not}


# -- compiling the tree into closures -------------------------------------------------------------

def compile_tree(node: Node) -> Run:
    """A function of the bindings computing the tree ``node``.

    The function raises ``ExpressionError`` (or ``MissingFieldError``) when the data does not fit.
    """
    return _compile(node)[0]


def _compile(node: Node) -> tuple[Run, Any]:
    """A function of the bindings computing ``node``, and its value when it is a constant."""
    if isinstance(node, Constant):
        return _constant(node.value)
    if isinstance(node, Variable):
        return _variable(node.name), _MISSING
    if isinstance(node, Member):
        return _member(node)
    if isinstance(node, Unary):
        return _unary(node)
    if isinstance(node, Chain):
        return _chain(node)
    if isinstance(node, Conditional):
        return _conditional(node)
    if isinstance(node, ListOf):
        return _list(node)
    if isinstance(node, Call):
        return _call(node)
    raise AssertionError(f"unknown node {node!r}")  # pragma: no cover


def _constant(value: Any) -> tuple[Run, Any]:
    return (lambda bindings: value), value


def _folded(run: Run, *parts: Any) -> tuple[Run, Any]:
    """``run``, computed once now when all its ``parts`` are constants (and it does not fail)."""
    if any(part is _MISSING for part in parts):
        return run, _MISSING
    try:
        value = _freeze(run(_EMPTY))  # frozen: a cached constant must not be mutated by a caller
    except ExpressionError:
        return run, _MISSING  # fails at each evaluation instead (false as a condition)
    return _constant(value)


def _variable(name: str) -> Run:
    def run(bindings: Mapping[str, Any]) -> Any:
        value = bindings.get(name, _MISSING)
        if value is _MISSING:
            raise MissingFieldError(name, "not bound")
        return value
    return run


def _step(value: Any, key: Any) -> Any:
    """``value[key]`` for a dict key or an in-range list index; ``_MISSING`` otherwise."""
    if isinstance(value, dict):
        return dict.get(value, key, _MISSING)
    if isinstance(value, (list, tuple)) and type(key) is int and 0 <= key < len(value):
        return value[key]
    return _MISSING


def _index(key: Any) -> Any:
    if type(key) is str or type(key) is int:
        return key
    raise ExpressionError(f"an index must be a string or an integer, not {_kind(key)}")


def _lookup(node: Member) -> Callable[[Mapping[str, Any]], Any]:
    """A function returning the value at ``node``'s path, or ``_MISSING`` (``has()`` uses it)."""
    static = all(not isinstance(key, Node) for key in node.keys)
    if isinstance(node.base, Variable) and static:
        root, keys = node.base.name, tuple(node.keys)

        def lookup(bindings: Mapping[str, Any]) -> Any:
            value = bindings.get(root, _MISSING)
            for key in keys:
                value = value.get(key, _MISSING) if type(value) is dict else _step(value, key)
            return value
        return lookup
    if isinstance(node.base, Variable):
        name = node.base.name

        def base(bindings: Mapping[str, Any]) -> Any:
            return bindings.get(name, _MISSING)
    else:
        base = _compile(node.base)[0]
    steps = [(None, _compile(key)[0]) if isinstance(key, Node) else (key, None) for key in node.keys]

    def lookup(bindings: Mapping[str, Any]) -> Any:
        value = base(bindings)
        for key, computed in steps:
            value = _step(value, key if computed is None else _index(computed(bindings)))
        return value
    return lookup


def _member(node: Member) -> tuple[Run, Any]:
    lookup = _lookup(node)

    def run(bindings: Mapping[str, Any]) -> Any:
        value = lookup(bindings)
        if value is _MISSING:
            raise _explain_missing(node, bindings)
        return value
    if isinstance(node.base, (Constant, ListOf)):
        return _folded(run, _compile(node.base)[1], *(
            _compile(k)[1] for k in node.keys if isinstance(k, Node)))
    return run, _MISSING


def _explain_missing(node: Member, bindings: Mapping[str, Any]) -> MissingFieldError:
    """Which step of ``node``'s path is missing (only computed once it is)."""
    if isinstance(node.base, Variable):
        path, value = node.base.name, bindings.get(node.base.name, _MISSING)
        if value is _MISSING:
            return MissingFieldError(path, "not bound")
    else:
        path, value = "(value)", _compile(node.base)[0](bindings)
    for key in node.keys:
        key = _index(_compile(key)[0](bindings)) if isinstance(key, Node) else key
        parent, path = value, path + format_key(key)
        value = _step(parent, key)
        if value is _MISSING:
            kind = _kind(parent)
            return MissingFieldError(path, "" if kind in ("map", "list") else f"{kind} has no fields")
    return MissingFieldError(path)  # pragma: no cover - only called once a step is missing


def _unary(node: Unary) -> tuple[Run, Any]:
    operand, value = _compile(node.operand)
    funcs = [_UNARY[op] for op in reversed(node.ops)]
    if len(funcs) == 1:
        func = funcs[0]

        def run(bindings: Mapping[str, Any]) -> Any:
            return func(operand(bindings))
    else:
        def run(bindings: Mapping[str, Any]) -> Any:
            result = operand(bindings)
            for func in funcs:
                result = func(result)
            return result
    return _folded(run, value)


def _chain(node: Chain) -> tuple[Run, Any]:
    parts = [_compile(node.first)] + [_compile(operand) for _, operand in node.rest]
    runs, values = [run for run, _ in parts], [value for _, value in parts]
    if node.precedence <= 2:
        run = (_short_circuit(runs, "||", True) if node.precedence == 1
               else _short_circuit(runs, "&&", False))
    elif len(runs) == 2:
        run = _binary(node.rest[0][0], runs[0], runs[1], values[1])
    else:
        first, rest = runs[0], [(_BINARY[op], run) for (op, _), run in zip(node.rest, runs[1:], strict=True)]

        def run(bindings: Mapping[str, Any]) -> Any:
            result = first(bindings)
            for func, operand in rest:
                result = func(result, operand(bindings))
            return result
    return _folded(run, *values)


def _binary(op: str, left: Run, right: Run, constant: Any) -> Run:
    func = _BINARY[op]
    if constant is _MISSING:
        return lambda bindings: func(left(bindings), right(bindings))
    if op == "in" and type(constant) is tuple and all(type(v) is str for v in constant):
        choices = frozenset(constant)

        def run(bindings: Mapping[str, Any]) -> bool:
            value = left(bindings)
            return value in choices if type(value) is str else _contains(value, constant)
        return run
    return lambda bindings: func(left(bindings), constant)


def _not_boolean(op: str, value: Any) -> ExpressionError:
    return ExpressionError(f"'{op}' takes booleans, not {_kind(value)}")


def _short_circuit(runs: list[Run], op: str, decisive: bool) -> Run:
    """``&&`` (``decisive`` False) or ``||`` (True): the first operand equal to ``decisive``
    decides, whatever the others are, errors included (as in CEL); otherwise an operand's error
    (or a non-boolean) is raised, and with none the result is ``not decisive``."""
    def run(bindings: Mapping[str, Any]) -> bool:
        error = None
        for operand in runs:
            try:
                value = operand(bindings)
            except ExpressionError as exc:
                error = error or exc
                continue
            if value is decisive:
                return decisive
            if value is not (not decisive):
                error = error or _not_boolean(op, value)
        if error is not None:
            raise error
        return not decisive
    return run


def _conditional(node: Conditional) -> tuple[Run, Any]:
    (test, value), then, otherwise = _compile(node.test), _compile(node.then), _compile(node.otherwise)
    if value is True or value is False:
        return then if value else otherwise
    then_run, otherwise_run = then[0], otherwise[0]

    def run(bindings: Mapping[str, Any]) -> Any:
        chosen = test(bindings)
        if chosen is True:
            return then_run(bindings)
        if chosen is False:
            return otherwise_run(bindings)
        raise _not_boolean("?:", chosen)
    return run, _MISSING


def _list(node: ListOf) -> tuple[Run, Any]:
    parts = [_compile(item) for item in node.items]
    runs = [run for run, _ in parts]
    return _folded(lambda bindings: [run(bindings) for run in runs], *(v for _, v in parts))


def _call(node: Call) -> tuple[Run, Any]:
    if node.name == "has":
        lookup = _lookup(node.argument)
        return (lambda bindings: lookup(bindings) is not _MISSING), _MISSING
    argument, value = _compile(node.argument)
    return _folded(lambda bindings: _size(argument(bindings)), value)
