"""The reports of a study's evaluations, typed: what the results files hold and the CLI shows.

:class:`PromotionReport` is ``results/<study>/cluster_lora/cluster_lora_results.json`` (every
evaluated trial, the promoted one, the baselines and the paired comparisons);
:class:`AdapterReport` is the report of an adapter evaluated by hand. Both are frozen and give
their JSON form with ``to_dict()``; readers (``hpo.cli.display``, the evaluator service) use the
fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import storage
from evaluators.config import EvalConfig
from evaluators.scoring.method_run import MethodResult
from evaluators.stats.comparison import Comparison
from evaluators.stats.estimates import Difference
from evaluators.stats.families import (
    ADAPTER_FAMILY,
    ADAPTER_NOTE,
    PROMOTION_FAMILY,
    PROMOTION_NOTE,
    family_fields,
)
from evaluators.trials.scope import BASE_METHOD, PromotedTrial, evaluation_summary

PROMOTION_RULE = "best similarity among the evaluated trials; a degenerate one last"
"""How the promoted trial is chosen, as the results file states it."""


@dataclass(frozen=True)
class EvaluatedTrial:
    """One trial of the study with its complete evaluation."""

    trial: PromotedTrial
    """The trial and its adapter."""
    result: MethodResult
    """Its adapter's evaluation on the cluster's test examples."""
    promoted: bool
    """Whether it is the promoted trial."""

    def summary(self) -> dict[str, Any]:
        """The evaluation's figures in a few keys (:func:`evaluation_summary`)."""
        return evaluation_summary(self.result)

    def to_dict(self, root: Path | None = None) -> dict[str, Any]:
        """JSON-ready row of ``evaluated_trials``; its path relative to ``root``
        (:func:`storage.under_root`)."""
        return {
            "trial": self.trial.trial_number,
            "eval_loss": self.trial.eval_loss,
            "params": self.trial.params,
            "promoted": self.promoted,
            **self.summary(),
            "adapter": storage.under_root(root, self.trial.adapter_path),
            "adapter_sha256": self.trial.adapter_sha256,
        }


@dataclass(frozen=True)
class MethodsReport:
    """What every report holds: the scope, the evaluated methods and their comparisons."""

    FAMILY: ClassVar[str] = PROMOTION_FAMILY
    """The name of the file's one family of Holm's correction (:mod:`evaluators.stats.families`)."""
    FAMILY_NOTE: ClassVar[str] = PROMOTION_NOTE
    """What that family is, as the file says it."""

    study: str
    """The study."""
    cluster_id: int
    """The evaluated cluster."""
    embedding_model: str
    """The model that scored similarity."""
    eval_config: EvalConfig
    """How replies were generated."""
    n_personas: int
    """Personas of the test examples."""
    n_test_examples: int
    """Test examples every method was evaluated on."""
    reference_ceiling: float
    """Similarity of two references of the same persona (what a perfect reply could reach)."""
    methods: dict[str, MethodResult]
    """The evaluated methods by name, the evaluated one first, then the baselines."""
    comparisons: dict[str, Comparison]
    """The decision rule's comparisons ``"<evaluated> - <baseline>"`` (against the unified
    adapter, the cluster-0 adapter and the base model, those present), Holm-corrected among
    themselves only: the family of :func:`evaluators.report.decision.rule_comparisons`."""
    described: dict[str, Difference]
    """Every other baseline against the evaluated method, ``"<evaluated> - <baseline>"``:
    the yardsticks (copy the persona, the reference agreement, the swapped persona) describe
    the scale with their unadjusted interval and no verdict, so adding one changes nothing
    tested."""

    def _scope_dict(self) -> dict[str, Any]:
        return {
            "embedding_model": self.embedding_model,
            "eval_config": self.eval_config.to_dict(),
            "eval_config_key": self.eval_config.key,
            "n_personas": self.n_personas,
            "n_test_examples": self.n_test_examples,
            "reference_ceiling": self.reference_ceiling,
            "methods": {name: result.to_dict() for name, result in self.methods.items()},
        }

    def _comparisons_dict(self) -> dict[str, Any]:
        return {
            **family_fields(
                self.FAMILY,
                {name: c.to_dict() for name, c in self.comparisons.items()},
                self.FAMILY_NOTE,
            ),
            "described": {
                name: {
                    **d.to_dict(),
                    "mean_percent_points": round(100 * d.mean, 2),
                    "ci_percent_points": [round(100 * d.low, 2), round(100 * d.high, 2)],
                }
                for name, d in self.described.items()
            },
        }


@dataclass(frozen=True)
class PromotionReport(MethodsReport):
    """The study's results file: its evaluated trials, the promoted one and the baselines."""

    trials: tuple[EvaluatedTrial, ...]
    """Every evaluated trial, by trial number."""
    promoted_dir: Path
    """Where the promoted trial's adapter was copied (``models/<study>/lora_clusters/...``)."""

    @property
    def promoted(self) -> EvaluatedTrial:
        """The promoted trial."""
        return next(t for t in self.trials if t.promoted)

    @property
    def difference_percent_points(self) -> float:
        """The promoted trial's similarity minus the base model's, in percent points."""
        promoted = self.promoted.result.mean_similarity
        return round(100 * (promoted - self.methods[BASE_METHOD].mean_similarity), 2)

    def to_dict(self, root: Path | None = None) -> dict[str, Any]:
        """JSON-ready form, as written to ``cluster_lora_results.json``: its paths relative to
        the output root ``root`` (:func:`storage.under_root`)."""
        best = self.promoted
        return {
            "study": self.study,
            "cluster_id": self.cluster_id,
            "promoted_trial": {
                "number": best.trial.trial_number,
                "eval_loss": best.trial.eval_loss,
                "params": best.trial.params,
                "similarity": best.result.mean_similarity,
                "adapter": storage.under_root(root, self.promoted_dir),
                "source_adapter": storage.under_root(root, best.trial.adapter_path),
                "adapter_sha256": best.trial.adapter_sha256,
                "rule": PROMOTION_RULE,
            },
            "evaluated_trials": [t.to_dict(root) for t in self.trials],
            **self._scope_dict(),
            "difference_percent_points": self.difference_percent_points,
            **self._comparisons_dict(),
        }


@dataclass(frozen=True)
class AdapterReport(MethodsReport):
    """An adapter folder evaluated by hand against the study's baselines (never promoted)."""

    FAMILY: ClassVar[str] = ADAPTER_FAMILY
    FAMILY_NOTE: ClassVar[str] = ADAPTER_NOTE

    method: str
    """Its method name (``adapter-<12 hex of its sha256>``)."""
    adapter_dir: Path
    """The adapter folder."""
    sha256: str
    """The sha256 of its content."""

    @property
    def result(self) -> MethodResult:
        """The adapter's evaluation."""
        return self.methods[self.method]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written to ``<method>_results.json``."""
        return {
            "study": self.study,
            "cluster_id": self.cluster_id,
            "adapter": {
                "path": str(self.adapter_dir),
                "sha256": self.sha256,
                **evaluation_summary(self.result),
            },
            **self._scope_dict(),
            **self._comparisons_dict(),
        }
