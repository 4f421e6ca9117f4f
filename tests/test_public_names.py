"""Each package's ``__init__`` names its public API in ``__all__``, and importing it stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = (
    "storage",
    "trainers",
    "evaluators",
    "evaluators.baselines",
    "evaluators.moe",
    "evaluators.report",
    "evaluators.scoring",
    "evaluators.stats",
    "evaluators.trials",
    "hpo",
    "hpo.evaluation",
    "hpo.personas",
    "hpo.study",
    "hpo.workers",
)

HEAVY = ("torch", "transformers", "peft", "sentence_transformers")
"""Imported inside the functions that need them, never by importing a package."""


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_resolve_once(name: str) -> None:
    package = importlib.import_module(name)
    public = package.__all__
    assert len(set(public)) == len(public), f"{name}.__all__ repeats a name"
    missing = [attr for attr in public if not hasattr(package, attr)]
    assert missing == [], f"{name}.__all__ names what {name} lacks: {missing}"


def test_importing_every_package_loads_no_heavy_library() -> None:
    code = (
        f"import sys, {', '.join(PACKAGES)}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
