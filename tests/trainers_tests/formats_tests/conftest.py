"""Hypothesis profiles for the format property tests, and the check every loader must pass.

The suite runs 200 examples per property test (profile ``ci``). For a thorough run of
10,000 examples each::

    HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/trainers_tests/formats_tests -q
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.datafiles import SPC_CSV
from trainers.data import DatasetError, LoadResult, SplitConfig, load_dataset

_COMMON = {
    "deadline": None,  # two shared cores: timings vary too much for a deadline
    "database": None,  # no .hypothesis folder in the working tree
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("ci", max_examples=200, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("thorough", max_examples=10_000, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SMALL = SplitConfig(n_test=1, val_fraction=0.25)
"""A split that a persona of 3 examples satisfies, so generated files sometimes load."""


def real_csv() -> Path:
    """The Synthetic-Persona-Chat validation split the tests carry (tests/data)."""
    return SPC_CSV


CheckLoad = Callable[..., LoadResult | None]


@pytest.fixture
def check_load() -> CheckLoad:
    """Load a file; it must load consistently or raise a one-line DatasetError, nothing else."""

    def check(path: Path, format: str, min_examples: int | None = None) -> LoadResult | None:
        try:
            result = load_dataset(path, format=format, split=SMALL, min_examples=min_examples)
        except DatasetError as error:
            message = str(error)
            assert len(message.splitlines()) == 1, message
            assert message.startswith(f"{path}: ") or message.startswith(f"{path}:"), message
            return None
        summary, dataset = result.summary, result.dataset
        assert summary.format == format
        assert summary.personas_kept == len(dataset.personas) > 0
        assert sum(summary.examples.values()) == dataset.n_examples
        for persona in dataset.personas:
            assert persona.split("train") and persona.split("test")
        return result

    return check
