"""Formats by name, and detection of a file's format from its first line or its extension."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainers.data import DatasetError, load_dataset
from trainers.formats import FORMATS, DatasetFormat, detect_format, get_format

CSV_HEADER = "user 1 personas,user 2 personas,Best Generated Conversation\n"
JSONL_LINE = json.dumps({"persona_id": "p", "persona": "I am P.", "context": "", "reply": "Hi"})


def test_registry_names_match_and_describe_each_format() -> None:
    assert list(FORMATS) == ["jsonl", "synthetic_persona_chat", "convai2"]
    for name, cls in FORMATS.items():
        fmt = get_format(name)
        assert isinstance(fmt, DatasetFormat) and isinstance(fmt, cls)
        assert fmt.name == name
        assert fmt.description and len(fmt.description.splitlines()) == 1
        assert fmt.suffixes and all(s.startswith(".") and s == s.lower() for s in fmt.suffixes)


def test_unknown_format_name_lists_the_names() -> None:
    with pytest.raises(
        ValueError, match="unknown dataset format 'csv'; expected one of jsonl, syn"
    ):
        get_format("csv")
    with pytest.raises(ValueError, match="'csv'"):
        load_dataset("anything.csv", format="csv")


@pytest.mark.parametrize(
    ("content", "filename", "expected"),
    [
        (JSONL_LINE, "data.txt", "jsonl"),  # the content wins over the extension
        ("\n\n" + CSV_HEADER, "data.dat", "synthetic_persona_chat"),
        ("\ufeff" + CSV_HEADER, "data", "synthetic_persona_chat"),
        ("1 your persona: i like cats.\n", "data.jsonl", "convai2"),
        ("1 partner's persona: i like dogs.\n", "data", "convai2"),
        ("not a header\n", "data.CSV", "synthetic_persona_chat"),  # then the extension
        ("1 hi\thello\n", "valid_none_original.txt", "convai2"),
        ("", "empty.ndjson", "jsonl"),
    ],
)
def test_detection(tmp_path: Path, content: str, filename: str, expected: str) -> None:
    path = tmp_path / filename
    path.write_text(content, encoding="utf-8")
    assert detect_format(path, path.read_bytes()).name == expected


def test_undetectable_file_lists_the_formats_and_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "notes.dat"
    path.write_text("hello world\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot tell the dataset format from the first line or ")
    assert "extension '.dat'" in message and "--format" in message
    assert all(name in message for name in FORMATS)


def test_format_forces_a_reading(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(JSONL_LINE + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(path, format="convai2")
    assert str(info.value) == (
        f"{path}: no examples: every line was skipped (1 unlabelled); "
        f"expected {get_format('convai2').description}"
    )
