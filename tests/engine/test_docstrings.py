"""The engine's public names say what they guarantee: at least 80 % of them carry a docstring.

Counted, per module of ``beluga_workflows/engine/`` (parsed with ``ast``, not imported): the module
itself unless its name starts with ``_``, and in a public module its classes and functions not
starting with ``_``, and the methods and properties not starting with ``_`` of those classes.
``typing.overload`` stubs are not counted (the implementation carries the docstring).
"""

from __future__ import annotations

import ast
from pathlib import Path

import beluga_workflows

PACKAGE_DIR = Path(beluga_workflows.__file__).parent
ENGINE_DIR = PACKAGE_DIR / "engine"
THRESHOLD = 0.80


def _is_overload(node: ast.AST) -> bool:
    return any((isinstance(d, ast.Name) and d.id == "overload")
               or (isinstance(d, ast.Attribute) and d.attr == "overload")
               for d in getattr(node, "decorator_list", []))


def _public(name: str) -> bool:
    return not name.startswith("_")


def public_definitions(source: str, module: str) -> list[tuple[str, bool]]:
    """``(qualified name, has a docstring)`` for each public definition of one module's source."""
    tree = ast.parse(source)
    found = [(module, ast.get_docstring(tree) is not None)]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if _public(node.name) and not _is_overload(node):
                found.append((f"{module}.{node.name}", ast.get_docstring(node) is not None))
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            found.append((f"{module}.{node.name}", ast.get_docstring(node) is not None))
            for member in node.body:
                if (isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and _public(member.name) and not _is_overload(member)):
                    found.append((f"{module}.{node.name}.{member.name}",
                                  ast.get_docstring(member) is not None))
    return found


def coverage(root: Path) -> tuple[int, int, list[str]]:
    """How many public definitions under ``root`` have docstrings, of how many; the missing ones."""
    documented, total, missing = 0, 0, []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        if any(not _public(part) and part != "__init__" for part in relative.parts):
            continue  # a private module (``_control``) and what it holds
        module = ".".join(relative.parts).removesuffix(".__init__")
        for name, has_doc in public_definitions(path.read_text(encoding="utf-8"), module):
            total += 1
            documented += has_doc
            if not has_doc:
                missing.append(name)
    return documented, total, missing


def test_engine_public_docstrings_are_at_least_80_percent_present():
    documented, total, missing = coverage(ENGINE_DIR)
    assert total > 100  # the whole engine was read
    assert documented / total >= THRESHOLD, (
        f"{documented}/{total} = {documented / total:.0%} documented; missing: {', '.join(missing)}"
    )


def test_the_count_sees_what_is_missing():
    source = '''"""A module."""

class Shown:
    """Documented."""

    def method(self):
        pass

    def _private(self):
        pass


def helper():
    """Documented."""


def bare():
    pass


def _hidden():
    pass


class _Private:
    def method(self):
        pass
'''
    found = dict(public_definitions(source, "m"))
    assert found == {"m": True, "m.Shown": True, "m.Shown.method": False, "m.helper": True,
                     "m.bare": False}
