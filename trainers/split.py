"""The deterministic train/val/test split of each persona's examples, and which personas
are large enough to split.

Records without an explicit ``split`` are ordered by a hash of the seed, the persona id and
the record's position among that persona's records, so the same file and seed always give
the same split, whatever the other personas are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainers.dataset import SPLITS, DatasetError, Example, Persona, Record

SHOWN_IDS = 5
"""How many short personas an error names before ``...``."""


@dataclass(frozen=True)
class SplitConfig:
    """How lines without an explicit ``split`` are divided into train, val and test."""

    n_test: int = 10
    """Test examples per persona (explicit ``"test"`` lines count towards it)."""
    val_fraction: float = 0.1
    """Share of the remaining unsplit examples that go to val (at least one)."""
    seed: int = 0
    """Seed of the split order; another seed gives another split."""

    def __post_init__(self) -> None:
        if isinstance(self.n_test, bool) or not isinstance(self.n_test, int) or self.n_test < 1:
            raise ValueError(f"invalid SplitConfig.n_test={self.n_test!r}: expected an int >= 1")
        if not isinstance(self.val_fraction, int | float) or not 0 < self.val_fraction < 1:
            raise ValueError(
                f"invalid SplitConfig.val_fraction={self.val_fraction!r}: "
                "expected a number with 0 < val_fraction < 1"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"invalid SplitConfig.seed={self.seed!r}: expected an int")

    @property
    def min_examples(self) -> int:
        """The fewest examples a persona without explicit splits needs: n_test, 1 val, 1 train."""
        return self.n_test + 2


DEFAULT_SPLIT = SplitConfig()
"""The split used when none is given."""


def select_personas(
    path: Path,
    groups: Mapping[str, Sequence[Record]],
    config: SplitConfig,
    min_examples: int | None = None,
) -> tuple[list[str], list[str]]:
    """Drop the personas with fewer than ``min_examples`` examples; check the rest can split.

    Args:
        path: The file, for error messages.
        groups: Each persona's records, by persona id, in order of first appearance.
        config: The split the kept personas must satisfy.
        min_examples: Drop personas with fewer examples; None keeps every persona.

    Returns:
        The kept and the dropped persona ids, each in order of first appearance.

    Raises:
        DatasetError: Every persona is dropped, or a kept persona without explicit splits has
            fewer than ``config.min_examples`` examples. The message counts the short
            personas, names the first few and suggests ``--min-examples`` or ``--n-test``.
    """
    threshold = min_examples if min_examples is not None else 0
    kept = [pid for pid, records in groups.items() if len(records) >= threshold]
    dropped = [pid for pid, records in groups.items() if len(records) < threshold]
    if not kept:
        largest = max(len(records) for records in groups.values())
        raise DatasetError(
            path,
            None,
            f"--min-examples {min_examples} drops all {len(groups)} personas (the largest "
            f"has {largest} examples); lower it to at most {largest}",
        )
    need = config.min_examples
    short = [
        pid
        for pid in kept
        if len(groups[pid]) < need and all(record.split is None for record in groups[pid])
    ]
    if short:
        shown = ", ".join(f"{pid!r} ({len(groups[pid])})" for pid in short[:SHOWN_IDS])
        more = ", ..." if len(short) > SHOWN_IDS else ""
        which = (
            "personas" if min_examples is None else f"personas kept by --min-examples {threshold}"
        )
        raise DatasetError(
            path,
            None,
            f"{len(short)} of {len(kept)} {which} have fewer than {need} examples "
            f"(n_test {config.n_test} + 1 val + 1 train): {shown}{more}; drop them with "
            f"--min-examples {need} or lower the test split with --n-test N "
            "(or give the examples explicit 'split' values)",
        )
    return kept, dropped


def _split_order(seed: int, persona_id: str, index: int) -> str:
    return hashlib.sha256(f"{seed}:{persona_id}:{index}".encode()).hexdigest()


def split_persona(path: Path, records: Sequence[Record], config: SplitConfig) -> Persona:
    """Assign a persona's unsplit records to test, val and train; check each split is usable.

    Args:
        path: The file, for error messages.
        records: The persona's records in file order (one persona id and text).
        config: How unsplit records are divided.

    Returns:
        The persona with its examples in file order.

    Raises:
        DatasetError: The persona ends up without a train or without a test example.
    """
    persona_id = records[0].persona_id
    explicit = [record.split for record in records if record.split is not None]
    unsplit = [i for i, record in enumerate(records) if record.split is None]

    # Keep one unsplit record for train when no explicit record is train.
    keep_for_train = 0 if "train" in explicit else 1
    order = sorted(unsplit, key=lambda i: _split_order(config.seed, persona_id, i))
    n_test = min(max(0, config.n_test - explicit.count("test")), len(order) - keep_for_train)
    n_test = max(0, n_test)
    remaining = len(order) - n_test
    n_val = 0
    if remaining > 0:
        n_val = min(max(1, round(config.val_fraction * remaining)), remaining - keep_for_train)
    assigned = {i: "test" for i in order[:n_test]}
    assigned.update({i: "val" for i in order[n_test : n_test + n_val]})

    examples = tuple(
        Example(record.context, record.reply, record.split or assigned.get(i, "train"))
        for i, record in enumerate(records)
    )
    counts = {name: sum(e.split == name for e in examples) for name in SPLITS}
    if counts["train"] < 1 or counts["test"] < 1:
        shown = ", ".join(f"{counts[name]} {name}" for name in SPLITS)
        raise DatasetError(
            path,
            None,
            f"persona {persona_id!r} has {len(records)} examples ({shown}) after splitting; "
            "it needs at least 1 train and 1 test example",
        )
    return Persona(persona_id, records[0].persona, examples)
