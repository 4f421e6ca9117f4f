"""Trainers: the persona dataset, the base model, and the LoRA recipe that trains on them.

Read in that order: :mod:`trainers.data` loads and splits a dataset, :mod:`trainers.base_model`
loads a causal LM, :mod:`trainers.recipe` trains one LoRA adapter on it (composing
:mod:`trainers.batching` and :mod:`trainers.report`). :mod:`trainers.embedding` and
:mod:`trainers.clustering` group personas. The demo's stand-ins (a generated dataset and a tiny
model) live apart, in :mod:`trainers.tiny`.

``trainers`` never imports Optuna: training reports through a plain ``report(step, eval_loss)``
callback. Torch, transformers, peft and sentence-transformers are imported inside the
functions that need them, so importing this package is fast; the names below are loaded on
first use (a module ``__getattr__``), so that ``import trainers.config`` (which every
``trainers.*`` import runs first) imports none of the other modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from trainers.base_model import (
        BaseModel,
        load_base_model,
        parameter_count,
        resolve_device,
        set_threads,
    )
    from trainers.batching import PromptPair, TokenRows, prompt_pairs, tokenize_pairs
    from trainers.clustering import Clustering, ClusterSummary, cluster_embeddings
    from trainers.config import (
        TINY_MODEL,
        DataConfig,
        ModelConfig,
        TrainConfig,
        default_cache_dir,
        tunable_fields,
    )
    from trainers.data import (
        DatasetError,
        Example,
        LoadResult,
        LoadSummary,
        Persona,
        PersonaDataset,
        SplitConfig,
        load_dataset,
        write_jsonl,
    )
    from trainers.embedding import DEFAULT_EMBEDDING_MODEL, embed, load_embedding_model
    from trainers.model_check import ModelCheck, check_base_model, weight_bytes
    from trainers.prompt import (
        ContextLoss,
        FittedPrompt,
        build_prompt,
        fit_prompt,
        fit_prompts,
        reply_target,
    )
    from trainers.recipe import TRAIN_CONFIG_FILE, TrainResult, lora_config, train_lora
    from trainers.report import NonFiniteLossError, ReportFn
    from trainers.targets import Targets, resolve_targets

_MODULES: dict[str, tuple[str, ...]] = {
    "trainers.base_model": (
        "BaseModel",
        "load_base_model",
        "parameter_count",
        "resolve_device",
        "set_threads",
    ),
    "trainers.batching": ("PromptPair", "TokenRows", "prompt_pairs", "tokenize_pairs"),
    "trainers.clustering": ("Clustering", "ClusterSummary", "cluster_embeddings"),
    "trainers.config": (
        "TINY_MODEL",
        "DataConfig",
        "ModelConfig",
        "TrainConfig",
        "default_cache_dir",
        "tunable_fields",
    ),
    "trainers.data": (
        "DatasetError",
        "Example",
        "LoadResult",
        "LoadSummary",
        "Persona",
        "PersonaDataset",
        "SplitConfig",
        "load_dataset",
        "write_jsonl",
    ),
    "trainers.embedding": ("DEFAULT_EMBEDDING_MODEL", "embed", "load_embedding_model"),
    "trainers.model_check": ("ModelCheck", "check_base_model", "weight_bytes"),
    "trainers.prompt": (
        "ContextLoss",
        "FittedPrompt",
        "build_prompt",
        "fit_prompt",
        "fit_prompts",
        "reply_target",
    ),
    "trainers.recipe": ("TRAIN_CONFIG_FILE", "TrainResult", "lora_config", "train_lora"),
    "trainers.report": ("NonFiniteLossError", "ReportFn"),
    "trainers.targets": ("Targets", "resolve_targets"),
}
"""The module that defines each public name: the imports above, as a test checks
(``tests/hpo_tests/cli_tests/test_lazy_imports.py``)."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "TINY_MODEL",
    "TRAIN_CONFIG_FILE",
    "BaseModel",
    "ClusterSummary",
    "Clustering",
    "ContextLoss",
    "DataConfig",
    "DatasetError",
    "Example",
    "FittedPrompt",
    "LoadResult",
    "LoadSummary",
    "ModelCheck",
    "ModelConfig",
    "NonFiniteLossError",
    "Persona",
    "PersonaDataset",
    "PromptPair",
    "ReportFn",
    "SplitConfig",
    "Targets",
    "TokenRows",
    "TrainConfig",
    "TrainResult",
    "build_prompt",
    "check_base_model",
    "cluster_embeddings",
    "default_cache_dir",
    "embed",
    "fit_prompt",
    "fit_prompts",
    "load_base_model",
    "load_dataset",
    "load_embedding_model",
    "lora_config",
    "parameter_count",
    "prompt_pairs",
    "reply_target",
    "resolve_device",
    "resolve_targets",
    "set_threads",
    "tokenize_pairs",
    "train_lora",
    "tunable_fields",
    "weight_bytes",
    "write_jsonl",
]


__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
