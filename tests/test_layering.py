"""Dependencies point one way: evalboard/ imports neither streamlit nor integrations;
integrations/ never imports streamlit (GUIDE section 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RULES = {"evalboard": ("streamlit", "integrations", "ui", "pages", "cli"),
         "integrations": ("streamlit", "ui", "pages", "cli")}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(RULES))
def test_layering(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files found under {package}/"
    offenders = {str(f.relative_to(ROOT)): sorted(imported_modules(f) & set(RULES[package]))
                 for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}
