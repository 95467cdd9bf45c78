"""The engine imports no face, no runtime, no settings and no server client: arrows point inward.

Every module of ``beluga_workflows/engine/`` is parsed with ``ast`` (nothing is imported) and each
import in it, module-level or inside a function, is resolved to an absolute module name and
checked against the rules below. A store's contract (``beluga_workflows.stores.base``) may be
imported for type hints only, under ``if TYPE_CHECKING:``; no other store module at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import beluga_workflows

PACKAGE = "beluga_workflows"
ENGINE_DIR = Path(beluga_workflows.__file__).parent / "engine"

# Modules (and everything under them) the engine must never import.
FORBIDDEN = (
    *(f"{PACKAGE}.{name}" for name in (
        "admin", "api", "management", "templatetags", "tasks", "runtimes", "conf", "models",
        "human", "checks", "signals", "apps", "forms", "testing",
    )),
    "django.db", "django.contrib", "django.http", "django.conf", "django.template",
    "rest_framework", "celery", "redis", "nats", "httpx", "psycopg", "psycopg2",
)
TYPE_ONLY = f"{PACKAGE}.stores.base"
STORES = f"{PACKAGE}.stores"


def _within(module: str, prefix: str) -> bool:
    """``module`` is ``prefix`` or a submodule of it (``django.template``, not ``django.templatetags``)."""
    return module == prefix or module.startswith(prefix + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(node: ast.ImportFrom, module_name: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names (``from ..conf`` in engine.x: beluga_workflows.conf)."""
    if not node.level:
        return node.module or ""
    parts = module_name.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(node: ast.AST, module_name: str, is_package: bool) -> list[str]:
    """Every absolute module ``node`` may import: ``from a import b`` may import ``a`` or ``a.b``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = _resolve(node, module_name, is_package)
        return [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                 or (isinstance(node.func, ast.Name)
                     and node.func.id in ("import_module", "__import__")))):
        return [node.args[0].value]  # importlib.import_module("...") / __import__("...")
    return []


def _violation(target: str, type_only: bool) -> str | None:
    """Why importing ``target`` breaks the engine's layering, or ``None`` if it may."""
    for prefix in FORBIDDEN:
        if _within(target, prefix):
            return f"imports {target} (the engine must not depend on {prefix})"
    if _within(target, TYPE_ONLY):
        return None if type_only else f"imports {target} outside `if TYPE_CHECKING:` (type hints only)"
    if target == STORES and type_only:
        return None  # the package a type-only "from ..stores import base" goes through
    if _within(target, STORES):
        return f"imports {target} (a store backend; only {TYPE_ONLY}, for type hints)"
    return None


def check_source(source: str, module_name: str, *, is_package: bool = False) -> list[str]:
    """The layering violations in one module's source, as ``"<line>: <why>"`` strings."""
    tree = ast.parse(source)
    type_only_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for inner in node.body:
                type_only_nodes.update(id(n) for n in ast.walk(inner))
    problems = []
    for node in ast.walk(tree):
        for target in _imported(node, module_name, is_package):
            why = _violation(target, id(node) in type_only_nodes)
            if why is None and isinstance(node, ast.ImportFrom):
                why = _from_package_top(node, module_name, is_package, target)
            if why is not None:
                problems.append((node.lineno, why))
                break  # one report per import statement
    return [f"{line}: {why}" for line, why in sorted(problems)]


def _from_package_top(node: ast.ImportFrom, module_name: str, is_package: bool,
                      target: str) -> str | None:
    """``from beluga_workflows import x``: the package top re-exports runtimes and stores."""
    if _resolve(node, module_name, is_package) != PACKAGE or target == PACKAGE:
        return None
    if _within(target, f"{PACKAGE}.engine"):
        return None
    return f"imports {target} from the package top (which re-exports runtimes and stores)"


def engine_modules() -> list[tuple[Path, str, bool]]:
    """Every module of the engine package: its path, dotted name and whether it is a package."""
    found = []
    for path in sorted(ENGINE_DIR.rglob("*.py")):
        relative = path.relative_to(ENGINE_DIR.parent.parent).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found.append((path, ".".join(parts), is_package))
    return found


def test_the_engine_is_found_whole():
    names = {name for _, name, _ in engine_modules()}
    expected = {f"{PACKAGE}.engine", *(f"{PACKAGE}.engine.{m}" for m in (
        "_control", "activities", "clock", "context", "errors", "executor", "hooks", "lease",
        "middleware", "registry", "replay", "retry", "runner", "serialization", "types"))}
    assert expected <= names, sorted(expected - names)


def test_the_engine_imports_no_face_runtime_settings_or_server_client():
    problems = []
    for path, name, is_package in engine_modules():
        for problem in check_source(path.read_text(encoding="utf-8"), name, is_package=is_package):
            problems.append(f"{path.relative_to(ENGINE_DIR.parent)}:{problem}")
    assert problems == [], "\n".join(problems)


def test_the_context_does_not_import_the_runner():
    imports = set()
    source = (ENGINE_DIR / "context.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        imports.update(_imported(node, f"{PACKAGE}.engine.context", False))
    assert not {m for m in imports if _within(m, f"{PACKAGE}.engine.runner")}, imports


# -- the checker can fail -------------------------------------------------------------------------

SYNTHETIC = '''
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..conf import workflow_settings
from .. import models
from beluga_workflows import get_executor
from .types import HistoryEvent
from ..stores.base import WorkflowStore
import django.db.models
from django.template.loader import render_to_string
from django.core.serializers.json import DjangoJSONEncoder
from django.templatetags.static import static

if TYPE_CHECKING:
    from ..stores.base import WorkflowStore as Typed
    from ..stores.django import DjangoStore


def schedule():
    import celery
    from ..runtimes import local as runtimes
    importlib.import_module("redis.asyncio")
    return celery, runtimes
'''


def test_the_checker_reports_each_kind_of_violation():
    problems = check_source(SYNTHETIC, f"{PACKAGE}.engine.synthetic")
    lines = [int(p.split(":")[0]) for p in problems]
    assert len(lines) == 10, problems  # one per violating import, none for the allowed ones
    text = "\n".join(problems)
    assert "beluga_workflows.conf" in text  # relative, module level
    assert "beluga_workflows.models" in text  # "from .. import models"
    assert "beluga_workflows.get_executor from the package top" in text
    assert "beluga_workflows.stores.base outside `if TYPE_CHECKING:`" in text
    assert "django.db" in text and "django.template" in text
    assert "beluga_workflows.stores.django (a store backend" in text  # even for type hints
    assert "imports celery" in text  # inside a function
    assert "beluga_workflows.runtimes" in text  # inside a function, relative
    assert "redis.asyncio" in text  # importlib.import_module("...")
    source_lines = SYNTHETIC.splitlines()
    reported = {source_lines[n - 1].strip() for n in lines}
    # Allowed: the standard library, the engine's own modules, the store contract for type
    # hints only, django.core, and django.templatetags (not under django.template).
    for allowed in ("import json", "from .types import HistoryEvent",
                    "from ..stores.base import WorkflowStore as Typed",
                    "from django.core.serializers.json import DjangoJSONEncoder",
                    "from django.templatetags.static import static"):
        assert allowed not in reported, allowed


def test_relative_imports_resolve_from_modules_and_packages():
    node = ast.parse("from ..conf import x").body[0]
    assert _resolve(node, f"{PACKAGE}.engine.runner", False) == f"{PACKAGE}.conf"
    node = ast.parse("from .conf import x").body[0]
    assert _resolve(node, f"{PACKAGE}.engine", True) == f"{PACKAGE}.engine.conf"
    node = ast.parse("from .. import conf").body[0]
    assert _resolve(node, f"{PACKAGE}.engine", True) == PACKAGE


def test_the_checker_fails_a_real_engine_module_given_one_bad_import():
    source = (ENGINE_DIR / "runner.py").read_text(encoding="utf-8")
    assert check_source(source, f"{PACKAGE}.engine.runner") == []
    broken = source + "\n\ndef _late():\n    from ..conf import workflow_settings\n    return workflow_settings\n"
    problems = check_source(broken, f"{PACKAGE}.engine.runner")
    assert len(problems) == 1 and "beluga_workflows.conf" in problems[0], problems


# -- the context talks to the runner only through its port ---------------------------------------

def _port_members() -> set[str]:
    tree = ast.parse((ENGINE_DIR / "port.py").read_text(encoding="utf-8"))
    port = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ActivationPort")
    members = {n.name for n in port.body if isinstance(n, ast.FunctionDef)}
    members |= {n.target.id for n in port.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    return members


def _port_uses() -> set[str]:
    """Attributes the context reads off its port: ``self._a.x``, or ``a.x`` after ``a = self._a``."""
    tree = ast.parse((ENGINE_DIR / "context.py").read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        self_a = (isinstance(value, ast.Attribute) and value.attr == "_a"
                  and isinstance(value.value, ast.Name) and value.value.id == "self")
        if self_a or (isinstance(value, ast.Name) and value.id in ("a", "port")):
            used.add(node.attr)
    return used


def test_the_context_uses_only_members_of_its_port():
    members, used = _port_members(), _port_uses()
    assert {"recorded", "record", "next_signal", "go_live", "interrupt"} <= used  # it was read
    assert used <= members, sorted(used - members)


def test_the_activation_implements_every_member_of_the_port():
    from beluga_workflows.engine.runner import Activation, RunnerConfig
    from beluga_workflows.engine.types import WorkflowState
    from beluga_workflows.stores.memory import MemoryStore

    activation = Activation(RunnerConfig(store=MemoryStore()),
                            WorkflowState(workflow_id="w", run_id="r", workflow_type="t"), "me")
    missing = [m for m in sorted(_port_members()) if not hasattr(activation, m)]
    assert missing == []
