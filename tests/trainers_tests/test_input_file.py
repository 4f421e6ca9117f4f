"""The library refuses what is not a regular file before it opens it (the CLI tests run the
same through ``hpo``): a FIFO never blocks, a device is never read."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from trainers.data import DatasetError, load_dataset
from trainers.input_file import InputFileError, check_input_file, read_input_file


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """A blocked ``open`` of a FIFO fails the test after 10 s instead of blocking it."""

    def hung(signum: int, frame: FrameType | None) -> None:
        raise AssertionError("blocked for 10 s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_regular_files_and_links_to_them_are_read(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    (tmp_path / "link").symlink_to(path)
    assert read_input_file(tmp_path / "link", limit=5, what="a file") == b"hello"


def test_each_kind_is_refused_naming_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "folder").mkdir()
    big = tmp_path / "big"
    big.write_bytes(b"123456")
    cases = {
        fifo: "a FIFO (named pipe), not a file",
        Path("/dev/zero"): "a character device, not a file",
        tmp_path / "folder": "a folder, not a file",
        big: "6 bytes, over the limit of 5 bytes for a file",
        tmp_path / "missing": "no such file; give a file",
    }
    for path, reason in cases.items():
        with pytest.raises(InputFileError) as info:
            read_input_file(path, limit=5, what="a file")
        assert str(info.value) == f"{path}: {reason}"
    with pytest.raises(InputFileError, match="FIFO"):
        check_input_file(fifo, limit=None, what="a file")


def test_the_dataset_loader_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match=r"fifo: a FIFO \(named pipe\), not a dataset file"):
        load_dataset(fifo)
    with pytest.raises(DatasetError, match="a character device"):
        load_dataset("/dev/zero", format="jsonl")
