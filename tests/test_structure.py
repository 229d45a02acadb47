"""The house rules that keep the code changeable in one look (issue #10), measured on every run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60
PACKAGES = ("gateway", "adapters")
# gateway.cli hands the adapter registry to the core; no other core module may know an adapter.
REGISTRY_USERS = {"gateway/cli.py"}


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def definitions(path: Path) -> list[tuple[str, ast.AST]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.name, node) for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)]


def length(node: ast.AST) -> int:
    # Decorators included; a docstring counts, as a reader reads it too.
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return node.end_lineno - first + 1


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_classes_and_functions_stay_small(path: Path):
    too_long = []
    for name, node in definitions(path):
        limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
        if length(node) > limit:
            too_long.append(f"{name}: {length(node)} lines (at most {limit})")
    assert not too_long, f"{path.relative_to(ROOT)}: {'; '.join(too_long)}"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_an_adapter():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "gateway").rglob("*.py")
                 if str(p.relative_to(ROOT)) not in REGISTRY_USERS
                 and any(m == "adapters" or m.startswith("adapters.") for m in imported_modules(p))]
    assert not offenders, f"import adapters only through the registry the CLI hands in: {offenders}"
