"""Evaluation settings: how replies are generated, and the minimum effect a verdict needs, in
one frozen dataclass.

The CLI derives its ``hpo evaluate`` flags from these fields and their docstrings, and passes
the whole config down to :func:`evaluators.scoring.generation.generate_replies`; the defaults
live here only. Change a field with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from trainers.config import DataConfig

MIN_DERIVED_PROMPT_TOKENS = 16
"""The shortest prompt limit derived from training's length (the persona line alone is more)."""
KEY_LENGTH = 12
"""Hex digits of :attr:`EvalConfig.key` (48 bits: no collision among a study's configs)."""

FLOAT_FIELDS = ("temperature", "top_p", "repetition_penalty", "min_effect")
"""Fields given as int are stored as float, so that equal settings have an equal key."""

RUN_FIELDS = ("compile_decoding", "adapter_batches")
"""Fields that choose how the work runs, not which replies it gives: like the device, they
are left out of :attr:`EvalConfig.key`, so a run started one way resumes the other way (the
tests show the replies equal)."""

VERDICT_FIELDS = ("min_effect",)
"""Fields that choose how the numbers are judged, not which replies are given: left out of
:attr:`EvalConfig.key`, so that stored replies are read again under another minimum effect."""

DEFAULT_MIN_EFFECT = 2.0
"""The default minimum effect, in percentage points of similarity: about 4 times the run-to-run
spread of the demo's trained rows (0.5 pt), a tenth of what the persona itself is worth to the
base model (22 pt, base model minus swapped persona), and above the 0.22 pt of a merge that
is nearly the base model (docs/evaluation.md, "The minimum effect")."""
MIN_EFFECT_MAX = 100.0
"""Similarity is a cosine: a difference of more than 100 points of it is a typo."""

COMPILE_MODES = ("off", "buckets")
"""Values of :attr:`EvalConfig.compile_decoding`."""

ADAPTER_BATCHES = ("auto", "per_adapter", "mixed")
"""Values of :attr:`EvalConfig.adapter_batches`."""


def _check(condition: bool, name: str, value: object, expected: str) -> None:
    if not condition:
        raise ValueError(f"invalid {name}={value!r}: expected {expected}")


@dataclass(frozen=True)
class EvalConfig:
    """How an evaluation generates replies (batching, lengths and decoding), and the minimum
    effect its verdicts need.

    Greedy decoding by default; ``do_sample=True`` samples with ``temperature``, ``top_p``
    and ``top_k``, seeded by ``seed``. Sampling settings are refused without ``do_sample``,
    where they would silently do nothing.
    """

    batch_size: int = 32
    """Prompts per generate call."""
    max_new_tokens: int = 40
    """Length limit of a reply, in tokens."""
    max_prompt_tokens: int | None = None
    """Prompt tokens at most (a longer prompt keeps its persona line whole and loses its oldest
    turns first, ``trainers.prompt.fit_prompt``); none: the study's training length
    (train.data.max_seq_length) less max_new_tokens, so prompt and reply fit what training saw."""
    stop_at_newline: bool = True
    """End a reply at its first newline instead of always generating max_new_tokens."""
    do_sample: bool = False
    """Sample the next token instead of taking the most likely one (greedy)."""
    temperature: float = 1.0
    """Sampling temperature; below 1 sharpens the distribution (only with do_sample)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the likeliest tokens up to this total probability (with do_sample)."""
    top_k: int = 0
    """Keep only the k most likely tokens when sampling; 0 keeps all (only with do_sample)."""
    repetition_penalty: float = 1.0
    """Penalty on tokens already in the prompt or reply (CTRL); 1.0 is none."""
    no_repeat_ngram_size: int = 0
    """Never repeat an n-gram of this many tokens; 0 is off."""
    seed: int = 0
    """Seed of the sampling: the same seed, prompts and model give the same replies."""
    compile_decoding: Literal["off", "buckets"] = "off"
    """off: decode uncompiled on every device (no graph is built); buckets: a static cache of a
    few fixed lengths and batches of a few fixed sizes, which transformers compiles where it
    compiles decoding (CUDA): one graph per bucket and adapter, never one per batch."""
    adapter_batches: Literal["auto", "per_adapter", "mixed"] = "auto"
    """Per-persona and MoE evaluation: per_adapter answers persona by persona; mixed batches
    many personas' adapters together (peft's adapter_names), with the same replies; auto: mixed
    on a GPU, per_adapter on the CPU (BENCHMARKS.md, "Many adapters per batch")."""
    min_effect: float = DEFAULT_MIN_EFFECT
    """Minimum effect, in percentage points of similarity: a method beats another only when the
    95% CI of the paired difference lies above it and the Holm p of the one-sided test of
    "difference > min_effect" is below 0.05 (0: any difference above zero; docs/evaluation.md)."""

    def __post_init__(self) -> None:
        for name in FLOAT_FIELDS:  # 1 and 1.0 are one setting, with one key
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "an integer >= 1")
        _check(
            self.max_prompt_tokens is None or self.max_prompt_tokens >= 1,
            "max_prompt_tokens",
            self.max_prompt_tokens,
            "none (derived from training) or an integer >= 1",
        )
        _check(
            math.isfinite(self.temperature) and self.temperature > 0,
            "temperature",
            self.temperature,
            "a number > 0",
        )
        _check(0 < self.top_p <= 1, "top_p", self.top_p, "a number in (0, 1]")
        _check(self.top_k >= 0, "top_k", self.top_k, "an integer >= 0 (0: no limit)")
        _check(
            math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
            "repetition_penalty",
            self.repetition_penalty,
            "a number > 0 (1.0: none)",
        )
        _check(
            self.no_repeat_ngram_size >= 0,
            "no_repeat_ngram_size",
            self.no_repeat_ngram_size,
            "an integer >= 0 (0: off)",
        )
        _check(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _check(
            self.compile_decoding in COMPILE_MODES,
            "compile_decoding",
            self.compile_decoding,
            f"one of {COMPILE_MODES}",
        )
        _check(
            self.adapter_batches in ADAPTER_BATCHES,
            "adapter_batches",
            self.adapter_batches,
            f"one of {ADAPTER_BATCHES}",
        )
        _check(
            math.isfinite(self.min_effect) and 0 <= self.min_effect < MIN_EFFECT_MAX,
            "min_effect",
            self.min_effect,
            f"a number of percentage points in [0, {MIN_EFFECT_MAX:g})",
        )
        if not self.do_sample:
            for name, neutral in (("temperature", 1.0), ("top_p", 1.0), ("top_k", 0)):
                value = getattr(self, name)
                _check(
                    value == neutral,
                    name,
                    value,
                    f"{neutral!r} with greedy decoding, or do_sample=True to sample",
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, saved in the results file."""
        return asdict(self)

    def for_training(self, max_seq_length: int) -> EvalConfig:
        """This config with the prompt limit derived from training's sequence length
        (``max_seq_length - max_new_tokens``) where none is set; a set limit is kept.

        Raises:
            ValueError: If the replies leave no room for a prompt of 16 tokens.
        """
        if self.max_prompt_tokens is not None:
            return self
        limit = max_seq_length - self.max_new_tokens
        _check(
            limit >= MIN_DERIVED_PROMPT_TOKENS,
            "max_new_tokens",
            self.max_new_tokens,
            f"at most {max_seq_length - MIN_DERIVED_PROMPT_TOKENS} under training's "
            f"max_seq_length={max_seq_length}, or a max_prompt_tokens of its own",
        )
        return dataclasses.replace(self, max_prompt_tokens=limit)

    @property
    def prompt_limit(self) -> int:
        """The prompt limit in force: ``max_prompt_tokens``, or derived from the default
        training length (:class:`trainers.config.DataConfig`) where a caller resolved none."""
        if self.max_prompt_tokens is not None:
            return self.max_prompt_tokens
        return max(1, DataConfig().max_seq_length - self.max_new_tokens)

    @property
    def key(self) -> str:
        """A short digest of every field: stored replies are reused only under the same key.

        A change of any field (a decoding option, a length, even the batch size, which can
        move greedy replies through padding) gives another key and so another evaluation run;
        the :data:`RUN_FIELDS` are left out (how the work runs, as the device is), and so are
        the :data:`VERDICT_FIELDS` (how the numbers are judged).
        """
        left_out = {*RUN_FIELDS, *VERDICT_FIELDS}
        fields = {k: v for k, v in self.to_dict().items() if k not in left_out}
        canonical = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]
