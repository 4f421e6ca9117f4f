"""The persona dataset: loading, every validation error (file and line), the split, and
the summary and persona selection of :func:`load_dataset` (each format: formats_tests/)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

from trainers.data import (
    PERSONA_ID_MAX_LENGTH,
    SPLITS,
    DatasetError,
    Example,
    LoadSummary,
    PersonaDataset,
    SplitConfig,
    dataset_records,
    load_dataset,
    load_jsonl,
    persona_id_for,
    write_jsonl,
)

SMALL = SplitConfig(n_test=2, val_fraction=0.25, seed=0)
"""A split that a persona of 4+ examples satisfies, to keep the files short."""


def _record(persona_id: str = "p0", i: int = 0, **overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "persona_id": persona_id,
        "persona": f"I am persona {persona_id}.",
        "context": ["Hi!", f"Question {i}?"],
        "reply": f"Answer {i} from {persona_id}.",
    }
    record.update(overrides)
    return record


def _records(n_personas: int = 2, n_examples: int = 6) -> list[dict[str, object]]:
    return [_record(f"p{p}", i) for p in range(n_personas) for i in range(n_examples)]


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _good_lines(n: int = 4) -> list[str]:
    return [json.dumps(_record("p0", i)) for i in range(n)]


def _error(path: Path, split: SplitConfig = SMALL) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_jsonl(path, split=split)
    return info.value


# --- loading and round trip ----------------------------------------------------------------


def test_load_builds_personas_in_order_with_examples_in_file_order(tmp_path: Path) -> None:
    records = [_record("b", 0), _record("a", 0), _record("b", 1)]
    records += [_record(pid, i) for pid in ("a", "b") for i in range(2, 6)]
    path = tmp_path / "people.jsonl"
    assert write_jsonl(path, records) == len(records)

    dataset = load_jsonl(path, split=SMALL)

    assert dataset.name == "people"
    assert dataset.source == str(path)
    assert len(dataset.sha256) == 64
    assert [p.persona_id for p in dataset.personas] == ["b", "a"]
    assert dataset.n_examples == len(records)
    b = dataset.persona("b")
    assert b.text == "I am persona b."
    assert [e.reply for e in b.examples] == [f"Answer {i} from b." for i in range(6)]
    assert b.examples[0].context == "Hi!\nQuestion 0?"
    assert {e.split for e in b.examples} <= set(SPLITS)
    assert sum(len(b.split(name)) for name in SPLITS) == len(b.examples)


def test_context_may_be_a_string_or_empty(tmp_path: Path) -> None:
    records = _records(1, 4)
    records[0]["context"] = "Hello there"
    records[1]["context"] = []
    records[2]["context"] = ""
    path = tmp_path / "d.jsonl"
    write_jsonl(path, records)
    examples = load_jsonl(path, split=SMALL).personas[0].examples
    assert [e.context for e in examples[:3]] == ["Hello there", "", ""]


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, _records(3, 7))
    dataset = load_jsonl(path, split=SMALL)

    again_path = tmp_path / "again.jsonl"
    write_jsonl(again_path, dataset_records(dataset))
    # Another split config: the written explicit splits win.
    again = load_jsonl(again_path, name="d", split=SplitConfig(n_test=1, seed=9))

    assert again.personas == dataset.personas
    assert again.name == dataset.name


def test_name_lookup_and_blank_lines(tmp_path: Path) -> None:
    lines = _good_lines(4)
    path = _write_lines(tmp_path / "d.jsonl", ["", lines[0], "   ", *lines[1:], ""])
    dataset = load_jsonl(path, name="demo", split=SMALL)
    assert dataset.name == "demo"
    assert dataset.n_examples == 4
    with pytest.raises(KeyError, match="'nobody'"):
        dataset.persona("nobody")


def test_persona_split_rejects_an_unknown_name(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "d.jsonl", _good_lines(4))
    persona = load_jsonl(path, split=SMALL).personas[0]
    with pytest.raises(ValueError, match=r"'validation'.*train, val, test"):
        persona.split("validation")


def test_write_jsonl_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "d.jsonl"
    write_jsonl(path, [_record()])
    before = path.read_bytes()

    def failing() -> object:
        yield _record("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_jsonl(path, failing())  # type: ignore[arg-type]
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["d.jsonl"]


# --- errors name the file and the line ------------------------------------------------------


def test_dataset_error_format_and_pickle() -> None:
    assert str(DatasetError("a.jsonl", 3, "bad")) == "a.jsonl:3: bad"
    assert str(DatasetError("a.jsonl", None, "bad")) == "a.jsonl: bad"
    error = pickle.loads(pickle.dumps(DatasetError("a.jsonl", 3, "bad")))
    assert (error.path, error.line, error.message) == ("a.jsonl", 3, "bad")
    assert isinstance(error, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    error = _error(path)
    assert str(error) == f"{path}: file not found"
    assert error.line is None


def test_empty_file(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "d.jsonl", ["", "  "])
    error = _error(path)
    assert str(error).startswith(f"{path}: empty file")


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    lines = _good_lines(4)
    path = tmp_path / "d.jsonl"
    path.write_bytes(lines[0].encode() + b"\n\xff\xfe\n" + "\n".join(lines[1:]).encode())
    error = _error(path)
    assert str(error).startswith(f"{path}:2: not valid UTF-8")
    assert error.line == 2


def test_invalid_json_includes_the_parser_message(tmp_path: Path) -> None:
    lines = _good_lines(4)
    lines[2] = '{"persona_id": "p0", "persona": }'
    error = _error(_write_lines(tmp_path / "d.jsonl", lines))
    assert str(error).startswith(f"{tmp_path / 'd.jsonl'}:3: invalid JSON: Expecting value")


def test_truncated_last_line_names_that_line(tmp_path: Path) -> None:
    lines = _good_lines(5)
    lines[-1] = lines[-1][:25]  # cut off mid-object, no final newline
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    error = _error(path)
    assert str(error).startswith(f"{path}:5: invalid JSON")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[1, 2]", "expected a JSON object, got list"),
        ('"text"', "expected a JSON object, got str"),
        (json.dumps(_record(reply=None)), "'reply' must be a string, got NoneType"),
        (json.dumps({k: v for k, v in _record().items() if k != "reply"}), "missing key 'reply'"),
        (json.dumps(_record(persona_id="")), "'persona_id' must be a non-empty string"),
        (json.dumps(_record(persona="  ")), "'persona' must be a non-empty string"),
        (json.dumps(_record(reply=5)), "'reply' must be a string, got int 5"),
        (json.dumps({**_record(), "persona_id": 7}), "'persona_id' must be a string, got int"),
        (json.dumps(_record(context=3)), "'context' must be a string or a list of strings"),
        (json.dumps(_record(context=["a", 2])), "'context'[1] must be a string, got int"),
        (json.dumps(_record(context=["a\nb"])), "'context'[0] contains a line break"),
        (json.dumps(_record(replly="x")), "unknown key 'replly'; allowed keys: persona_id"),
        (json.dumps(_record(split="dev")), 'invalid split "dev"; expected one of train, val'),
        (json.dumps(_record(split=None)), "invalid split null"),
        (json.dumps(_record(persona="Someone else.")), "differs from its first line (line 1)"),
    ],
)
def test_bad_record_names_file_line_and_problem(tmp_path: Path, line: str, expected: str) -> None:
    lines = _good_lines(5)
    lines.insert(2, line)  # line 3
    path = _write_lines(tmp_path / "d.jsonl", lines)
    error = _error(path)
    assert str(error).startswith(f"{path}:3: ")
    assert error.line == 3
    assert expected in str(error)
    assert "\n" not in str(error)


def test_persona_text_mismatch_names_the_first_occurrence(tmp_path: Path) -> None:
    lines = [json.dumps(_record("q", 0)), *_good_lines(4)]
    lines.append(json.dumps(_record("q", 1, persona="changed")))
    path = _write_lines(tmp_path / "d.jsonl", lines)
    error = _error(path)
    assert str(error).startswith(f"{path}:6: persona text of 'q' differs")
    assert "(line 1)" in str(error)


def test_nothing_is_returned_when_a_late_line_is_bad(tmp_path: Path) -> None:
    lines = [*_good_lines(4), *(json.dumps(_record("p1", i)) for i in range(99))]
    lines.append("{")
    error = _error(_write_lines(tmp_path / "d.jsonl", lines))
    assert error.line == 104


# --- the split ------------------------------------------------------------------------------


def _splits(dataset: PersonaDataset) -> dict[str, list[str]]:
    return {p.persona_id: [e.split for e in p.examples] for p in dataset.personas}


def test_default_split_counts(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, _records(2, 40))
    dataset = load_jsonl(path)  # n_test=10, val_fraction=0.1
    for persona in dataset.personas:
        assert len(persona.split("test")) == 10
        assert len(persona.split("val")) == 3  # round(0.1 * 30)
        assert len(persona.split("train")) == 27


def test_split_is_deterministic_and_depends_on_the_seed(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, _records(3, 30))
    first = _splits(load_jsonl(path, split=SplitConfig(seed=1)))
    # Same file, same seed: same split, whatever the name or another persona's lines.
    assert _splits(load_jsonl(path, name="other", split=SplitConfig(seed=1))) == first
    other_path = tmp_path / "more.jsonl"
    write_jsonl(other_path, [*_records(3, 30), *(_record("extra", i) for i in range(30))])
    more = _splits(load_jsonl(other_path, split=SplitConfig(seed=1)))
    assert {pid: more[pid] for pid in first} == first

    assert _splits(load_jsonl(path, split=SplitConfig(seed=2))) != first


def test_smallest_persona_without_explicit_splits(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, _records(1, 4))
    persona = load_jsonl(path, split=SMALL).personas[0]
    assert [len(persona.split(name)) for name in SPLITS] == [1, 1, 2]


def test_explicit_splits_are_honored(tmp_path: Path) -> None:
    splits = ["test", "train", "val", "train", "test"]
    records = [_record("p0", i, split=s) for i, s in enumerate(splits)]
    path = tmp_path / "d.jsonl"
    write_jsonl(path, records)
    persona = load_jsonl(path, split=SplitConfig(n_test=10)).personas[0]
    assert [e.split for e in persona.examples] == splits


def test_explicit_test_lines_count_towards_n_test(tmp_path: Path) -> None:
    records = [_record("p0", i, split="test") for i in range(3)]
    records += [_record("p0", i) for i in range(3, 23)]
    path = tmp_path / "d.jsonl"
    write_jsonl(path, records)
    persona = load_jsonl(path, split=SplitConfig(n_test=5, val_fraction=0.1)).personas[0]
    assert [e.split for e in persona.examples[:3]] == ["test"] * 3
    assert len(persona.split("test")) == 5
    assert len(persona.split("val")) == 2  # round(0.1 * 18)
    assert len(persona.split("train")) == 16


def test_too_few_examples_names_the_persona(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [*_records(1, 12), *(_record("tiny", i) for i in range(11))])
    error = _error(path, SplitConfig(n_test=10))
    assert str(error) == (
        f"{path}: 1 of 2 personas have fewer than 12 examples (n_test 10 + 1 val + 1 train): "
        "'tiny' (11); drop them with --min-examples 12 or lower the test split with "
        "--n-test N (or give the examples explicit 'split' values)"
    )
    write_jsonl(path, [*_records(1, 12), *(_record("tiny", i) for i in range(12))])
    assert len(load_jsonl(path, split=SplitConfig(n_test=10)).personas) == 2


def test_explicit_splits_need_a_train_and_a_test_example(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [_record("only", i, split="train") for i in range(3)])
    error = _error(path)
    assert "persona 'only' has 3 examples (3 train, 0 val, 0 test)" in str(error)
    assert error.line is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"n_test": 0}, "n_test=0"),
        ({"val_fraction": 0.0}, "val_fraction=0.0"),
        ({"val_fraction": 1}, "val_fraction=1"),
    ],
)
def test_split_config_is_checked(kwargs: dict[str, float], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        SplitConfig(**kwargs)  # type: ignore[arg-type]


def test_example_is_frozen() -> None:
    example = Example("ctx", "reply", "train")
    with pytest.raises(AttributeError):
        example.reply = "other"  # type: ignore[misc]


# --- load_dataset: min_examples, the summary, what a database cannot store -------------------


def test_load_dataset_summarizes_a_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, _records(2, 6))
    result = load_dataset(path, split=SMALL)
    assert result.dataset == load_jsonl(path, split=SMALL)
    assert result.summary == LoadSummary(
        format="jsonl",
        personas_kept=2,
        personas_dropped=0,
        min_examples=None,
        examples={"train": 6, "val": 2, "test": 4},
        skipped={},
    )
    assert result.summary.line() == (
        "jsonl: kept 2 personas, dropped 0; examples 6 train, 2 val, 4 test; skipped 0 lines"
    )


def test_min_examples_drops_short_personas(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [*_records(2, 12), *(_record("tiny", i) for i in range(11))])
    result = load_dataset(path, min_examples=12)
    assert [p.persona_id for p in result.dataset.personas] == ["p0", "p1"]
    assert (result.summary.personas_kept, result.summary.personas_dropped) == (2, 1)
    assert "dropped 1 with fewer than 12 examples" in result.summary.line()

    # A threshold below n_test + 2 keeps the short persona, which then cannot split.
    with pytest.raises(DatasetError, match="1 of 3 personas kept by --min-examples 5 have fewer"):
        load_dataset(path, min_examples=5)
    with pytest.raises(DatasetError, match=r"drops all 3 personas \(the largest has 12 exa"):
        load_dataset(path, min_examples=13)


def test_short_personas_error_counts_them_and_names_the_first_five(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(
        path, [*_records(1, 12), *(_record(f"s{p}", i) for p in range(7) for i in range(3))]
    )
    error = _error(path, SplitConfig(n_test=10))
    assert str(error) == (
        f"{path}: 7 of 8 personas have fewer than 12 examples (n_test 10 + 1 val + 1 train): "
        "'s0' (3), 's1' (3), 's2' (3), 's3' (3), 's4' (3), ...; drop them with "
        "--min-examples 12 or lower the test split with --n-test N "
        "(or give the examples explicit 'split' values)"
    )


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_min_examples_is_checked(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match=f"invalid min_examples={bad!r}"):
        load_dataset(tmp_path / "d.jsonl", min_examples=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("reply", "a\x00b", "'reply' contains a NUL character"),
        (
            "persona",
            "I am \ud800.",
            "'persona' contains an unpaired surrogate '\\ud800'; the text must be valid Unicode",
        ),
        (
            "persona_id",
            "x" * (PERSONA_ID_MAX_LENGTH + 1),
            f"'persona_id' has 201 characters ('{'x' * 20}'...); use at most 200",
        ),
    ],
)
def test_text_a_database_cannot_store_names_the_line(
    tmp_path: Path, field: str, value: str, expected: str
) -> None:
    lines = _good_lines(4)
    lines.insert(1, json.dumps({**_record("q", 0), field: value}))  # escaped in the JSON
    path = _write_lines(tmp_path / "d.jsonl", lines)
    error = _error(path)
    assert str(error) == f"{path}:2: {expected}"


def test_error_message_stays_on_one_line() -> None:
    error = DatasetError("a.csv", 2, "persona 'x\ny\u2028z' is odd")
    assert str(error) == "a.csv:2: persona 'x\\ny\\u2028z' is odd"
    assert error.message == "persona 'x\ny\u2028z' is odd"


def test_persona_id_is_derived_from_the_normalized_text() -> None:
    assert persona_id_for("I like cats.\nI run.") == persona_id_for("  I like cats.  I run. ")
    assert persona_id_for("I like cats.") != persona_id_for("I like dogs.")
    assert re.fullmatch(r"p_[0-9a-f]{12}", persona_id_for("I like cats."))


def test_the_persona_id_limit_is_the_storage_column() -> None:
    """trainers keeps its own constant (it does not import storage while loading); it must be
    the length of ``personas.key``."""
    from sqlalchemy import String

    from storage.models import PERSONA_KEY_LENGTH, Persona

    key = Persona.__table__.c.key.type
    assert isinstance(key, String)
    assert PERSONA_ID_MAX_LENGTH == PERSONA_KEY_LENGTH == key.length


def test_a_persona_id_of_the_longest_length_loads(tmp_path: Path) -> None:
    longest = "x" * PERSONA_ID_MAX_LENGTH
    lines = [json.dumps(_record(longest, i)) for i in range(4)]
    dataset = load_jsonl(_write_lines(tmp_path / "d.jsonl", lines), split=SMALL)
    assert [p.persona_id for p in dataset.personas] == [longest]
