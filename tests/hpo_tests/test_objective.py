"""The objective where hpo meets trainers and storage: an in-memory Optuna study, a real
SQLite storage for the artifact rows, and a stand-in training function that writes real files,
so that pruning, failure reasons and the adapter's sha256 are checked without training."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest

import storage
from hpo.study.config import StudyConfig, StudySection
from hpo.study.trial_records import records_of, trial_fields
from hpo.workers.objective import ADAPTER_KIND, WORKER_ATTR, Objective, TrialContext
from trainers.config import TrainConfig
from trainers.recipe import PromptPair, TrainResult

STUDY = "unit"
PAIRS = [PromptPair("Persona: I like tea.\nA: Hi\nB:", " Hello.")]


@dataclass
class StandInTraining:
    """Reports ``losses`` one evaluation at a time like ``train_lora``, writing a partial
    checkpoint first; saves a small adapter into ``save_dir`` only if no report asked to stop.
    With ``error`` set, raises it after the first evaluation."""

    losses: list[float]
    error: Exception | None = None
    configs: list[TrainConfig] = field(default_factory=list)
    save_dirs: list[Path] = field(default_factory=list)

    def __call__(
        self,
        base: Any,
        config: TrainConfig,
        train: list[PromptPair],
        val: list[PromptPair],
        *,
        report: Any,
        save_dir: Path,
        log_path: Path,
    ) -> TrainResult:
        self.configs.append(config)
        self.save_dirs.append(save_dir)
        (save_dir / "checkpoint-partial.bin").write_bytes(b"half-written")
        reported: list[tuple[int, float]] = []
        for step, loss in enumerate(self.losses, start=1):
            reported.append((step, loss))
            if report(step, loss):
                return TrainResult(True, tuple(reported), step, 0.01)
            if self.error is not None:
                raise self.error
        (save_dir / "checkpoint-partial.bin").unlink()
        (save_dir / "adapter_config.json").write_text(json.dumps({"r": config.lora_rank}))
        (save_dir / "adapter_model.safetensors").write_bytes(bytes(range(256)) * config.lora_rank)
        return TrainResult(False, tuple(reported), len(self.losses), 0.01, save_dir)


def make_objective(
    url: str, root: Path, training: StandInTraining, worker_index: int = 3
) -> Objective:
    config = StudyConfig(study=StudySection(name=STUDY))
    ctx = TrialContext(
        config=config,
        engine=storage.open_storage(url),
        layout=storage.OutputLayout(root),
        base=None,
        train=PAIRS,
        val=PAIRS,
        worker_index=worker_index,
        train_fn=training,
    )
    return Objective(ctx)


def run_one(objective: Objective) -> optuna.trial.FrozenTrial:
    """One trial on an in-memory study; prunes any eval_loss above 2.0."""
    study = optuna.create_study(
        direction="minimize", pruner=optuna.pruners.ThresholdPruner(upper=2.0)
    )
    study.optimize(objective, n_trials=1, catch=(Exception,))
    [trial] = study.get_trials()
    return trial


def artifact(url: str, number: int) -> storage.ArtifactInfo | None:
    with storage.session_scope(storage.open_storage(url)) as session:
        return storage.get_artifact(
            session, kind=ADAPTER_KIND, study_name=STUDY, trial_number=number
        )


def recorded_fields(*, url: str, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The trial's long fields as the readers see them (its record over its attributes)."""
    records = records_of(storage.open_storage(url), STUDY, [trial.number])
    return trial_fields(trial.user_attrs, records.get(trial.number))


def leftovers(root: Path) -> list[str]:
    """Everything under the study's trial folder (temporary directories included)."""
    folder = root / "models" / "trials" / STUDY
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_complete_trial_records_its_adapter_and_sha256(sqlite_url: str, tmp_path: Path) -> None:
    training = StandInTraining([1.5, 1.2, 0.9])
    objective = make_objective(sqlite_url, tmp_path, training)
    trial = run_one(objective)

    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == pytest.approx(0.9)
    assert trial.intermediate_values == {1: 1.5, 2: 1.2, 3: 0.9}
    assert objective.last_trial_number == trial.number
    assert trial.user_attrs[WORKER_ATTR] == 3
    # the trial's suggestions reached the training function, and were recorded as used
    [config] = training.configs
    assert {k: getattr(config, k) for k in trial.params} == trial.params
    record = recorded_fields(url=sqlite_url, trial=trial)
    assert record["train_config"] == config.to_dict()
    assert record["train_steps"] == 3 and record["train_seconds"] >= 0
    # `optuna trials` prints user attributes whole: the long and the many are ours
    assert set(trial.user_attrs) == {WORKER_ATTR}

    final = tmp_path / "models" / "trials" / STUDY / str(trial.number)
    assert training.save_dirs[0] != final  # written elsewhere, renamed into place
    assert sorted(p.name for p in final.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    # a model card, inside the folder its sha256 names
    card = (final / "README.md").read_text()
    assert "\nlibrary_name: peft\n" in card and '\nbase_model: "tiny-llama-v' in card
    assert f"# LoRA adapter of study {STUDY}, trial {trial.number}" in card
    assert "| eval_loss | 0.9000 (validation split; the trial's value) |" in card
    assert f'ADAPTER = "models/trials/{STUDY}/{trial.number}"' in card
    assert "BASE_MODEL = ensure_tiny_model(ModelConfig(seed=0))" in card
    assert leftovers(tmp_path) == [str(trial.number)]
    sha256, size = storage.directory_sha256(final)
    recorded = artifact(sqlite_url, trial.number)
    assert recorded is not None
    relpath = final.relative_to(tmp_path).as_posix()  # under the output root, not a local path
    assert (recorded.path.as_posix(), recorded.sha256, recorded.size_bytes) == (
        relpath,
        sha256,
        size,
    )
    assert (record["adapter_path"], record["adapter_sha256"]) == (relpath, sha256)
    assert not {"adapter_path", "adapter_sha256"} & set(trial.user_attrs)


def test_pruned_trial_raises_trial_pruned_and_saves_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    training = StandInTraining([1.8, 2.6, 0.5])
    objective = make_objective(sqlite_url, tmp_path, training)
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=2.0))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match=r"pruned at evaluation 2 \(eval_loss 2.6000\)"):
        objective(trial)

    assert trial.number == objective.last_trial_number
    frozen = study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert frozen.intermediate_values == {1: 1.8, 2: 2.6}  # stopped at the pruned evaluation
    assert "adapter_path" not in frozen.user_attrs
    assert "fail_reason" not in frozen.user_attrs
    assert leftovers(tmp_path) == []  # the partial checkpoint went with its temp directory
    assert artifact(sqlite_url, trial.number) is None


def test_failed_trial_records_why_and_saves_nothing(sqlite_url: str, tmp_path: Path) -> None:
    training = StandInTraining([1.0, 0.8], error=RuntimeError("CUDA out of memory"))
    trial = run_one(make_objective(sqlite_url, tmp_path, training))

    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "RuntimeError"  # the type; the rest is ours
    record = recorded_fields(url=sqlite_url, trial=trial)
    assert record["fail_reason"] == "RuntimeError: CUDA out of memory"
    assert "adapter_path" not in record
    assert leftovers(tmp_path) == []
    assert artifact(sqlite_url, trial.number) is None


def test_fail_reason_is_cut_to_500_characters(sqlite_url: str, tmp_path: Path) -> None:
    training = StandInTraining([1.0], error=ValueError("x" * 2000))
    trial = run_one(make_objective(sqlite_url, tmp_path, training))
    assert trial.state == optuna.trial.TrialState.FAIL
    reason = recorded_fields(url=sqlite_url, trial=trial)["fail_reason"]
    assert reason.startswith("ValueError: xxx") and len(reason) == 500
    # the trial's own attribute, which the dashboard and `optuna trials` show, stays short
    assert trial.user_attrs["fail_reason"] == "ValueError"


def test_default_training_function_is_the_recipe() -> None:
    from trainers.recipe import train_lora

    ctx = TrialContext(
        config=StudyConfig(),
        engine=None,
        layout=storage.OutputLayout(Path(".")),
        base=None,
        train=[],
        val=[],
    )
    assert ctx.train_fn is train_lora
    assert ctx.worker_index == 0
