"""The model card (``README.md``) of every adapter we publish: Hugging Face's card metadata and
what the adapter is.

peft's ``save_pretrained`` writes its empty card template ("More Information Needed"); the
card written here replaces it, after the weights and before the folder is hashed and
published, so the card is part of the content that the folder's sha256 names. It must
therefore be the same text for the same adapter: no dates, no machine paths.

The metadata follows the Hub's model card fields: ``base_model`` (a Hub id, or for the
project's tiny model the name of its built folder, which is on no hub), ``library_name:
peft``, ``pipeline_tag`` and ``tags``. The body says what the adapter is (a table of facts:
study, trial, cluster, dataset, hyperparameters, eval_loss, the evaluation where there is one)
and how to load it, with a base model that the snippet defines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trainers.config import TINY_MODEL, ModelConfig

CARD_FILE = "README.md"
"""The card's file in the adapter folder (where peft and the Hub look for it)."""
TAGS = ("persona-hpo", "lora", "peft", "persona", "dialogue")
"""Tags of every card; a card adds its own (``optuna``, ``moe-merge``, ...)."""


@dataclass(frozen=True)
class ModelCard:
    """What one adapter's card says."""

    title: str
    """The card's heading, e.g. ``LoRA adapter of study cluster4, trial 7``."""
    summary: str
    """A paragraph saying what the adapter is and how it was made."""
    model: ModelConfig
    """The base model the adapter belongs to."""
    folder: str
    """Where the adapter lies, relative to the output root (the loading snippet's path)."""
    facts: Sequence[tuple[str, str]] = ()
    """Rows of the card's table: (what, value)."""
    tags: Sequence[str] = ()
    """Tags beside :data:`TAGS`."""
    notes: Sequence[str] = field(default_factory=tuple)
    """Paragraphs after the table."""

    def __post_init__(self) -> None:
        for name in ("title", "summary", "folder"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"ModelCard.{name}={value!r}: expected a non-empty string")
        if Path(self.folder).is_absolute():
            raise ValueError(
                f"ModelCard.folder={self.folder!r}: expected a path under the output root, "
                "not a machine's absolute path"
            )

    def markdown(self) -> str:
        """The card: YAML front matter, then the markdown body."""
        tags = list(dict.fromkeys([*TAGS, *self.tags]))
        front = [
            "---",
            f"base_model: {json.dumps(base_model_name(self.model))}",
            "library_name: peft",
            "pipeline_tag: text-generation",
            "tags:",
            *(f"- {json.dumps(tag)}" for tag in tags),
            "---",
        ]
        facts = [*self.facts, ("base model", base_model_text(self.model))]
        rows = [f"| {what} | {_cell(value)} |" for what, value in facts]
        body = [
            f"# {self.title}",
            "",
            self.summary,
            "",
            "| | |",
            "|---|---|",
            *rows,
            "",
            *(line for note in self.notes for line in (note, "")),
            "## How to load it",
            "",
            "```python",
            *loading_snippet(self.model, self.folder),
            "```",
            "",
            _prompt_note(self.model),
            "",
            "Made by persona-hpo (Optuna studies of persona LoRA adapters).",
        ]
        return "\n".join([*front, "", *body]) + "\n"

    def write(self, folder: Path) -> Path:
        """Write the card into the adapter ``folder`` (replacing peft's template)."""
        path = Path(folder) / CARD_FILE
        path.write_text(self.markdown(), encoding="utf-8")
        return path


def base_model_name(model: ModelConfig) -> str:
    """The card's ``base_model``: the Hub id or path the config names, or for the tiny model the
    name of its built folder (recipe, spec digest and seed: the exact model)."""
    if model.base_model != TINY_MODEL:
        return model.base_model
    from trainers.tiny.model import tiny_model_dir

    return tiny_model_dir(model).name


def base_model_text(model: ModelConfig) -> str:
    """The base model for people: the Hub id or path, or the tiny model's exact name."""
    if model.base_model != TINY_MODEL:
        return model.base_model
    return (
        f'{base_model_name(model)} (persona-hpo\'s tiny model, `base_model = "tiny"`, seed '
        f"{model.seed}; its build differs across CPUs: compare `build.json`'s weights sha256)"
    )


def loading_snippet(model: ModelConfig, folder: str) -> list[str]:
    """Python lines that load the adapter on its base model, every name defined."""
    if model.base_model == TINY_MODEL:
        base = [
            "from trainers.config import ModelConfig  # persona-hpo",
            "from trainers.tiny import ensure_tiny_model",
            "",
            "# persona-hpo's tiny base model, built on this machine once (it is on no hub)",
            f"BASE_MODEL = ensure_tiny_model(ModelConfig(seed={model.seed}))",
        ]
    else:
        base = ["", f"BASE_MODEL = {json.dumps(model.base_model)}"]
    trust = ", trust_remote_code=True" if model.trust_remote_code else ""
    return [
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        *base,
        f"ADAPTER = {json.dumps(folder)}  # this folder, under the output root",
        "",
        f"tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL{trust})",
        f"base = AutoModelForCausalLM.from_pretrained(BASE_MODEL{trust})",
        "model = PeftModel.from_pretrained(base, ADAPTER)",
    ]


def _prompt_note(model: ModelConfig) -> str:
    if model.prompt_format == "chat":
        return (
            "Prompts go through the tokenizer's chat template: the persona as the system "
            "message, the turns as user and assistant messages (`trainers.prompt`)."
        )
    return (
        "Prompts are the persona line, the turns with speaker tags, and the persona's tag: "
        "`trainers.prompt.build_prompt(persona, context)` builds them as training did; the "
        "reply is the text up to the first newline."
    )


def _cell(value: str) -> str:
    """A table cell: one line, ``|`` escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def params_text(params: dict[str, object]) -> str:
    """``batch_size=4, learning_rate=0.000123`` (sorted; floats to 3 significant digits)."""
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
    )


def percent(value: float) -> str:
    """A similarity in [-1, 1] as ``43.21%``."""
    return f"{100 * value:.2f}%"
