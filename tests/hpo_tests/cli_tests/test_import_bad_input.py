"""``hpo data import`` refuses what a database cannot store the same way on SQLite and on the
real PostgreSQL: exit 2, one line naming FILE:LINE, nothing written. A name holds one import:
the same file with other split options is refused, the same file and options is a no-op."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from hpo.cli import EXIT_BAD_INPUT
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line

SPLIT = ("--n-test", "2")
"""A split that the small files below satisfy (4+ examples a persona)."""


def _record(persona: int, i: int, **overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "persona_id": f"p{persona}",
        "persona": f"I am persona {persona}.",
        "context": ["Hi!", f"Question {i}?"],
        "reply": f"Answer {i}.",
    }
    record.update(overrides)
    return record


def _jsonl(
    change: Callable[[str], str] | None = None,
    *,
    lines: range = range(2, 3),
    sizes: tuple[int, ...] = (6, 6, 6),
) -> bytes:
    """JSONL lines, persona p with ``sizes[p]`` examples; ``change`` rewrites the JSON text of
    the ``lines`` (0-based; default line 3, persona p0's third example, so that only the
    changed value stands between the file and the database)."""
    texts = [json.dumps(_record(p, i)) for p, n in enumerate(sizes) for i in range(n)]
    if change is not None:
        for index in lines:
            texts[index] = change(texts[index])
    return ("\n".join(texts) + "\n").encode()


def _setting(key: str, value: str) -> Callable[[str], str]:
    """Set ``key`` of a JSON line to ``value`` (written as JSON, so escaped)."""
    return lambda text: json.dumps({**json.loads(text), key: value})


def _reply_as(raw: str) -> Callable[[str], str]:
    """Replace the reply of a JSON line by ``raw`` JSON text."""
    return lambda text: text.replace('"Answer 2."', raw)


def _convai2(bad_reply: str) -> bytes:
    lines = ["1 your persona: i like cats.", "2 your persona: i run."]
    lines += [f"{n} hello {n} .\tgood {n} ." for n in range(3, 9)]
    lines[4] = f"5 hello .\t{bad_reply}"
    return ("\n".join(lines) + "\n").encode()


def _spc(bad_turn: str) -> bytes:
    turns = [f"User {1 + i % 2}: turn {i}." for i in range(12)]
    turns[5] = f"User 2: {bad_turn}"
    conversation = "\n".join(turns)
    return (
        "user 1 personas,user 2 personas,Best Generated Conversation\n"
        f'"I like cats.","I run.","{conversation}"\n'
    ).encode()


BAD_FILES: dict[str, tuple[str, Callable[[], bytes], int, str]] = {
    # case: (file name, contents, the line named, words of the message)
    "nul-in-reply": (
        "d.jsonl",
        lambda: _jsonl(_setting("reply", "a\x00b")),
        3,
        "'reply' contains a NUL character",
    ),
    "lone-surrogate": (
        "d.jsonl",
        lambda: _jsonl(_setting("reply", "Me \ud800.")),
        3,
        "unpaired surrogate",
    ),
    "persona-id-201-chars": (
        "d.jsonl",
        lambda: _jsonl(_setting("persona_id", "x" * 201), lines=range(6)),
        1,
        "'persona_id' has 201 characters",
    ),
    "integer-5000-digits": ("d.jsonl", lambda: _jsonl(_reply_as("9" * 5000)), 3, "invalid JSON"),
    "nested-100000-deep": (
        "d.jsonl",
        lambda: _jsonl(_reply_as("[" * 100_000 + "]" * 100_000)),
        3,
        "nested too deeply",
    ),
    "convai2-nul": ("d.txt", lambda: _convai2("bad \x00 reply ."), 5, "NUL character"),
    "spc-nul": ("d.csv", lambda: _spc("bad \x00 turn."), 7, "NUL character"),
}


def _rows_named(url: str, name: str) -> int:
    import sqlalchemy as sa

    import storage

    engine = storage.open_storage(url)
    with storage.session_scope(engine) as session:
        query = sa.select(sa.func.count()).where(storage.Dataset.name == name)
        return int(session.execute(query.select_from(storage.Dataset)).scalar_one())


def _stored(url: str, name: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    import storage

    engine = storage.open_storage(url)
    with storage.session_scope(engine) as session:
        personas = storage.load_personas(session, storage.get_dataset_id(session, name))
    return [(p.key, p.text, [(e.reply, e.split) for e in p.examples]) for p in personas]


def _refused(result: object, *words: str) -> str:
    from click.testing import Result

    assert isinstance(result, Result)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    message = one_line(result)
    assert message.startswith("hpo: error: ")
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_unstorable_input_is_exit_2_naming_file_and_line(
    hpo: Hpo, tmp_path: Path, storage_url: str, case: str
) -> None:
    filename, contents, line, words = BAD_FILES[case]
    path = tmp_path / filename
    path.write_bytes(contents())
    result = hpo("data", "import", path, "--name", "bad", *SPLIT, "--storage", storage_url)
    _refused(result, f"{path}:{line}: ", words)
    assert _rows_named(storage_url, "bad") == 0


def test_the_bad_files_are_good_without_their_bad_value(
    hpo: Hpo, tmp_path: Path, sqlite_url: str
) -> None:
    """The cases fail for their value alone: each file with a plain value imports."""
    files = {
        "d.jsonl": _jsonl(_setting("reply", "a plain reply")),
        "d.txt": _convai2("a good reply ."),
        "d.csv": _spc("a good turn."),
    }
    for filename, contents in files.items():
        path = tmp_path / filename
        path.write_bytes(contents)
        name = path.suffix[1:]
        result = hpo("data", "import", path, "--name", name, *SPLIT, "--storage", sqlite_url)
        assert result.exit_code == 0, result.output
        assert _rows_named(sqlite_url, name) == 1


def test_a_persona_id_of_200_characters_fits(hpo: Hpo, tmp_path: Path, storage_url: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl(_setting("persona_id", "x" * 200), lines=range(6)))
    result = hpo("data", "import", path, *SPLIT, "--storage", storage_url)
    assert result.exit_code == 0, result.output
    assert "x" * 200 in [key for key, _, _ in _stored(storage_url, "d")]


def test_a_dataset_name_over_the_limit_is_exit_2(
    hpo: Hpo, tmp_path: Path, storage_url: str
) -> None:
    from storage.models import DATASET_NAME_LENGTH

    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl())
    long = "n" * (DATASET_NAME_LENGTH + 1)
    result = hpo("data", "import", path, "--name", long, *SPLIT, "--storage", storage_url)
    _refused(result, "invalid dataset name", f"at most {DATASET_NAME_LENGTH}")
    assert _rows_named(storage_url, long) == 0
    fits = long[:-1]
    result = hpo("data", "import", path, "--name", fits, *SPLIT, "--storage", storage_url)
    assert result.exit_code == 0, result.output
    assert _rows_named(storage_url, fits) == 1


def test_the_stored_source_is_the_files_name_and_sha256_not_its_folder(
    hpo: Hpo, tmp_path: Path, storage_url: str
) -> None:
    """A path longer than ``datasets.source`` imports on both backends; the stored source
    names the file and its content, never the importing machine's folder."""
    import hashlib

    import sqlalchemy as sa

    import storage
    from storage.models import DATASET_SOURCE_LENGTH

    folder = tmp_path.joinpath(*(f"{i}" * 200 for i in range(6)))
    folder.mkdir(parents=True)
    path = folder / "long.jsonl"
    path.write_bytes(_jsonl())
    assert len(str(path)) > DATASET_SOURCE_LENGTH
    result = hpo("data", "import", path, *SPLIT, "--storage", storage_url)
    assert result.exit_code == 0, result.output
    engine = storage.open_storage(storage_url)
    with storage.session_scope(engine) as session:
        source = session.execute(sa.select(storage.Dataset.source)).scalar_one()
    assert source == f"long.jsonl sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


# --- the same name again ----------------------------------------------------------------------


def test_same_file_and_options_again_is_a_no_op(hpo: Hpo, tmp_path: Path, storage_url: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl(sizes=(6, 6, 3)))
    args = ("data", "import", path, *SPLIT, "--split-seed", "3", "--min-examples", "4")
    first = hpo(*args, "--storage", storage_url)
    assert first.exit_code == 0, first.output
    stored = _stored(storage_url, "d")
    again = hpo(*args, "--storage", storage_url)
    assert again.exit_code == 0, again.output
    assert again.stdout == first.stdout
    assert _rows_named(storage_url, "d") == 1 and _stored(storage_url, "d") == stored


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--n-test", "3"), "this import 2 personas, 5 train / 2 val / 6 test"),
        (("--val-fraction", "0.5"), "this import 2 personas, 5 train / 4 val / 4 test"),
        (("--split-seed", "1"), "(the same sizes, other examples)"),
        (("--min-examples", "7"), "this import 1 personas, 4 train / 1 val / 2 test"),
    ],
)
def test_same_file_with_another_split_is_exit_2(
    hpo: Hpo, tmp_path: Path, storage_url: str, options: tuple[str, ...], words: str
) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl(sizes=(6, 7)))
    first = hpo("data", "import", path, *SPLIT, "--storage", storage_url)
    assert first.exit_code == 0, first.output
    stored = _stored(storage_url, "d")
    result = hpo("data", "import", path, *SPLIT, *options, "--storage", storage_url)
    _refused(
        result,
        f"{path}: dataset 'd' already holds this file with another split",
        "stored 2 personas, 7 train / 2 val / 4 test examples",
        words,
        "choose another --name",
    )
    assert _stored(storage_url, "d") == stored
    other = hpo("data", "import", path, *SPLIT, *options, "--name", "d2", "--storage", storage_url)
    assert other.exit_code == 0, other.output


def test_a_min_examples_that_drops_nothing_stores_the_same_rows(
    hpo: Hpo, tmp_path: Path, sqlite_url: str
) -> None:
    """The identity is the stored rows: options that store the same rows are the same import."""
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl())
    assert hpo("data", "import", path, *SPLIT, "--storage", sqlite_url).exit_code == 0
    result = hpo("data", "import", path, *SPLIT, "--min-examples", "2", "--storage", sqlite_url)
    assert result.exit_code == 0, result.output


def test_another_file_under_a_taken_name_is_exit_2(
    hpo: Hpo, tmp_path: Path, storage_url: str
) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl())
    assert hpo("data", "import", path, *SPLIT, "--storage", storage_url).exit_code == 0
    stored = _stored(storage_url, "d")
    path.write_bytes(_jsonl(sizes=(6, 6, 7)))
    result = hpo("data", "import", path, *SPLIT, "--storage", storage_url)
    _refused(result, f"{path}: dataset 'd' already exists with sha256", "another --name")
    assert _stored(storage_url, "d") == stored
