"""What optuna-dashboard shows of an evaluation: notes (markdown) and the report's figure.

- The study's note holds the comparison report's summary (``hpo report``): the decision, the
  decision's comparisons with their verdicts and the table of every method.
- Each evaluated trial's note holds its figures (similarity with its 95% interval, floor,
  normalized score, diversity), written by the evaluator, because a finished trial's own
  attributes cannot change (Optuna raises ``UpdateFinishedTrialError``).
- A per-persona study's note says what it is: a queue of per-persona adapters with no best
  trial to read.
- The report's PNG is uploaded to the study with ``optuna.artifacts.upload_artifact``, into
  the store that ``hpo dashboard`` serves (:func:`dashboard_store`).

Notes are optuna-dashboard's public ``save_note``, which keeps them in the study's system
attributes (in chunks) and replaces the previous version.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

DASHBOARD_ARTIFACTS = "dashboard-artifacts"
"""Folder under the output root of the dashboard's artifact store when ``HPO_ARTIFACTS`` is
unset (beside ``models/`` and ``results/``, so that no study name can collide with it)."""
FIGURE_RECORD = "dashboard:figure"
"""Study record (``storage.study_records``): the sha256 and artifact id of the PNG last
uploaded, so an unchanged figure is not uploaded again."""


def save_study_note(study: optuna.Study, markdown: str) -> None:
    """Replace the study's optuna-dashboard note with ``markdown``."""
    from optuna_dashboard import save_note

    save_note(study, markdown)


def study_note(study: optuna.Study) -> str:
    """The study's optuna-dashboard note ("" when none was saved)."""
    from optuna_dashboard import get_note

    return str(get_note(study))


def _live_trial(study: optuna.Study, number: int) -> optuna.Trial:
    """A live ``optuna.Trial`` for the finished trial ``number``: ``save_note`` takes one
    (it needs the trial's storage id). Optuna has no public lookup from a trial number to that
    id other than ``FrozenTrial._trial_id``; building the Trial runs only the sampler's
    ``before_trial`` hook, a no-op for the TPE and random samplers a loaded study has."""
    frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if frozen is None:
        raise KeyError(f"study {study.study_name!r} has no trial {number}")
    return optuna.Trial(study, frozen._trial_id)


def save_trial_note(study: optuna.Study, number: int, markdown: str) -> None:
    """Replace trial ``number``'s optuna-dashboard note (finished trials included); an
    unchanged note is not written again."""
    from optuna_dashboard import get_note, save_note

    trial = _live_trial(study, number)
    if get_note(trial) != markdown:
        save_note(trial, markdown)


def trial_note(study: optuna.Study, number: int) -> str:
    """Trial ``number``'s optuna-dashboard note ("" when none was saved)."""
    from optuna_dashboard import get_note

    return str(get_note(_live_trial(study, number)))


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f}%"


def trial_note_markdown(figures: Mapping[str, Any], *, promoted: bool = False) -> str:
    """Trial N's note from its evaluation figures (:func:`evaluators.trials.evaluation_summary`
    plus ``trial``, ``eval_loss`` and ``eval_config_key``)."""
    ci = figures.get("similarity_ci")
    interval = "n/a" if not ci else f"{_pct(ci[0])} to {_pct(ci[1])}"
    degenerate = figures.get("degenerate")
    lines = [
        f"## Trial {figures.get('trial')}: evaluation on the test examples",
        "",
        "**Promoted** (best similarity among the evaluated trials)." if promoted else "",
        "",
        "| figure | value |",
        "|---|---|",
        f"| embedding similarity | {_pct(figures.get('similarity'))} |",
        f"| 95% CI (persona bootstrap) | {interval} |",
        f"| floor (replies vs other personas' references) | {_pct(figures.get('floor'))} |",
        f"| floor-normalized | {_pct(figures.get('normalized'))} |",
        f"| distinct-1 / distinct-2 | {figures.get('distinct_1', 0):.2f} / "
        f"{figures.get('distinct_2', 0):.2f} |",
        f"| most common reply's share | {_pct(figures.get('top_reply_share'))} |",
        f"| mean reply length (words) | {figures.get('mean_reply_words', 0):.1f} |",
        f"| degenerate | {'yes: it cannot win a comparison' if degenerate else 'no'} |",
        f"| test examples | {figures.get('n_examples')} |",
        f"| eval_loss (validation) | {figures.get('eval_loss')} |",
        "",
        f"Generation settings: `{figures.get('eval_config_key')}`. The study's note holds the "
        "comparison with the baselines (`hpo report`).",
    ]
    return "\n".join(lines) + "\n"


def personas_study_note(source_study: str) -> str:
    """The note of the per-persona study of ``source_study``: what it is, and what not."""
    return (
        f"## Per-persona adapters of study `{source_study}`\n\n"
        "This study is a **queue of per-persona adapters**, not a search: each trial trains "
        "one persona's LoRA adapter with the same fixed hyperparameters (those of "
        f"`{source_study}`'s promoted trial), and its value is that persona's own validation "
        "loss. Values of different personas are not comparable, so there is **no best trial "
        "to read** here; the objective plot and the best trial the dashboard shows mean "
        "nothing.\n\n"
        f"The adapters feed the MoE merge (`hpo moe`); the verdict is in the comparison "
        f"report of `{source_study}` (`hpo report`, its note and figure).\n"
    )


def dashboard_store(output_root: Path) -> Any:
    """The artifact store ``hpo dashboard`` serves and ``hpo report`` uploads the figure to:
    the shared store of ``HPO_ARTIFACTS`` when set, else Optuna's ``FileSystemArtifactStore``
    on ``<output root>/dashboard-artifacts`` (created)."""
    from optuna.artifacts import FileSystemArtifactStore

    from hpo.artifacts import configured_store

    shared = configured_store()
    if shared is not None:
        return shared
    folder = Path(output_root).resolve() / DASHBOARD_ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def upload_figure(engine: Any, study: optuna.Study, png: Path, sha256: str, store: Any) -> str:
    """Upload the report's PNG to the study's artifacts (the dashboard shows it on the study
    page), unless the same figure (by sha256) was the last one uploaded; returns its id."""
    import warnings

    from optuna.artifacts import upload_artifact

    import storage

    with storage.session_scope(engine) as session:
        last = storage.study_record(session, study.study_name, FIGURE_RECORD)
    if last is not None and last[0].get("sha256") == sha256:
        return str(last[0]["artifact_id"])
    with warnings.catch_warnings():  # experimental since Optuna 3.3, and what we want
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        artifact_id = upload_artifact(
            artifact_store=store, file_path=str(png), study_or_trial=study, mimetype="image/png"
        )
    with storage.session_scope(engine) as session:
        storage.save_study_record(
            session, study.study_name, FIGURE_RECORD, {"sha256": sha256, "artifact_id": artifact_id}
        )
    return artifact_id
