"""The shared store's objects as a consumer meets them (:mod:`storage.shared`): a broken object
(random bytes, a truncated tar, a hostile tar, a flipped byte) is refused with an error naming
it, nothing lands outside the download cache and nothing half-written stays in it; what killed
downloads left in the cache is swept at start, unless a download is running."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from optuna.artifacts import FileSystemArtifactStore

import storage
from storage.shared import CACHE_FOLDER, CACHE_LOCK, store_id, sweep_download_cache


def _adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}\n')
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    return folder


def _tar(members: list[tarfile.TarInfo], data: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def _member(name: str, *, link: str | None = None, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if link is None:
        info.size = size
    else:
        info.type, info.linkname = tarfile.SYMTYPE, link
    return info


def _broken(kind: str, valid: bytes) -> bytes:
    """What an object of the store is replaced with."""
    if kind == "random bytes":
        return os.urandom(len(valid))
    if kind == "truncated tar":
        return valid[: len(valid) // 2]
    if kind == "a path out of the folder":
        return _tar([_member("../../../../escaped", size=7)], b"escaped")  # out of the root
    if kind == "an absolute symlink":
        return _tar([_member("adapter_config.json", link="/etc/passwd")])
    flipped = bytearray(valid)  # a byte inside a file's data: a valid tar, other content
    flipped[len(valid) // 2] ^= 0xFF
    return bytes(flipped)


@pytest.mark.parametrize(
    "kind",
    [
        "random bytes",
        "truncated tar",
        "a path out of the folder",
        "an absolute symlink",
        "a flipped byte",
    ],
)
def test_a_broken_object_is_refused_naming_it_and_leaves_nothing(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    store = FileSystemArtifactStore(folder)
    producer = storage.OutputLayout(tmp_path / "producer", store=store)
    published = storage.publish_artifact(producer, _adapter(producer.root / "models" / "a"))
    artifact_id = store_id(published.sha256, directory=True)
    valid = (folder / artifact_id).read_bytes()
    (folder / artifact_id).write_bytes(_broken(kind, valid))

    consumer = storage.OutputLayout(tmp_path / "consumer" / "root", store=store)
    with pytest.raises(storage.BrokenArtifact) as caught:
        storage.fetch_artifact(consumer, published.relpath, published.sha256)
    assert caught.value.artifact_id == artifact_id
    assert artifact_id in str(caught.value), str(caught.value)
    assert len(str(caught.value).splitlines()) == 1
    assert str(tmp_path) not in caught.value.reason  # recorded in the database
    cache = consumer.root.joinpath(*CACHE_FOLDER)
    assert sorted(p.name for p in cache.iterdir()) == [CACHE_LOCK]  # nothing half-written
    written = sorted(
        p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if not p.is_dir()
    )
    outside = [p for p in written if not p.startswith(("store", "producer", "consumer/root"))]
    assert outside == [], outside
    assert not list(tmp_path.rglob("escaped"))


def test_the_download_cache_is_swept_unless_a_download_runs(tmp_path: Path) -> None:
    layout = storage.OutputLayout(tmp_path)
    cache = tmp_path.joinpath(*CACHE_FOLDER)
    leftovers = [cache / ".tmp-aa11-x7k2", cache / ".old-bb22-p9q1"]
    for path in leftovers:
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "weights").write_bytes(b"partial")
    (cache / ".tmp-cc33-m4n5").write_bytes(b"a partial file")  # a file artifact's download
    intact = cache / ("d" * 64)
    intact.mkdir()

    # another live process is downloading (it holds the cache's lock shared): nothing goes
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_SH)\n"
            "print('held', flush=True); time.sleep(120)",
            str(cache / CACHE_LOCK),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert sweep_download_cache(layout) == []
    finally:
        holder.kill()  # a download killed midway: its lock goes with it
        holder.wait()
    removed = sweep_download_cache(layout)
    assert sorted(p.name for p in removed) == [".old-bb22-p9q1", ".tmp-aa11-x7k2", ".tmp-cc33-m4n5"]
    assert sorted(p.name for p in cache.iterdir()) == [CACHE_LOCK, intact.name]
    assert sweep_download_cache(storage.OutputLayout(tmp_path / "fresh")) == []
