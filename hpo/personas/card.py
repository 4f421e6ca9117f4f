"""The model card of a per-persona adapter (:mod:`trainers.model_card`): whose persona, trained
how, with what eval_loss, and how to load it. Written into the adapter's temporary folder, so it
is part of the content its recorded sha256 names."""

from __future__ import annotations

from hpo.study.config import StudyConfig
from hpo.workers.trial_card import Trained
from trainers.model_card import ModelCard


def persona_card(config: StudyConfig, persona: str, trained: Trained, folder: str) -> ModelCard:
    """The card of ``persona``'s adapter in the per-persona study of ``config``'s study, which
    lies at ``folder`` under the output root."""
    section = config.study
    return ModelCard(
        title=f"Per-persona LoRA adapter: {persona} (study {section.name})",
        summary=(
            f"A LoRA adapter trained on one persona's own examples (`{persona}`, of cluster "
            f"{section.cluster_id} of dataset `{section.dataset}`), with the fixed "
            f"hyperparameters of study `{section.name}`; one of the sources of the study's "
            "MoE merge (`hpo moe merge`)."
        ),
        model=config.model,
        folder=folder,
        facts=(
            ("study", f"{section.name} (per-persona study {section.name}-personas)"),
            ("persona", persona),
            ("cluster", f"{section.cluster_id} of k={section.k} (dataset {section.dataset})"),
            ("training", trained.text()),
            ("eval_loss", f"{trained.eval_loss:.4f} (the persona's own validation examples)"),
        ),
        tags=("per-persona",),
    )
