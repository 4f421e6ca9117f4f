"""The PersonaChat / ConvAI2 text format: small files written here, and arbitrary input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.trainers_tests.formats_tests.conftest import SMALL, CheckLoad
from trainers.data import DatasetError, load_dataset, persona_id_for
from trainers.formats import ConvAI2Format

HUNTER = "i like to remodel homes. i like to go hunting."
DIALOGUES = [
    # Self side answers; label candidates after two tabs are ignored.
    "1 your persona: i like to remodel homes.",
    "2 your persona: i like to go hunting.",
    "3 hi , how are you doing ?\tyou must be very fast . hunting is fun .\t\tcand a|cand b",
    "4 i am ! i like canning .\ti also remodel homes .",
    # The same persona again, self speaks first; line numbering restarts at 1.
    "1 your persona: i like to remodel homes.",
    "2 your persona:   i like to go hunting.",
    "3 __SILENCE__\thello there , i build houses .",
    "4 oh nice .\tand i hunt deer .",
    "5 do you eat it ?\tyes , every winter .",
    # A "both" variant dialogue: the partner's persona is skipped.
    "1 your persona: i love cats.",
    "2 partner's persona: i am a chef.",
    "3 hello !\thi , i have two cats .",
    "4 what do they eat ?\tfish , mostly .",
    "5 nice .\tthey sleep a lot .",
]


def _write(tmp_path: Path, lines: list[str], name: str = "dialogues.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_self_turns_become_replies_after_the_turns_before(tmp_path: Path) -> None:
    result = load_dataset(_write(tmp_path, DIALOGUES), split=SMALL)

    assert result.summary.format == "convai2"
    hunter = result.dataset.persona(persona_id_for(HUNTER))
    assert hunter.text == HUNTER
    assert [(e.context, e.reply) for e in hunter.examples] == [
        ("hi , how are you doing ?", "you must be very fast . hunting is fun ."),
        (
            "hi , how are you doing ?\nyou must be very fast . hunting is fun .\n"
            "i am ! i like canning .",
            "i also remodel homes .",
        ),
        ("", "hello there , i build houses ."),
        ("hello there , i build houses .\noh nice .", "and i hunt deer ."),
        (
            "hello there , i build houses .\noh nice .\nand i hunt deer .\ndo you eat it ?",
            "yes , every winter .",
        ),
    ]
    cats = result.dataset.persona(persona_id_for("i love cats."))
    assert [e.reply for e in cats.examples] == [
        "hi , i have two cats .",
        "fish , mostly .",
        "they sleep a lot .",
    ]
    assert result.summary.skipped == {"partner's persona": 1}


def test_min_examples_drops_small_personas_and_the_summary_says_so(tmp_path: Path) -> None:
    path = _write(tmp_path, [*DIALOGUES, "1 your persona: i am tiny.", "2 hi\thello ."])
    with pytest.raises(DatasetError) as info:
        load_dataset(path, split=SMALL)
    assert str(info.value).startswith(f"{path}: 1 of 3 personas have fewer than 3 examples")
    assert f"'{persona_id_for('i am tiny.')}' (1)" in str(info.value)

    result = load_dataset(path, split=SMALL, min_examples=3)
    kept = [persona_id_for(HUNTER), persona_id_for("i love cats.")]
    assert [p.persona_id for p in result.dataset.personas] == kept
    assert result.summary.line() == (
        "convai2: kept 2 personas, dropped 1 with fewer than 3 examples; "
        "examples 4 train, 2 val, 2 test; skipped 1 lines (1 partner's persona)"
    )


def test_dialogues_without_persona_and_unnumbered_lines_are_skipped_and_counted(
    tmp_path: Path,
) -> None:
    lines = [
        "1 hi there\thello",  # the "none" variant: no persona, 2 turn lines
        "2 how are you ?\tfine .",
        "just a stray note",
        *DIALOGUES[:9],
        "4",  # a number and nothing else: no turn
    ]
    result = load_dataset(_write(tmp_path, lines), split=SMALL)
    assert result.summary.skipped == {"no persona": 2, "unlabelled": 2}
    assert len(result.dataset.persona(persona_id_for(HUNTER)).examples) == 5


def test_a_persona_line_after_turns_starts_a_new_dialogue(tmp_path: Path) -> None:
    lines = [*DIALOGUES[:4], "5 your persona: i am new here.", "6 hello\thi , new persona here ."]
    path = _write(tmp_path, lines)
    records = ConvAI2Format().read(path, path.read_bytes()).records
    assert [r.persona for r in records] == [HUNTER, HUNTER, "i am new here."]
    assert (records[-1].line, records[-1].context, records[-1].reply) == (
        6,
        "hello",
        "hi , new persona here .",
    )


def test_windows_line_endings_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(DIALOGUES[:9]).encode())
    result = load_dataset(path, split=SMALL)
    assert [e.reply for e in result.dataset.personas[0].examples][-1] == "yes , every winter ."


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes("\n".join(DIALOGUES[:3]).encode() + b"\n4 caf\xe9\tok")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value).startswith(f"{path}:4: not valid UTF-8 (byte 6: ")


def test_sniff() -> None:
    fmt = ConvAI2Format()
    assert fmt.sniff("1 your persona: i like cats.")
    assert fmt.sniff("1 partner's persona: i like dogs.")
    assert not fmt.sniff("1 hi there\thello")
    assert not fmt.sniff('{"persona_id": "p"}')


# --- arbitrary input: it loads or it is a one-line DatasetError ------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_LINES = st.one_of(
    st.builds(lambda n, t: f"{n} your persona: {t}", st.integers(0, 4), _TEXT),
    st.builds(lambda n, t: f"{n} partner's persona: {t}", st.integers(0, 4), _TEXT),
    st.builds(lambda n, a, b, c: f"{n} {a}\t{b}\t\t{c}", st.integers(0, 4), _TEXT, _TEXT, _TEXT),
    st.sampled_from(["1 your persona: i like cats.", "2 hi\thello", "3 __SILENCE__\tme first"]),
    _TEXT,
)
_DIALOGUE = st.builds(
    lambda persona, turns: (
        [f"1 your persona: {persona}"]
        + [f"{i} {partner}\t{mine}" for i, (partner, mine) in enumerate(turns, start=2)]
    ),
    st.sampled_from(["i like cats.", "i am tall."]),
    st.lists(st.tuples(_TEXT, _TEXT), min_size=2, max_size=6),
)
"""A well-formed dialogue of one of two personas, so that some files load."""


@given(
    chunks=st.lists(st.one_of(_DIALOGUE, st.lists(_LINES, max_size=3)), max_size=12),
    min_examples=st.one_of(st.none(), st.integers(1, 4)),
)
def test_arbitrary_lines_load_or_fail_cleanly(
    tmp_path: Path, check_load: CheckLoad, chunks: list[list[str]], min_examples: int | None
) -> None:
    path = _write(tmp_path, [line for chunk in chunks for line in chunk], "arbitrary.txt")
    result = check_load(path, "convai2", min_examples)
    if result is not None:
        for persona in result.dataset.personas:
            assert persona.persona_id == persona_id_for(persona.text)
            assert all("\n" not in e.reply for e in persona.examples)


@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_load_or_fail_cleanly(
    tmp_path: Path, check_load: CheckLoad, data: bytes
) -> None:
    path = tmp_path / "bytes.txt"
    path.write_bytes(data)
    check_load(path, "convai2")
