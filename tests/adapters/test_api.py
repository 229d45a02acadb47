"""Adapters see one small API: importing any of them loads neither the core's config nor its scheduler or HA tables."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adapters import ADAPTERS
from tests.helpers import ROOT

CORE_ONLY = ("yaml", "apscheduler", "gateway.config", "gateway.ha")


def test_adapters_import_only_the_adapter_api():
    # A fresh interpreter: this test process has long imported the core. One for all adapters keeps it fast.
    names = sorted(ADAPTERS)
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module('adapters.' + name)\n"
            f"print(','.join(m for m in {CORE_ONLY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapter_source_imports_nothing_from_the_core_but_the_api(name: str):
    source = (ROOT / "adapters" / f"{name}.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    core = [line for line in imports if "gateway" in line or "adapters" in line]
    assert core == ["from gateway import adapter_api as api"], core
