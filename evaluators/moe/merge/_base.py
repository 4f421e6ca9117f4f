"""The contract every merge method keeps."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import storage
from evaluators.moe.merge._adapter import LoraAdapter, check_weights, read_adapter, write_adapter


class MergeMethod(abc.ABC):
    """How k adapters become one.

    Contract of :meth:`merge`: read the source adapter directories, write a complete peft
    adapter directory at ``out_dir`` (replacing any previous one) whose delta is the weighted
    sum of the sources' deltas (exactly for ``cat``, approximately for the others), and
    return ``out_dir``. A merge depends only on its own sources and weights, never on an
    earlier merge made by the same object.
    """

    name: ClassVar[str]
    """The registry key."""
    exact: ClassVar[bool] = False
    """Whether the merged delta equals the weighted sum up to float rounding."""

    @abc.abstractmethod
    def merge_adapters(
        self, adapters: Sequence[LoraAdapter], weights: Sequence[float]
    ) -> LoraAdapter:
        """Merge adapters already in memory (the benchmark times this part)."""

    def merge(
        self,
        sources: Sequence[str | Path],
        weights: Sequence[float],
        out_dir: str | Path,
        *,
        names: Sequence[str] | None = None,
        card: str | None = None,
    ) -> Path:
        """Merge the adapters saved in ``sources`` with ``weights`` into ``out_dir``, with the
        model ``card`` (``README.md``) where given.

        ``merge.json`` names each source by ``names`` (default: its folder's name) and its
        sha256, never by where it lies, so the same sources and weights merge into the same
        bytes on any machine and under any output root.
        """
        values = check_weights(sources, weights)
        labels = [Path(s).name for s in sources] if names is None else list(names)
        if len(labels) != len(sources):
            raise ValueError(f"{len(labels)} names for {len(sources)} sources")
        merged = self.merge_adapters([read_adapter(s) for s in sources], values)
        info = {
            "method": self.name,
            "sources": [
                {"name": label, "sha256": storage.directory_sha256(Path(s))[0]}
                for label, s in zip(labels, sources, strict=True)
            ],
            "weights": values,
            "rank": merged.config.r,
        }
        return write_adapter(merged, out_dir, info, card=card)
