"""The model card of a study's promoted adapter (:mod:`trainers.model_card`): what the trial's
card says, with the evaluation that promoted it (similarity with its 95% interval, floor,
diversity) and the base model it belongs to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluators.config import EvalConfig
from evaluators.scoring.method_run import MethodResult
from evaluators.trials.scope import EvalScope, PromotedTrial, evaluation_summary
from trainers.config import ModelConfig
from trainers.embedding import DEFAULT_EMBEDDING_MODEL
from trainers.model_card import CARD_FILE, ModelCard, base_model_name, params_text, percent


def promoted_from(trial: PromotedTrial, model: ModelConfig | None) -> dict[str, Any]:
    """``promoted_from.json``: the trial, its eval_loss and parameters, and the base model
    (its name as the study config gives it, and the exact model's name where that differs:
    the tiny model's built folder)."""
    found: dict[str, Any] = {
        "study": trial.study_name,
        "trial": trial.trial_number,
        "eval_loss": trial.eval_loss,
        "params": trial.params,
    }
    if model is not None:
        found["base_model"] = model.base_model
        found["base_model_name"] = base_model_name(model)
    return found


def generation_text(config: EvalConfig) -> str:
    """How the evaluated replies were generated, in a few words, with the settings' key."""
    if config.do_sample:
        how = (
            f"sampled (temperature {config.temperature}, top-p {config.top_p}, seed {config.seed})"
        )
    else:
        how = "greedy"
    return f"{how}, at most {config.max_new_tokens} new tokens (settings {config.key})"


def promoted_card(
    trial: PromotedTrial,
    scope: EvalScope,
    model: ModelConfig,
    result: MethodResult,
    *,
    n_evaluated: int,
    folder: str,
) -> ModelCard:
    """The card of the study's promoted adapter, which lies at ``folder`` under the output
    root."""
    figures = evaluation_summary(result)
    ci = figures["similarity_ci"]
    interval = (
        "" if ci is None else f" (95% CI {percent(ci[0])} to {percent(ci[1])}, personas resampled)"
    )
    cluster = f"{scope.cluster_id}" + (f" of dataset {scope.dataset}" if scope.dataset else "")
    return ModelCard(
        title=f"Promoted LoRA adapter of study {trial.study_name} (cluster {scope.cluster_id})",
        summary=(
            f"A LoRA adapter for persona-conditioned replies: trial {trial.trial_number} of the "
            f"Optuna study `{trial.study_name}`, promoted by the study's evaluator as the best "
            f"embedding similarity among its {n_evaluated} evaluated trials (the lowest "
            "eval_loss need not be the highest similarity)."
        ),
        model=model,
        folder=folder,
        facts=(
            ("study", trial.study_name),
            (
                "trial",
                f"{trial.trial_number} (promoted: best similarity of {n_evaluated} evaluated)",
            ),
            ("cluster", cluster),
            ("hyperparameters", params_text(trial.params)),
            ("eval_loss", f"{trial.eval_loss:.4f} (validation split)"),
            (
                "embedding similarity",
                f"{percent(figures['similarity'])}{interval} on {figures['n_examples']} test "
                f"examples of {len(result.per_persona)} personas",
            ),
            (
                "floor / floor-normalized",
                f"{percent(figures['floor'])} / {percent(figures['normalized'])}",
            ),
            (
                "diversity",
                f"distinct-2 {figures['distinct_2']:.2f}, most common reply "
                f"{percent(figures['top_reply_share'])} of replies"
                + (" (degenerate)" if figures["degenerate"] else ""),
            ),
            ("embedding model", scope.embedding_model or DEFAULT_EMBEDDING_MODEL),
            ("generation", generation_text(scope.eval_config)),
        ),
        tags=("optuna", "promoted"),
        notes=(
            "The study's results file (`results/<study>/cluster_lora/cluster_lora_results.json`) "
            "holds every evaluated trial and the baselines on the identical test examples; "
            "`hpo report` compares them by the study's decision rule.",
        ),
    )


def promoted_files(
    trial: PromotedTrial,
    scope: EvalScope | None,
    result: MethodResult | None,
    n_evaluated: int,
    folder: str,
) -> tuple[dict[str, Any], str | None]:
    """What the promoted folder gets beside the adapter: ``promoted_from.json``'s content, and
    its card's text where the scope names the base model and the evaluation is given."""
    model = scope.model if scope is not None else None
    found = promoted_from(trial, model)
    if scope is None or model is None or result is None:
        return found, None
    made = promoted_card(trial, scope, model, result, n_evaluated=n_evaluated, folder=folder)
    return found, made.markdown()


def card_text(folder: Path) -> str | None:
    """The card in an adapter folder, or None when it has none that reads."""
    try:
        return (folder / CARD_FILE).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
