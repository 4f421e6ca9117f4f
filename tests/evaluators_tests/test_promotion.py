"""Promotion copies a trial's adapter only if it is still the one that was recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import storage
from evaluators.trials.promotion import CLUSTER_ADAPTER_KIND, PromotedTrial, promote_adapter

STUDY = "promo"


def trial_adapter(root: Path, number: int, weights: bytes) -> PromotedTrial:
    """A trial adapter directory as the objective leaves it, with its recorded sha256."""
    adapter = storage.OutputLayout(root).trial_adapter_dir(STUDY, number)
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(weights)
    sha256, _ = storage.directory_sha256(adapter)
    return PromotedTrial(STUDY, number, 0.42, {"lora_rank": 8}, adapter, sha256)


def cluster_artifact(url: str, number: int) -> storage.ArtifactInfo | None:
    """The cluster adapter recorded as promoted from trial ``number``, if any."""
    with storage.session_scope(storage.open_storage(url)) as session:
        return storage.get_artifact(
            session, kind=CLUSTER_ADAPTER_KIND, study_name=STUDY, trial_number=number
        )


def test_promotion_copies_the_adapter_and_records_it(sqlite_url: str, tmp_path: Path) -> None:
    layout = storage.OutputLayout(tmp_path)
    trial = trial_adapter(tmp_path, 1, b"\x01" * 512)
    target = promote_adapter(storage.open_storage(sqlite_url), layout, trial, cluster_id=2)

    assert target == layout.cluster_adapter_dir(2, study_name=STUDY)
    assert target == tmp_path / "models" / STUDY / "lora_clusters" / "cluster_02"
    weights = (target / "adapter_model.safetensors").read_bytes()
    assert weights == (trial.adapter_path / "adapter_model.safetensors").read_bytes()
    promoted_from = json.loads((target / "promoted_from.json").read_text())
    assert promoted_from == {"study": STUDY, "trial": 1, "eval_loss": 0.42, "params": trial.params}
    artifact = cluster_artifact(sqlite_url, 1)
    assert artifact is not None and tmp_path / artifact.path == target
    assert not artifact.path.is_absolute()
    assert artifact.sha256 == storage.directory_sha256(target)[0]


def test_promotion_refuses_an_adapter_whose_sha256_changed(sqlite_url: str, tmp_path: Path) -> None:
    engine = storage.open_storage(sqlite_url)
    layout = storage.OutputLayout(tmp_path)
    good = trial_adapter(tmp_path, 0, b"\x01" * 512)
    target = promote_adapter(engine, layout, good, cluster_id=2)
    before = storage.directory_sha256(target)

    bad = trial_adapter(tmp_path, 1, b"\x02" * 512)
    (bad.adapter_path / "adapter_model.safetensors").write_bytes(b"\x02" * 511 + b"\x03")
    with pytest.raises(ValueError, match=r"adapter of trial 1 at .* is corrupt: sha256 ") as err:
        promote_adapter(engine, layout, bad, cluster_id=2)
    assert bad.adapter_sha256 in str(err.value)

    # the adapter promoted before stays in place, and stays the recorded one
    assert storage.directory_sha256(target) == before
    assert json.loads((target / "promoted_from.json").read_text())["trial"] == 0
    recorded = cluster_artifact(sqlite_url, 0)
    assert recorded is not None and recorded.sha256 == before[0]
    assert cluster_artifact(sqlite_url, 1) is None


def test_promotion_refuses_a_missing_adapter(sqlite_url: str, tmp_path: Path) -> None:
    layout = storage.OutputLayout(tmp_path)
    trial = trial_adapter(tmp_path, 3, b"\x01" * 64)
    gone = PromotedTrial(STUDY, 3, 0.4, {}, tmp_path / "elsewhere", trial.adapter_sha256)
    with pytest.raises(ValueError, match="adapter of trial 3 is missing"):
        promote_adapter(storage.open_storage(sqlite_url), layout, gone, cluster_id=0)
    assert not layout.cluster_adapter_dir(0, study_name=STUDY).exists()


def test_each_study_promotes_into_its_own_folder(sqlite_url: str, tmp_path: Path) -> None:
    """Two studies on the same cluster: the second promotion leaves the first one's adapter."""
    engine = storage.open_storage(sqlite_url)
    layout = storage.OutputLayout(tmp_path)
    first = promote_adapter(engine, layout, trial_adapter(tmp_path, 1, b"\x01" * 256), 4)
    before = storage.directory_sha256(first)
    other = PromotedTrial("other", 1, 0.3, {}, *_copy_adapter(tmp_path, "other", b"\x09" * 256))
    second = promote_adapter(engine, layout, other, 4)

    assert first == tmp_path / "models" / STUDY / "lora_clusters" / "cluster_04"
    assert second == tmp_path / "models" / "other" / "lora_clusters" / "cluster_04"
    assert storage.directory_sha256(first) == before
    assert json.loads((second / "promoted_from.json").read_text())["study"] == "other"
    assert cluster_artifact(sqlite_url, 1) is not None  # the first study's record stays


def _copy_adapter(root: Path, study: str, weights: bytes) -> tuple[Path, str]:
    adapter = storage.OutputLayout(root).trial_adapter_dir(study, 1)
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(weights)
    return adapter, storage.directory_sha256(adapter)[0]


def test_promoting_the_same_trial_again_copies_nothing(sqlite_url: str, tmp_path: Path) -> None:
    engine = storage.open_storage(sqlite_url)
    layout = storage.OutputLayout(tmp_path)
    trial = trial_adapter(tmp_path, 2, b"\x05" * 128)
    target = promote_adapter(engine, layout, trial, 0)
    stamp = (target / "promoted_from.json").stat().st_mtime_ns
    assert promote_adapter(engine, layout, trial, 0) == target
    assert (target / "promoted_from.json").stat().st_mtime_ns == stamp

    # a damaged copy is not trusted: it is copied again
    (target / "adapter_model.safetensors").write_bytes(b"\x00")
    promote_adapter(engine, layout, trial, 0)
    assert (target / "adapter_model.safetensors").read_bytes() == b"\x05" * 128


@pytest.mark.parametrize("name", ["trials", "lora_clusters", "figures"])
def test_a_study_named_like_a_shared_folder_is_refused(tmp_path: Path, name: str) -> None:
    layout = storage.OutputLayout(tmp_path)
    with pytest.raises(storage.InvalidNameError, match=f"study name '{name}' is the name of"):
        layout.cluster_adapter_dir(0, study_name=name)
    with pytest.raises(storage.InvalidNameError, match="shared output folder"):
        layout.results_file("cluster_lora", "x.json", study_name=name)
