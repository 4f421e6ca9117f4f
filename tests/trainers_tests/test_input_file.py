"""The library refuses what is not a regular file before it opens it (the CLI tests run the
same through ``hpo``): a FIFO never blocks, a device is never read."""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from trainers.data import DatasetError, load_dataset
from trainers.input_file import (
    MAX_NESTING,
    InputFileError,
    check_input_file,
    parse_json,
    parse_toml,
    read_input_file,
    read_json,
)


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


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def test_json_nested_past_the_limit_names_the_file_and_line(tmp_path: Path) -> None:
    """Python's parser would raise RecursionError ("maximum recursion depth exceeded"), no file
    named; the scan refuses first, at the line where the limit is passed."""
    path = tmp_path / "deep.json"
    path.write_bytes(b'{"ok": 1,\n "deep":\n' + _deep(100_000) + b"}")
    with pytest.raises(InputFileError) as info:
        read_json(path, limit=10 * 1024**2, what="a file")
    assert str(info.value) == f"{path}: line 3: nested deeper than {MAX_NESTING} levels"
    assert info.value.line == 3
    copy = pickle.loads(pickle.dumps(info.value))  # crosses process boundaries whole
    assert (str(copy), copy.line) == (str(info.value), 3)
    # exactly the limit is read; brackets inside strings are not nesting
    assert parse_json(_deep(MAX_NESTING), path) is not None
    assert parse_json(b'["' + b"[{" * 200 + b'"]', path) == ["[{" * 200]
    with pytest.raises(InputFileError, match=f"line 1: nested deeper than {MAX_NESTING}"):
        parse_json(_deep(MAX_NESTING + 1), path)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{\n  "a": 1,\n  "b": ,\n}', "line 3: not valid JSON: Expecting value (column 8)"),
        (b'{"a": "caf\xe9"}', "line 1: not valid UTF-8 (invalid continuation byte)"),
        (b"9" * 5000, "not valid JSON: Exceeds the limit (4300 digits)"),
    ],
)
def test_a_broken_json_names_the_file_line_and_cause(data: bytes, reason: str) -> None:
    with pytest.raises(InputFileError) as info:
        parse_json(data, "/x/adapter_config.json")
    assert str(info.value).startswith(f"/x/adapter_config.json: {reason}")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b'[study]\nname = "x"\nx = ' + _deep(5000), "line 3: nested deeper than 64 levels"),
        (b"x = " + b"{a = " * 100 + b"1" + b"}" * 100, "line 1: nested deeper than 64 levels"),
        # 1 MiB of dotted key: tomllib would take most of an hour (quadratic); refused at once
        (
            b"a" + b".a" * 500_000 + b" = 1",
            "line 1: tables nested deeper than 64 levels (a dotted key)",
        ),
        (
            b"x = 1\n[a" + b".a" * 100 + b"]",
            "line 2: tables nested deeper than 64 levels (a dotted key)",
        ),
        (b"[a" + b".a" * 64 + b"]\nb = 1", "tables nested deeper than 64 levels (dotted keys)"),
        (b"x = 1\ny = = 2", "line 2: not valid TOML: Invalid value (column 5)"),
        (b'x = "abc', "not valid TOML: Unterminated string (at end of document)"),
    ],
)
def test_a_nested_or_broken_toml_names_the_file_line_and_cause(text: bytes, reason: str) -> None:
    with pytest.raises(InputFileError) as info:
        parse_toml(text, "/x/study.toml")
    assert str(info.value) == f"/x/study.toml: {reason}"


def test_toml_strings_and_comments_are_not_nesting() -> None:
    brackets = "[" * 100
    text = f"x = \"{brackets}\" # {brackets}\ny = '{brackets}'\nz = '''\n{brackets}\n'''\n"
    document = parse_toml((text + "w = " + "[" * 64 + "1" + "]" * 64).encode(), "f.toml")
    assert document["x"] == brackets and document["z"] == brackets + "\n"
    assert parse_toml(b"a" + b".a" * 64 + b" = 1", "f.toml")  # 64 tables: the limit
    assert parse_toml(b"[a" + b".a" * 63 + b"]\nb = 1", "f.toml")
