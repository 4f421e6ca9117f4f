"""``hpo data generate | import | cluster`` on real files and a real SQLite storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo.cli import EXIT_BAD_INPUT
from hpo.demo import DemoOptions
from tests.conftest import write_small_dataset
from tests.datafiles import SPC_CSV
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line
from trainers.tiny.vocabulary import PLANTED_TOPIC


def _record(i: int) -> dict[str, object]:
    return {
        "persona_id": "p0",
        "persona": "I love hiking.",
        "context": ["Hi!"],
        "reply": f"Answer {i}.",
    }


def _lines(n: int = 4) -> list[bytes]:
    return [json.dumps(_record(i)).encode() for i in range(n)]


def _bad_invalid_json(path: Path) -> int | None:
    lines = _lines()
    lines[2] = b'{"persona_id": "p0", "persona": '
    path.write_bytes(b"\n".join(lines) + b"\n")
    return 3


def _bad_missing_reply(path: Path) -> int | None:
    lines = _lines()
    record = _record(1)
    del record["reply"]
    lines[1] = json.dumps(record).encode()
    path.write_bytes(b"\n".join(lines) + b"\n")
    return 2


def _bad_not_utf8(path: Path) -> int | None:
    lines = _lines()
    lines[1] = json.dumps(_record(1)).encode().replace(b"hiking", b"hik\xe9ng")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return 2


def _bad_empty(path: Path) -> int | None:
    path.write_bytes(b"")
    return None


def _bad_missing_file(path: Path) -> int | None:
    return None


BAD_INPUTS = {
    "invalid-json": (_bad_invalid_json, "invalid JSON"),
    "missing-reply": (_bad_missing_reply, "reply"),
    "not-utf8": (_bad_not_utf8, "UTF-8"),
    "empty": (_bad_empty, "empty"),
    "missing-file": (_bad_missing_file, "not found"),
}


def _dataset_rows(url: str) -> int:
    import sqlalchemy as sa

    import storage

    engine = storage.open_storage(url)
    with storage.session_scope(engine) as session:
        return int(
            session.execute(sa.select(sa.func.count()).select_from(storage.Dataset)).scalar_one()
        )


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_dataset_is_refused_with_one_line(hpo: Hpo, tmp_path: Path, case: str) -> None:
    make, words = BAD_INPUTS[case]
    path = tmp_path / "bad.jsonl"
    line = make(path)
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    result = hpo("data", "import", path, "--storage", url)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    message = one_line(result)
    assert message.startswith("hpo: error: ")
    assert (f"{path}:{line}:" if line is not None else f"{path}:") in message
    assert words in message
    if db.exists():
        assert _dataset_rows(url) == 0


def test_generate_import_cluster(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    out = tmp_path / "data" / "small.jsonl"
    result = hpo("data", "generate", "--out", out, "--personas", "20", "--examples", "16")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote 20 personas x 16 examples to {out}; planted: 50%")
    assert len(out.read_text(encoding="utf-8").splitlines()) == 20 * 16

    result = hpo("data", "import", out, "--name", "small", "--n-test", "4", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "dataset 'small': 20 personas, 320 examples" in result.stdout
    assert _dataset_rows(url) == 1

    result = hpo("data", "cluster", "--dataset", "small", "--k", "3", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "silhouette" in result.stdout.lower()
    assert "k=3" in result.stdout

    # The same file under the same name again is refused or accepted, but never duplicated.
    hpo("data", "import", out, "--name", "small", "--n-test", "4", "--storage", url)
    assert _dataset_rows(url) == 1


def test_generate_defaults_are_the_demos(hpo: Hpo, tmp_path: Path) -> None:
    """One home for the demo's numbers: `data generate` without flags writes DemoOptions'
    dataset, under OUTPUT_ROOT/data/."""
    result = hpo("data", "generate", "--output-root", tmp_path / "root")
    assert result.exit_code == 0, result.output
    defaults = DemoOptions()
    out = tmp_path / "root" / "data" / "demo_personas.jsonl"
    assert f"wrote {defaults.personas} personas x {defaults.examples} examples" in result.stdout
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == defaults.personas * defaults.examples
    assert f"planted: {defaults.plant.describe()}" in result.stdout
    assert defaults.plant.strength > 0 and PLANTED_TOPIC in out.read_text(encoding="utf-8")

    # The negative control: the same personas and replies, nothing planted, another file.
    result = hpo("data", "generate", "--output-root", tmp_path / "root", "--negative-control")
    assert result.exit_code == 0, result.output
    assert "planted: none (negative control)" in result.stdout
    control = tmp_path / "root" / "data" / "demo-negative_personas.jsonl"
    text = control.read_text(encoding="utf-8")
    assert PLANTED_TOPIC not in text and len(text.splitlines()) == len(lines)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("data", "generate", "--personas", "0"), "--personas"),
        (("data", "generate", "--personas", "3"), "--personas"),
        (("data", "generate", "--plant-strength", "1.5"), "--plant-strength"),
        (("data", "import", "x.jsonl", "--n-test", "0"), "--n-test"),
        (("data", "import", "x.jsonl", "--val-fraction", "1.5"), "--val-fraction"),
        (("data", "cluster", "--dataset", "d", "--k", "1"), "--k"),
    ],
)
def test_a_bad_flag_value_is_a_usage_error_naming_the_flag(
    hpo: Hpo, args: tuple[str, ...], flag: str
) -> None:
    result = hpo(*args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert f"Invalid value for '{flag}'" in result.stderr


def test_split_flags_reach_the_split(hpo: Hpo, tmp_path: Path) -> None:
    """--n-test and --split-seed come from SplitConfig: another seed, another split."""
    import storage

    path = write_small_dataset(tmp_path / "d.jsonl", n_personas=10, examples=12)
    tests = {}
    for seed in ("0", "1"):
        url = f"sqlite:///{tmp_path}/seed{seed}.db"
        args = ("data", "import", path, "--n-test", "3", "--split-seed", seed, "--storage", url)
        assert hpo(*args).exit_code == 0
        engine = storage.open_storage(url)
        with storage.session_scope(engine) as session:
            personas = storage.load_personas(session, storage.get_dataset_id(session, "d"))
        assert all(sum(e.split == "test" for e in p.examples) == 3 for p in personas)
        tests[seed] = [e.reply for p in personas for e in p.examples if e.split == "test"]
    assert tests["0"] != tests["1"]


def test_cluster_unknown_dataset_names_it(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = hpo("data", "cluster", "--dataset", "nosuchdata", "--k", "3", "--storage", url)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nosuchdata" in one_line(result)


def test_import_default_storage_is_in_the_working_directory(hpo: Hpo, tmp_path: Path) -> None:
    path = write_small_dataset(tmp_path / "demo.jsonl", n_personas=10, examples=12)
    result = hpo("data", "import", path, "--n-test", "2")
    assert result.exit_code == 0, result.output
    assert "dataset 'demo'" in result.stdout
    assert (tmp_path / "hpo.db").is_file()


def test_storage_from_the_environment(
    hpo: Hpo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_small_dataset(tmp_path / "demo.jsonl", n_personas=10, examples=12)
    monkeypatch.setenv("HPO_STORAGE", f"sqlite:///{tmp_path}/from_env.db")
    assert hpo("data", "import", path, "--n-test", "2").exit_code == 0
    assert (tmp_path / "from_env.db").is_file() and not (tmp_path / "hpo.db").exists()


def test_cluster_k_above_the_persona_count_is_bad_input(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    out = tmp_path / "small.jsonl"
    assert (
        hpo("data", "generate", "--out", out, "--personas", "20", "--examples", "16").exit_code == 0
    )
    assert (
        hpo("data", "import", out, "--name", "small", "--n-test", "4", "--storage", url).exit_code
        == 0
    )
    result = hpo("data", "cluster", "--dataset", "small", "--k", "50", "--storage", url)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "k=50" in one_line(result)


def test_import_the_real_synthetic_persona_chat_csv(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'spc.db'}"
    refused = hpo("data", "import", SPC_CSV, "--name", "spc", "--storage", url)
    assert refused.exit_code == EXIT_BAD_INPUT
    message = one_line(refused)
    assert "personas have fewer than" in message and "--min-examples" in message
    result = hpo(
        "data", "import", SPC_CSV, "--name", "spc", "--min-examples", "12", "--storage", url
    )
    assert result.exit_code == 0, result.output
    summary = result.output.splitlines()[0]
    assert summary.startswith("synthetic_persona_chat: kept ")
    assert "dropped" in summary and "skipped" in summary
    forced = hpo(
        "data", "import", SPC_CSV, "--name", "spc2", "--format", "convai2", "--storage", url
    )
    assert forced.exit_code == EXIT_BAD_INPUT
