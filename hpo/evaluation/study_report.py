"""``hpo report``: the study's comparison of every method, with the plan's decision.

This module reads the study (its trials' eval_loss history, the promoted trial) from Optuna and
hands it to :mod:`evaluators.report.build`, which reads the stored evaluations and writes the files
under ``results/<study>/comparison/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

import storage
from evaluators.config import EvalConfig
from evaluators.report import build as comparison
from evaluators.report.summary import decision_line
from evaluators.trials.promotion import evaluated_trials
from hpo.artifacts import publish_file
from hpo.evaluation.notes import dashboard_store, save_study_note, upload_figure
from hpo.evaluation.records import DECISION_ATTR, one_line, promoted_trial
from hpo.evaluation.service import StudyEvaluator, open_evaluator


def trial_history(study: optuna.Study) -> list[comparison.TrialPoint]:
    """Every finished or running trial with its final and intermediate eval_loss."""
    return [
        comparison.TrialPoint(
            number=t.number,
            state=t.state.name,
            value=None if t.value is None else float(t.value),
            intermediate=dict(t.intermediate_values),
        )
        for t in study.get_trials(deepcopy=False)
        if t.state != optuna.trial.TrialState.WAITING
    ]


def write_report(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    eval_config: EvalConfig = EvalConfig(),
    png: bool = True,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write the study's comparison: figure (HTML and PNG), JSON and markdown summary; the
    summary is also the study's note in optuna-dashboard, and the PNG the study's artifact
    there (:func:`hpo.evaluation.notes.dashboard_store`).

    Works from what exists: a method not evaluated yet is listed as not evaluated.

    Args:
        url: The storage URL.
        study_name: The tuned study.
        output_root: Root of ``results/``.
        eval_config: Only evaluations generated with these settings are read.
        png: Render the PNG (needs kaleido and Chromium).

    Returns:
        The report and the files written, by kind.

    Raises:
        storage.NotFoundError: No such study.
    """
    service = open_evaluator(url, study_name, output_root=output_root, eval_config=eval_config)
    # Safe to run again after an outage: reads, files rewritten, records upserted.
    if service.guard is None:
        return _write_report(service, url, png=png)
    return service.guard.call(_write_report, service, url, png=png)


def _write_report(
    service: StudyEvaluator, url: str, *, png: bool
) -> tuple[dict[str, Any], dict[str, Path]]:
    study_name, eval_config = service.name, service.scope.eval_config
    scope = comparison.ReportScope(
        study_name=study_name,
        cluster_id=service.scope.cluster_id,
        personas=service.scope.personas,
        eval_config=eval_config,
    )
    promoted = promoted_trial(service.study)
    results = comparison.collect_results(service.engine, scope, promoted_trial=promoted)
    report = comparison.build_report(
        study_name,
        results,
        cluster_id=scope.cluster_id,
        history=trial_history(service.study),
        promoted_trial=promoted,
        evaluated_trials=sorted(evaluated_trials(service.engine, service.scope)),
        min_effect=eval_config.min_effect,
        extra={
            "eval_config": eval_config.to_dict(),
            "eval_config_key": eval_config.key,
            "n_personas": len(scope.personas),
            "n_test_examples": len(scope.items()),
            "storage": storage.masked_url(url),
        },
    )
    files = comparison.write_report_files(service.layout, report, png=png)
    published = {
        kind: publish_file(service.engine, service.layout, f"report_{kind}", study_name, path)
        for kind, path in sorted(files.items())
        if Path(path).is_file()
    }
    save_study_note(service.study, files["summary"].read_text(encoding="utf-8"))
    service.study.set_user_attr(DECISION_ATTR, one_line(decision_line(report)))
    if "png" in published:
        store = dashboard_store(service.layout.root)
        upload_figure(service.engine, service.study, files["png"], published["png"].sha256, store)
    return report, files
