"""The model card of a trial's adapter (:mod:`trainers.model_card`): the study, the trial, its
cluster and dataset, its hyperparameters and eval_loss, and how to load it.

Written into the adapter's temporary folder before the folder is renamed, hashed and recorded,
so the card is part of the content the recorded sha256 names. A trial adapter is not evaluated
yet when it is written: the promoted copy's card carries the similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpo.study.config import StudyConfig
from trainers.config import TrainConfig
from trainers.model_card import ModelCard, params_text


@dataclass(frozen=True)
class Trained:
    """What a training run made, as a card tells it."""

    config: TrainConfig
    eval_loss: float
    """Its final eval_loss on the validation examples."""
    n_train: int
    n_val: int

    def text(self) -> str:
        """The training settings in one line."""
        c = self.config
        return (
            f"LoRA rank {c.lora_rank}, alpha {c.alpha}, dropout {c.lora_dropout}; "
            f"{c.epochs} epochs, batch {c.batch_size}, learning rate {c.learning_rate:.3g}; "
            f"{self.n_train} train / {self.n_val} validation examples"
        )


def trial_card(
    config: StudyConfig, number: int, params: dict[str, Any], trained: Trained, folder: str
) -> ModelCard:
    """The card of trial ``number``'s adapter, which lies at ``folder`` under the output root."""
    section = config.study
    return ModelCard(
        title=f"LoRA adapter of study {section.name}, trial {number}",
        summary=(
            f"A LoRA adapter for persona-conditioned replies: trial {number} of the Optuna "
            f"study `{section.name}`, trained on the personas of cluster {section.cluster_id} "
            f"of dataset `{section.dataset}`, with the hyperparameters the study's sampler "
            "chose. It is not evaluated here: the study's evaluator scores its top trials and "
            "promotes the best similarity, whose copy carries the figures."
        ),
        model=config.model,
        folder=folder,
        facts=(
            ("study", section.name),
            ("trial", str(number)),
            (
                "cluster",
                f"{section.cluster_id} of k={section.k} (dataset {section.dataset}, "
                f"clustering seed {section.clustering_seed})",
            ),
            ("hyperparameters (tuned)", params_text(params)),
            ("training", trained.text()),
            ("eval_loss", f"{trained.eval_loss:.4f} (validation split; the trial's value)"),
        ),
        tags=("optuna", "hyperparameter-search"),
    )
