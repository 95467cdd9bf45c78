"""The syntax of expressions: a tokenizer and a precedence-climbing parser into a small tree.

Written by hand on purpose: the text is never given to Python's ``eval``, ``compile`` or ``ast``.
The grammar (CEL's, for the subset we take), loosest binding first::

    expr     = or ["?" expr ":" expr]                   (right-associative)
    or       = and {"||" and}
    and      = rel {"&&" rel}
    rel      = add [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") add]   (not chained)
    add      = mul {("+" | "-") mul}
    mul      = unary {("*" | "/" | "%") unary}
    unary    = {"!" | "-"} member
    member   = primary {"." IDENT | "[" expr "]"}
    primary  = literal | IDENT | "size(" expr ")" | "has(" member ")" | "(" expr ")"
             | "[" [expr {"," expr} [","]] "]"
    literal  = INT | HEX | FLOAT | STRING | "true" | "false" | "null"

``IDENT`` is ``[A-Za-z_][A-Za-z0-9_]*``; after a dot any identifier is a field name, keywords
included (``event.data.in``). Strings take single or double quotes and the escapes
``\\\\ \\" \\' \\n \\r \\t \\b \\f \\v \\a \\? \\` \\xHH \\uHHHH \\UHHHHHHHH``. ``1 < x < 3`` is refused
(write ``1 < x && x < 3``); chains of one precedence (``a + b - c``, ``a || b || c``) become one
node, so only parentheses, brackets, calls and ``?:`` nest. The text is at most
``MAX_EXPRESSION_LENGTH`` characters and ``MAX_EXPRESSION_DEPTH`` levels deep, which bounds the
parser's recursion and the evaluator's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError

__all__ = [
    "MAX_EXPRESSION_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "Call",
    "Chain",
    "Conditional",
    "Constant",
    "ExpressionSyntaxError",
    "ListOf",
    "Member",
    "Node",
    "Unary",
    "Variable",
    "format_key",
    "parse",
    "tree_paths",
]

MAX_EXPRESSION_LENGTH = 2000
MAX_EXPRESSION_DEPTH = 50

# Precedence of the binary operators (higher binds tighter); "?:" sits below them all.
PRECEDENCE = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "in": 3,
              "+": 4, "-": 4, "*": 5, "/": 5, "%": 5}
RELATIONAL = 3
FUNCTIONS = ("size", "has")

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n\f]+)
  | (?P<float>[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
  | (?P<hex>0[xX][0-9a-fA-F]+)
  | (?P<int>[0-9]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[<>!?:+\-*/%().\[\],])
  | (?P<quote>["'])
""", re.VERBOSE)
_PLAIN_RUN = {'"': re.compile(r'[^"\\\n\r]+'), "'": re.compile(r"[^'\\\n\r]+")}
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t", "b": "\b",
            "f": "\f", "v": "\v", "a": "\a", "?": "?", "`": "`"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_HINTS = {"=": "use '==' to compare", "&": "use '&&'", "|": "use '||'",
          "{": "map literals are not supported", "and": "use '&&'", "or": "use '||'",
          "not": "use '!'"}
_EXCERPT_WIDTH = 60


class ExpressionSyntaxError(InvalidInputError):
    """An expression that cannot be parsed (or is too long or too deeply nested).

    The message names the position and shows the line with a caret under it.

    Attributes:
        text: the expression.
        position: the 0-based offset of the problem in ``text``.
        line, column: the same, 1-based.
        problem: what is wrong, without the position and the excerpt.
    """

    def __init__(self, text: str, position: int, problem: str) -> None:
        self.text, self.position, self.problem = text, position, problem
        self.line = text.count("\n", 0, position) + 1
        self.column = position - (text.rfind("\n", 0, position) + 1) + 1
        where = f"line {self.line}, column {self.column}" if "\n" in text else f"column {self.column}"
        super().__init__(f"invalid expression at {where}: {problem}\n{_excerpt(text, position)}")

    def __reduce__(self) -> tuple:
        return type(self), (self.text, self.position, self.problem)


def _excerpt(text: str, position: int) -> str:
    """The line holding ``position`` (at most ~60 characters of it) and a caret under it."""
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    # One character for one: tabs and other control characters would shift the caret.
    line = "".join(c if c.isprintable() else " " for c in text[start:len(text) if end < 0 else end])
    column = position - start
    left = max(0, column - _EXCERPT_WIDTH // 2)
    shown = line[left:left + _EXCERPT_WIDTH]
    prefix = "..." if left else ""
    suffix = "..." if left + _EXCERPT_WIDTH < len(line) else ""
    return f"    {prefix}{shown}{suffix}\n    {' ' * (len(prefix) + column - left)}^"


# -- the tree -------------------------------------------------------------------------------------

class Node:
    """A node of the parsed tree; ``position`` is its offset in the text."""

    position: int


@dataclass(eq=False)
class Constant(Node):
    """A literal: a number, a string, ``true``/``false``/``null``."""

    value: Any
    position: int = 0


@dataclass(eq=False)
class Variable(Node):
    """A name looked up in the bindings (``event``, ``input``)."""

    name: str
    position: int = 0


@dataclass(eq=False)
class Member(Node):
    """``base.key`` and ``base[index]`` steps; a key is a str or int, or a node for a computed index."""

    base: Node
    keys: list
    position: int = 0


@dataclass(eq=False)
class Unary(Node):
    """``!x`` or ``-x``; ``ops`` in source order (``!-x`` is ``["!", "-"]``)."""

    ops: list
    operand: Node
    position: int = 0


@dataclass(eq=False)
class Chain(Node):
    """``first op1 x1 op2 x2 ...`` at one precedence, evaluated left to right."""

    precedence: int
    first: Node
    rest: list  # [(op, node)]
    position: int = 0


@dataclass(eq=False)
class Conditional(Node):
    """``test ? then : otherwise``."""

    test: Node
    then: Node
    otherwise: Node
    position: int = 0


@dataclass(eq=False)
class ListOf(Node):
    """A list literal ``[a, b]``."""

    items: list
    position: int = 0


@dataclass(eq=False)
class Call(Node):
    """``size(x)`` or ``has(x.y)`` (whose argument is a ``Member``)."""

    name: str
    argument: Node
    position: int = 0


# -- tokens ---------------------------------------------------------------------------------------

@dataclass
class _Token:
    kind: str  # "num", "str", "ident", "op", "end"
    value: Any
    position: int

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the expression"
        if self.kind == "ident":
            return f"identifier {self.value!r}"
        if self.kind == "num":
            return f"number {self.value!r}"
        if self.kind == "str":
            return f"string {_shorten(self.value)!r}"
        return repr(self.value)


def _shorten(text: str) -> str:
    return text if len(text) <= 20 else text[:20] + "..."


def tokenize(text: str) -> list[_Token]:
    """The tokens of ``text``, ending with an ``end`` token.

    Raises:
        ExpressionSyntaxError: an unknown character, a bad string literal or escape.
    """
    tokens, position, size = [], 0, len(text)
    while position < size:
        found = _TOKEN.match(text, position)
        if found is None:
            char = text[position]
            hint = _HINTS.get(char)
            raise ExpressionSyntaxError(text, position, f"unexpected character {char!r}"
                                        + (f"; {hint}" if hint else ""))
        kind = found.lastgroup
        if kind == "quote":
            value, end = _read_string(text, position)
            tokens.append(_Token("str", value, position))
            position = end
            continue
        lexeme = found.group()
        if kind == "float":
            tokens.append(_Token("num", float(lexeme), position))
        elif kind == "hex":
            tokens.append(_Token("num", int(lexeme, 16), position))
        elif kind == "int":
            tokens.append(_Token("num", int(lexeme), position))
        elif kind in ("ident", "op"):
            tokens.append(_Token(kind, lexeme, position))
        position = found.end()
    tokens.append(_Token("end", None, size))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    """The value of the string literal opening at ``start``, and the offset just past it."""
    quote, plain, parts, position = text[start], _PLAIN_RUN[text[start]], [], start + 1
    while True:
        run = plain.match(text, position)
        if run:
            parts.append(run.group())
            position = run.end()
        if position >= len(text) or text[position] in "\n\r":
            raise ExpressionSyntaxError(text, start, "unterminated string")
        char = text[position]
        if char == quote:
            return "".join(parts), position + 1
        parts.append(_read_escape(text, position))  # char is a backslash
        position += 2 + _HEX_ESCAPES.get(text[position + 1:position + 2], 0)


def _read_escape(text: str, position: int) -> str:
    """The character the escape at ``position`` (a backslash) stands for."""
    letter = text[position + 1:position + 2]
    if letter in _ESCAPES:
        return _ESCAPES[letter]
    digits = _HEX_ESCAPES.get(letter)
    if digits is None:
        shown = f"\\{letter}" if letter else "\\"
        raise ExpressionSyntaxError(text, position, f"unknown escape {shown!r} in a string")
    code = text[position + 2:position + 2 + digits]
    if len(code) != digits or not all(c in "0123456789abcdefABCDEF" for c in code):
        raise ExpressionSyntaxError(text, position, f"\\{letter} needs {digits} hex digits")
    value = int(code, 16)
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        raise ExpressionSyntaxError(text, position, f"\\{letter}{code} is not a valid character")
    return chr(value)


# -- the parser -----------------------------------------------------------------------------------

def parse(text: str) -> Node:
    """The tree of ``text``.

    Raises:
        ExpressionSyntaxError: a syntax error, an empty text, more than ``MAX_EXPRESSION_LENGTH``
            characters or more than ``MAX_EXPRESSION_DEPTH`` levels of nesting.
    """
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionSyntaxError(text, MAX_EXPRESSION_LENGTH, (
            f"the expression is {len(text)} characters long; at most {MAX_EXPRESSION_LENGTH} "
            f"are allowed"))
    parser = _Parser(text, tokenize(text))
    try:
        node = parser.expression()
    except RecursionError:  # cannot happen within the depth limit, unless called very deep
        raise ExpressionSyntaxError(text, 0, "the expression is nested too deeply") from None
    parser.expect_end()
    return node


class _Parser:
    """Recursive descent over the tokens; ``depth`` counts the open brackets, calls and ``?:``."""

    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text, self.tokens, self.index, self.depth = text, tokens, 0, 0

    # -- token helpers --

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, *ops: str) -> bool:
        token = self.tokens[self.index]
        return token.kind == "op" and token.value in ops

    def expect(self, op: str, opened: _Token | None = None) -> _Token:
        if not self.at(op):
            why = f"expected {op!r}"
            if opened is not None:
                why += f" to close the {opened.value!r} at column {self.column(opened)}"
            self.fail(f"{why}, found {self.token.describe()}")
        return self.advance()

    def expect_end(self) -> None:
        if self.token.kind != "end":
            self.fail(f"unexpected {self.token.describe()}" + self.hint(self.token))

    def column(self, token: _Token) -> int:
        return token.position - (self.text.rfind("\n", 0, token.position) + 1) + 1

    def fail(self, problem: str, token: _Token | None = None):
        raise ExpressionSyntaxError(self.text, (token or self.token).position, problem)

    @staticmethod
    def hint(token: _Token) -> str:
        hint = _HINTS.get(token.value) if token.kind in ("ident", "op") else None
        return f"; {hint}" if hint else ""

    def nested(self, parse, token: _Token) -> Node:
        """``parse()`` one level deeper, refused past ``MAX_EXPRESSION_DEPTH``."""
        self.depth += 1
        if self.depth > MAX_EXPRESSION_DEPTH:
            self.fail(f"the expression is nested deeper than {MAX_EXPRESSION_DEPTH} levels", token)
        node = parse()
        self.depth -= 1
        return node

    # -- grammar --

    def expression(self) -> Node:
        test = self.binary(1)
        if not self.at("?"):
            return test
        mark = self.advance()
        then = self.nested(self.expression, mark)
        self.expect(":", mark)
        otherwise = self.nested(self.expression, mark)
        return Conditional(test, then, otherwise, mark.position)

    def binary(self, lowest: int) -> Node:
        left = self.unary()
        compared = False
        while True:
            token = self.token
            if token.kind not in ("op", "ident"):
                return left
            precedence = PRECEDENCE.get(token.value, 0)
            if precedence < lowest or (token.kind == "ident" and token.value != "in"):
                return left
            if precedence == RELATIONAL:
                if compared:
                    self.fail(f"comparisons cannot be chained: {token.value!r} follows another "
                              "comparison; join them with '&&' or add parentheses")
                compared = True
            self.advance()
            right = self.binary(precedence + 1)
            if isinstance(left, Chain) and left.precedence == precedence and precedence != RELATIONAL:
                left.rest.append((token.value, right))
            else:
                left = Chain(precedence, left, [(token.value, right)], token.position)

    def unary(self) -> Node:
        start, ops = self.token, []
        while self.at("!", "-"):
            ops.append(self.advance().value)
        operand = self.member()
        return Unary(ops, operand, start.position) if ops else operand

    def member(self) -> Node:
        node = self.primary()
        keys: list = []
        while self.at(".", "["):
            mark = self.advance()
            if mark.value == ".":
                if self.token.kind != "ident":
                    self.fail(f"expected a field name after '.', found {self.token.describe()}")
                keys.append(self.advance().value)
                if self.at("("):
                    self.fail("methods are not supported; the functions are size(x) and has(x.y)")
            else:
                index = self.nested(self.expression, mark)
                self.expect("]", mark)
                static = isinstance(index, Constant) and type(index.value) in (str, int)
                keys.append(index.value if static else index)
        return Member(node, keys, node.position) if keys else node

    def primary(self) -> Node:
        token = self.advance()
        if token.kind in ("num", "str"):
            return Constant(token.value, token.position)
        if token.kind == "ident":
            return self.name(token)
        if token.kind == "op" and token.value == "(":
            inner = self.nested(self.expression, token)
            self.expect(")", token)
            return inner
        if token.kind == "op" and token.value == "[":
            return self.nested(lambda: self.list_items(token), token)
        self.index -= 1
        self.fail(f"expected a value, found {token.describe()}" + self.hint(token))

    def name(self, token: _Token) -> Node:
        word = token.value
        if word in ("true", "false", "null"):
            return Constant({"true": True, "false": False, "null": None}[word], token.position)
        if word == "in" or word in ("and", "or", "not"):
            self.index -= 1
            self.fail(f"expected a value, found {token.describe()}" + self.hint(token))
        if not self.at("("):
            return Variable(word, token.position)
        if word not in FUNCTIONS:
            self.index -= 1
            self.fail(f"unknown function {word!r}; the functions are size(x) and has(x.y)")
        opened = self.advance()
        argument = self.nested(self.expression, opened)
        if self.at(","):
            self.fail(f"{word}() takes exactly one argument")
        self.expect(")", opened)
        if word == "has" and not (isinstance(argument, Member) and argument.keys):
            self.fail("has() takes a field path such as has(event.data.total)", token)
        return Call(word, argument, token.position)

    def list_items(self, opened: _Token) -> Node:
        items = []
        while not self.at("]"):
            items.append(self.expression())
            if not self.at(","):
                break
            self.advance()
        self.expect("]", opened)
        return ListOf(items, opened.position)


# -- the paths a tree reads -----------------------------------------------------------------------

def tree_paths(node: Node) -> tuple[str, ...]:
    """The paths ``node`` reads, in order of appearance, each once (``event.data["order-id"]``).

    A path is a name and its static steps; a computed index (``items[i]``) ends it, and the
    index's own paths are listed too.
    """
    found: list[str] = []
    _collect(node, found)
    return tuple(dict.fromkeys(found))


def format_key(key: Any) -> str:
    """One path step as written: ``.name`` for an identifier, else ``["key"]`` or ``[0]``."""
    if isinstance(key, str) and key.isidentifier() and key.isascii():
        return f".{key}"
    return f"[{key!r}]" if isinstance(key, int) else f"[{json.dumps(key, ensure_ascii=False)}]"


def _collect(node: Node, out: list[str]) -> None:
    if isinstance(node, Variable):
        out.append(node.name)
    elif isinstance(node, Member):
        if isinstance(node.base, Variable):
            path = node.base.name
            for key in node.keys:
                if isinstance(key, Node):
                    break
                path += format_key(key)
            out.append(path)
        else:
            _collect(node.base, out)
        for key in node.keys:
            if isinstance(key, Node):
                _collect(key, out)
    elif isinstance(node, Unary):
        _collect(node.operand, out)
    elif isinstance(node, Chain):
        _collect(node.first, out)
        for _, operand in node.rest:
            _collect(operand, out)
    elif isinstance(node, Conditional):
        for part in (node.test, node.then, node.otherwise):
            _collect(part, out)
    elif isinstance(node, ListOf):
        for item in node.items:
            _collect(item, out)
    elif isinstance(node, Call):
        _collect(node.argument, out)
