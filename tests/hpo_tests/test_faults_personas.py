"""Faults of ``hpo personas train``, run as real processes on the real PostgreSQL with real
training: runs that fail (a full disk while every adapter is saved) followed by a good run
end with exactly one COMPLETE trial per persona and a budget equal to the personas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import storage
from hpo.personas.training import PERSONA_ATTR, personas_study_name
from hpo.study.config import StudyConfig, StudySection
from hpo.study.creation import create_study
from tests.conftest import import_and_cluster

REPO = Path(__file__).resolve().parents[2]
TrialState = optuna.trial.TrialState

_FULL_DISK_RUN = """
import errno, sys
from pathlib import Path
import trainers.recipe
from hpo.cli import main

def save_adapter(model, config, save_dir):
    (Path(save_dir) / "adapter_model.safetensors").write_bytes(b"half an adapter")
    raise OSError(errno.ENOSPC, "No space left on device", str(save_dir))

trainers.recipe.save_adapter = save_adapter
sys.exit(main(sys.argv[1:]))
"""


def _personas_train(url: str, root: Path, *, disk_full: bool) -> subprocess.CompletedProcess[str]:
    args = ["personas", "train", "--study", "c0", "--epochs", "1"]
    args += ["--max-train-per-persona", "2", "--threads", "1"]
    args += ["--storage", url, "--output-root", str(root)]
    head = ["-c", _FULL_DISK_RUN] if disk_full else ["-m", "hpo"]
    return subprocess.run(
        [sys.executable, *head, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_failed_runs_then_a_good_one_train_each_persona_once(pg_url: str, tmp_path: Path) -> None:
    import_and_cluster(pg_url, tmp_path, "demo", k=5)
    create_study(StudyConfig(study=StudySection(name="c0", k=5, cluster_id=4, n_trials=2)), pg_url)
    root = tmp_path / "out"
    root.mkdir()

    for _ in range(2):  # each failed run stops after three failures in a row
        failed = _personas_train(pg_url, root, disk_full=True)
        assert failed.returncode == 1, failed.stderr[-3000:]
        assert "No space left on device" in failed.stderr
    good = _personas_train(pg_url, root, disk_full=False)
    assert good.returncode == 0, good.stderr[-3000:]

    name = personas_study_name("c0")
    trials = optuna.load_study(study_name=name, storage=pg_url).get_trials()
    personas = {t.user_attrs.get(PERSONA_ATTR) for t in trials}
    assert None not in personas, "a trial without a persona was created"
    complete = [t.user_attrs[PERSONA_ATTR] for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(complete) == sorted(personas), "not exactly one COMPLETE trial per persona"
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.FAIL}
    assert sum(t.state == TrialState.FAIL for t in trials) == 6
    with storage.session_scope(storage.open_storage(pg_url)) as session:
        assert storage.budget(session, name) == (len(personas), len(personas))
    assert not list((root / "models" / "c0" / "personas").glob(".tmp-*"))
    storage.dispose_engines()
