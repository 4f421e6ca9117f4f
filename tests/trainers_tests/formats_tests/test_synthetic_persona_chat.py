"""The Synthetic-Persona-Chat CSV: the real validation split, small files, arbitrary input."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.trainers_tests.formats_tests.conftest import CheckLoad, real_csv
from trainers.data import DatasetError, SplitConfig, load_dataset, persona_id_for
from trainers.dataset import normalize_text
from trainers.formats import SyntheticPersonaChatFormat

HEADER = ["user 1 personas", "user 2 personas", "Best Generated Conversation"]
BAKER = "I love to bake cookies.\nI have a dog."
PILOT = "I fly planes.\nI live in Ohio."


def _write(tmp_path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    path = tmp_path / "chat.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *rows])
    return path


def _read(path: Path) -> tuple[list[tuple[str, str, str]], Counter[str]]:
    parsed = SyntheticPersonaChatFormat().read(path, path.read_bytes())
    return [(r.persona, r.context, r.reply) for r in parsed.records], parsed.skipped


# --- the real file ----------------------------------------------------------------------------


def test_real_file_names_the_short_personas_and_the_flags() -> None:
    path = real_csv()
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert message.startswith(
        f"{path}: 628 of 1905 personas have fewer than 12 examples (n_test 10 + 1 val + 1 train): "
    )
    assert message.count("'p_") == 5 and ", ...;" in message
    assert "--min-examples 12" in message and "--n-test N" in message
    assert info.value.line is None


def test_real_file_with_min_examples() -> None:
    result = load_dataset(real_csv(), min_examples=12)
    summary = result.summary
    assert (summary.format, summary.personas_kept, summary.personas_dropped) == (
        "synthetic_persona_chat",
        1277,
        628,
    )
    assert summary.skipped == {"stage direction": 55, "unlabelled": 40}
    assert summary.examples == {"train": 7584, "val": 1411, "test": 12770}
    assert summary.line() == (
        "synthetic_persona_chat: kept 1277 personas, dropped 628 with fewer than 12 examples; "
        "examples 7584 train, 1411 val, 12770 test; "
        "skipped 95 lines (55 stage direction, 40 unlabelled)"
    )
    assert all(len(p.examples) >= 12 for p in result.dataset.personas)


def test_real_file_examples_read_as_the_conversation_goes() -> None:
    dataset = load_dataset(real_csv(), split=SplitConfig(n_test=1), min_examples=3).dataset
    baker = dataset.personas[0]
    assert baker.text == (
        "I love to bake cookies. I have a dogs. The county wide bake sale is where i feel "
        "most at home. Knitting is my passion."
    )
    assert baker.persona_id == persona_id_for(baker.text)
    assert [(e.context, e.reply) for e in baker.examples[:3]] == [
        ("", "Hi!"),
        ("Hi!\nHello!", "What is your favorite thing to do?"),
        (
            "Hi!\nHello!\nWhat is your favorite thing to do?\nI like to move objects with my mind.",
            "That sounds like a lot of fun! I've always wanted to be able to do that.",
        ),
    ]
    boy = dataset.persona(
        persona_id_for(
            "I am a boy. I can move objects with my mind. "
            "I had to have a transplant. I was born with my "
            "heart outside my body."
        )
    )
    assert (boy.examples[0].context, boy.examples[0].reply) == ("Hi!", "Hello!")


def test_real_file_persona_in_several_conversations_is_one_persona() -> None:
    path = real_csv()
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))[1:]
    seen = Counter(normalize_text(cell) for row in rows for cell in row[:2])
    assert len(seen) == 1905
    text = next(t for t, n in seen.items() if n == 3)
    # Its turns in all three conversations, counted from the raw labels.
    turns = sum(
        line.startswith(f"User {k + 1}:")
        for row in rows
        for k in (0, 1)
        if normalize_text(row[k]) == text
        for line in row[2].split("\n")
    )
    dataset = load_dataset(path, split=SplitConfig(n_test=1), min_examples=3).dataset
    assert len(dataset.persona(persona_id_for(text)).examples) == turns > 25
    assert len({p.persona_id for p in dataset.personas}) == len(dataset.personas)


# --- small files ------------------------------------------------------------------------------


def test_both_users_are_personas_and_each_turn_a_reply(tmp_path: Path) -> None:
    conversation = "User 1: Hi!\nUser 2: Hello.\nUser 1: Do you bake?\nUser 2: No, I fly."
    records, skipped = _read(_write(tmp_path, [[BAKER, PILOT, conversation]]))
    baker, pilot = normalize_text(BAKER), normalize_text(PILOT)
    assert records == [
        (baker, "", "Hi!"),
        (pilot, "Hi!", "Hello."),
        (baker, "Hi!\nHello.", "Do you bake?"),
        (pilot, "Hi!\nHello.\nDo you bake?", "No, I fly."),
    ]
    assert skipped == Counter()


def test_stage_directions_and_unlabelled_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    conversation = "\n".join(
        [
            "User 1: Hi!",
            "[They walk to the park.]",
            "(Later)",
            "*At the bar*",
            "* * *",
            "User 1: Nice park.",  # joined with the turn before: contexts keep alternating
            "Adam: I am not in this chat.",
            "1 cup of flour",
            "",
            "User 2:   ",
            "User 2: It is.",
        ]
    )
    records, skipped = _read(_write(tmp_path, [[BAKER, PILOT, conversation]]))
    assert [(context, reply) for _, context, reply in records] == [
        ("", "Hi! Nice park."),
        ("Hi! Nice park.", "It is."),
    ]
    assert skipped == Counter({"stage direction": 4, "unlabelled": 2, "empty turn": 1})


def test_labels_decorated_with_asterisks_are_labels(tmp_path: Path) -> None:
    conversation = "*User 1:* Hi there!\n* User 2: Hello! *\n*User 1: How are you?*"
    records, skipped = _read(_write(tmp_path, [[BAKER, PILOT, conversation]]))
    assert [reply for *_, reply in records] == ["Hi there!", "Hello!", "How are you?"]
    assert skipped == Counter()


def test_a_user_without_persona_gives_no_examples_but_is_context(tmp_path: Path) -> None:
    records, skipped = _read(_write(tmp_path, [[BAKER, " ", "User 2: Hi!\nUser 1: Hello!"]]))
    assert records == [(normalize_text(BAKER), "Hi!", "Hello!")]
    assert skipped == Counter({"no persona": 1})


def test_columns_by_name_in_any_order_with_extra_columns(tmp_path: Path) -> None:
    header = ["Best Generated Conversation", "id", "User 2 Personas ", "user 1 personas"]
    path = _write(tmp_path, [["User 1: Hi!\nUser 2: Yo.", "7", PILOT, BAKER]], header)
    records, _ = _read(path)
    assert [persona for persona, *_ in records] == [normalize_text(BAKER), normalize_text(PILOT)]


def test_records_name_the_line_of_their_turn(tmp_path: Path) -> None:
    rows = [[BAKER, PILOT, "User 1: Hi!\nUser 2: Hello."], [PILOT, BAKER, "User 1: Up!"]]
    path = _write(tmp_path, rows)
    parsed = SyntheticPersonaChatFormat().read(path, path.read_bytes())
    lines = path.read_text(encoding="utf-8").split("\n")
    assert [r.line for r in parsed.records] == [4, 5, 8]
    assert all(r.reply in lines[r.line - 1] for r in parsed.records)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('"user 1 personas",conversation\n', "1: header lacks column(s) 'user 2 personas', 'Best"),
        (",".join(HEADER) + '\n"a","b","User 1: hi"\n"only one"\n', "3: row has 1 fields; the"),
        (
            ",".join(HEADER) + '\n"a","b","User 1: hi\n',
            "2: invalid CSV in the row starting here: unexpected end of data",
        ),
    ],
)
def test_structural_errors_name_the_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value).startswith(f"{path}:{expected}")


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(",".join(HEADER).encode() + b'\n"a","b","User 1: caf\xe9"\n')
    with pytest.raises(DatasetError, match=r"bad.csv:2: not valid UTF-8 \(byte 21: "):
        load_dataset(path)


def test_sniff() -> None:
    fmt = SyntheticPersonaChatFormat()
    assert fmt.sniff(",".join(HEADER))
    assert fmt.sniff('"user 1 personas","user 2 personas","Best Generated Conversation",x')
    assert not fmt.sniff("user 1 personas,user 2 personas")
    assert not fmt.sniff('"unclosed')


# --- arbitrary input: it loads or it is a one-line DatasetError ------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_CONVERSATION_LINES = st.one_of(
    st.builds(lambda k, t: f"User {k}: {t}", st.sampled_from([1, 2, 3]), _TEXT),
    st.builds(lambda k, t: f"*User {k}:* {t}", st.sampled_from([1, 2]), _TEXT),
    st.sampled_from(["[Later]", "* * *", "(They leave.)", "User 1: hi", "User 2: yo", ""]),
    _TEXT,
)
_ROW = st.lists(
    st.one_of(
        st.sampled_from(["I like cats.", "I am tall.\nI run."]),
        st.lists(_CONVERSATION_LINES, max_size=12).map("\n".join),
        _TEXT,
    ),
    min_size=0,
    max_size=4,
)


@given(
    rows=st.lists(_ROW, max_size=8),
    header=st.one_of(st.just(HEADER), st.lists(_TEXT, max_size=4)),
    min_examples=st.one_of(st.none(), st.integers(1, 4)),
)
def test_arbitrary_rows_load_or_fail_cleanly(
    tmp_path: Path,
    check_load: CheckLoad,
    rows: list[list[str]],
    header: list[str],
    min_examples: int | None,
) -> None:
    check_load(_write(tmp_path, rows, header), "synthetic_persona_chat", min_examples)


@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_load_or_fail_cleanly(
    tmp_path: Path, check_load: CheckLoad, data: bytes
) -> None:
    path = tmp_path / "bytes.csv"
    path.write_bytes(",".join(HEADER).encode() + b"\n" + data)
    check_load(path, "synthetic_persona_chat")


def test_the_csv_module_agrees_with_the_line_count() -> None:
    # The reader counts lines as the file does (turn lines inside quoted cells included).
    reader = csv.reader(io.StringIO('a,"b\nc"\nd,e\n', newline=""))
    next(reader)
    assert reader.line_num == 2
