"""``hpo report`` writes its files as one set: a report that fails midway leaves the previous
set whole, with records that match it; a finished one replaces every file (real SQLite study,
nothing generated)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import optuna
import pytest

import storage
from evaluators.report import build
from hpo.evaluation.study_report import write_report
from hpo.study.config import StudyConfig, StudySection
from hpo.study.creation import create_study
from tests.conftest import store_dataset_with_one_cluster

KINDS = ("html", "json", "summary")


def _recorded(url: str, study: str) -> dict[str, str]:
    """The sha256 recorded for each report file, by kind."""
    engine = storage.open_storage(url)
    with storage.session_scope(engine) as session:
        found = {
            kind: storage.get_artifact(
                session, kind=f"report_{kind}", study_name=study, trial_number=None
            )
            for kind in KINDS
        }
    return {kind: info.sha256 for kind, info in found.items() if info is not None}


def _on_disk(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_report_failing_midway_leaves_the_old_set_and_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    store_dataset_with_one_cluster(url, "small")
    create_study(
        StudyConfig(study=StudySection(name="rep", dataset="small", k=1, cluster_id=0)), url
    )
    root = tmp_path / "out"
    _, files = write_report(url, "rep", output_root=root, png=False)
    folder = files["html"].parent
    old_png = folder / f"{build.FIGURE_NAME}.png"
    old_png.write_bytes(b"a PNG of an older report")  # as a report with --png left it
    old = _on_disk(folder)
    assert {kind: _sha(files[kind].read_bytes()) for kind in KINDS} == _recorded(url, "rep")

    study = optuna.load_study(study_name="rep", storage=url)
    study.add_trial(optuna.trial.create_trial(value=1.25, params={}, distributions={}))

    def killed(*args: object, **kwargs: object) -> str:
        raise RuntimeError("killed between the JSON and the summary")

    monkeypatch.setattr(build, "summary_markdown", killed)
    with pytest.raises(RuntimeError, match="killed between"):
        write_report(url, "rep", output_root=root, png=False)
    assert _on_disk(folder) == old  # the HTML and JSON written before are not in place
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder
    assert _recorded(url, "rep") == {
        kind: _sha(old[files[kind].name]) for kind in KINDS
    }  # the records name the old set

    monkeypatch.undo()
    _, files = write_report(url, "rep", output_root=root, png=False)
    new = _on_disk(folder)
    assert sorted(new) == sorted(p.name for p in files.values())  # the old PNG went with its set
    assert all(new[files[kind].name] != old[files[kind].name] for kind in ("html", "json"))
    assert '"value": 1.25' in new[files["json"].name].decode()
    assert _recorded(url, "rep") == {kind: _sha(new[files[kind].name]) for kind in KINDS}
