"""The packages keep their roles: checked on the source, import by import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "trainers": {"optuna", "hpo", "evaluators"},
    "hpo": {"transformers", "peft"},
    "storage": {"optuna", "torch", "transformers", "peft", "trainers", "hpo", "evaluators"},
    "evaluators": {"optuna", "hpo"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_in_role(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) & FORBIDDEN[package]
    }
    assert not offenders, f"{package} imports what its role forbids: {offenders}"


def test_sql_lives_in_storage() -> None:
    """Only storage talks SQL (sqlalchemy); the others call its functions."""
    for package in ("hpo", "trainers", "evaluators"):
        for path in (ROOT / package).rglob("*.py"):
            assert "sqlalchemy" not in _imports(path), path


def test_no_utils_modules() -> None:
    assert not list(ROOT.glob("*/utils.py"))
