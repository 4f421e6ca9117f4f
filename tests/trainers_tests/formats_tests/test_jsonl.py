"""Our JSONL format under arbitrary input (its every error is tested in test_data.py)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.trainers_tests.formats_tests.conftest import CheckLoad
from trainers.formats import JsonlFormat
from trainers.formats._jsonl import ALLOWED_KEYS

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_LINE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"))
_GOOD = st.builds(
    lambda who, context, reply, split: {
        "persona_id": who,
        "persona": f"I am {who}.",
        "context": context,
        "reply": reply,
        **split,
    },
    st.sampled_from(["a", "b"]),
    st.one_of(_LINE_TEXT, st.lists(_LINE_TEXT, max_size=3)),
    _LINE_TEXT.filter(str.strip),
    st.sampled_from([{}, {}, {"split": "train"}, {"split": "test"}, {"split": "val"}]),
)
"""Valid records of two personas, so that some files load."""
_RECORD = st.one_of(
    _GOOD,
    st.dictionaries(st.sampled_from([*ALLOWED_KEYS, "other", "split"]), _JSON, max_size=6),
    _JSON,
)


@given(
    records=st.one_of(st.lists(_GOOD, min_size=3, max_size=20), st.lists(_RECORD, max_size=30)),
    junk=st.one_of(st.just([]), st.lists(st.text(max_size=20), max_size=2)),
    min_examples=st.one_of(st.none(), st.integers(1, 4)),
)
def test_arbitrary_records_load_or_fail_cleanly(
    tmp_path: Path,
    check_load: CheckLoad,
    records: list[object],
    junk: list[str],
    min_examples: int | None,
) -> None:
    path = tmp_path / "records.jsonl"
    lines = [json.dumps(record, ensure_ascii=False) for record in records] + junk
    path.write_text("\n".join(lines), encoding="utf-8")
    check_load(path, "jsonl", min_examples)


@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_load_or_fail_cleanly(
    tmp_path: Path, check_load: CheckLoad, data: bytes
) -> None:
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(data)
    check_load(path, "jsonl")


def test_sniff() -> None:
    fmt = JsonlFormat()
    assert fmt.sniff('  {"persona_id": "p0"}')
    assert not fmt.sniff("[1, 2]")
    assert not fmt.sniff("user 1 personas,user 2 personas,Best Generated Conversation")
