"""The trainers package: an import chain free of the demo and of heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import trainers.tiny

HEAVY = ("torch", "transformers", "peft", "sentence_transformers")


def test_the_training_chain_imports_neither_the_demo_nor_heavy_libraries() -> None:
    """``trainers`` reads dataset -> base model -> recipe; the tiny model and the generator
    load only for ``base_model = "tiny"``, and torch & co. only inside the functions."""
    code = (
        "import sys, trainers, trainers.recipe, trainers.base_model, trainers.data; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        f"or m.startswith('trainers.tiny')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_tiny_public_names_resolve() -> None:
    """(The top-level packages' ``__all__`` are checked in tests/test_public_names.py.)"""
    public = trainers.tiny.__all__
    assert len(set(public)) == len(public)
    assert [name for name in public if not hasattr(trainers.tiny, name)] == []
