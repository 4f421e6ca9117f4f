"""The real ``hpo`` command line, run as a subprocess: help, docs, bad input, the data flow."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import EXIT_BAD_INPUT, build_parser
from tests.conftest import write_small_dataset

README = Path(__file__).parents[2] / "README.md"


def _hpo(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("HPO_STORAGE", None)
    env["PYTHONWARNINGS"] = "ignore"
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_paths() -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(every command path, the leaf paths) of the parser tree, e.g. ('data', 'import')."""
    everything: list[tuple[str, ...]] = []
    leaves: list[tuple[str, ...]] = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        children = _subcommands(parser)
        everything.append(path)
        if not children:
            leaves.append(path)
        for name, child in children.items():
            walk(child, (*path, name))

    walk(build_parser(), ())
    return everything, leaves


ALL_PATHS, LEAF_PATHS = _command_paths()


def test_the_parser_tree_has_the_documented_commands() -> None:
    names = {" ".join(p) for p in LEAF_PATHS}
    assert {
        "data generate",
        "data import",
        "data cluster",
        "train",
        "study create",
        "study status",
        "study best",
        "study trials",
        "worker",
        "launch",
        "dashboard",
        "evaluate",
        "demo",
    } <= names


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: " ".join(p) or "hpo")
def test_help_exits_zero(tmp_path: Path, path: tuple[str, ...]) -> None:
    result = _hpo(tmp_path, *path, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: hpo")
    if path in LEAF_PATHS:
        assert "example:" in result.stdout
        example = result.stdout.split("example:", 1)[1]
        assert f"hpo {' '.join(path)}".strip() in example


@pytest.mark.parametrize("path", LEAF_PATHS, ids=lambda p: " ".join(p) or "hpo")
def test_every_leaf_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    text = README.read_text(encoding="utf-8")
    assert re.search(rf"\bhpo {re.escape(' '.join(path))}\b", text), (
        f"`hpo {' '.join(path)}` is not documented in {README}"
    )


# --- bad dataset input ------------------------------------------------------------------------


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
    try:
        with storage.session_scope(engine) as session:
            return int(
                session.execute(
                    sa.select(sa.func.count()).select_from(storage.Dataset)
                ).scalar_one()
            )
    finally:
        storage.dispose_engines()


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_dataset_is_refused_with_one_line(tmp_path: Path, case: str) -> None:
    make, words = BAD_INPUTS[case]
    path = tmp_path / "bad.jsonl"
    line = make(path)
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    result = _hpo(tmp_path, "data", "import", str(path), "--storage", url)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    location = f"{path}:{line}:" if line is not None else f"{path}:"
    assert location in lines[0]
    assert words in lines[0]
    assert "Traceback" not in result.stderr
    if db.exists():
        assert _dataset_rows(url) == 0


# --- the data flow ----------------------------------------------------------------------------


def test_generate_import_cluster(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    out = tmp_path / "data" / "small.jsonl"
    result = _hpo(
        tmp_path, "data", "generate", "--out", str(out), "--personas", "20", "--examples", "16"
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    assert len(out.read_text(encoding="utf-8").splitlines()) == 20 * 16

    result = _hpo(
        tmp_path, "data", "import", str(out), "--name", "small", "--n-test", "4", "--storage", url
    )
    assert result.returncode == 0, result.stderr
    assert "dataset 'small': 20 personas, 320 examples" in result.stdout
    assert _dataset_rows(url) == 1

    result = _hpo(tmp_path, "data", "cluster", "--dataset", "small", "--k", "3", "--storage", url)
    assert result.returncode == 0, result.stderr
    assert "silhouette" in result.stdout.lower()
    assert "k=3" in result.stdout

    # The same file under the same name again is refused or accepted, but never duplicated.
    _hpo(tmp_path, "data", "import", str(out), "--name", "small", "--n-test", "4", "--storage", url)
    assert _dataset_rows(url) == 1


def test_cluster_unknown_dataset_names_it(tmp_path: Path) -> None:
    result = _hpo(
        tmp_path,
        "data",
        "cluster",
        "--dataset",
        "nosuchdata",
        "--k",
        "3",
        "--storage",
        f"sqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode != 0
    assert "nosuchdata" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_import_default_storage_is_in_the_working_directory(tmp_path: Path) -> None:
    path = write_small_dataset(tmp_path / "demo.jsonl", n_personas=10, examples=12)
    result = _hpo(tmp_path, "data", "import", str(path), "--n-test", "2")
    assert result.returncode == 0, result.stderr
    assert "dataset 'demo'" in result.stdout
    assert (tmp_path / "hpo.db").is_file()


# --- study commands ---------------------------------------------------------------------------


def test_study_create_refuses_an_unknown_dataset(tmp_path: Path) -> None:
    config = tmp_path / "study.toml"
    config.write_text('[study]\nname = "clitest"\ndataset = "nosuchdata"\n', encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = _hpo(tmp_path, "study", "create", "--config", str(config), "--storage", url)
    assert result.returncode == 2, result.stderr
    assert "nosuchdata" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_study_create_refuses_an_unknown_cluster(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    path = write_small_dataset(tmp_path / "small.jsonl", n_personas=10, examples=12)
    assert (
        _hpo(tmp_path, "data", "import", str(path), "--n-test", "2", "--storage", url).returncode
        == 0
    )
    config = tmp_path / "study.toml"
    config.write_text(
        '[study]\nname = "clitest"\ndataset = "small"\nk = 3\ncluster_id = 2\n', encoding="utf-8"
    )
    result = _hpo(tmp_path, "study", "create", "--config", str(config), "--storage", url)
    assert result.returncode == 2, result.stderr
    assert "hpo data cluster --dataset small --k 3" in result.stderr


def test_study_create_then_best_and_status(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    path = write_small_dataset(tmp_path / "small.jsonl", n_personas=10, examples=12)
    for args in (
        ("data", "import", str(path), "--n-test", "2"),
        ("data", "cluster", "--dataset", "small", "--k", "3"),
    ):
        assert _hpo(tmp_path, *args, "--storage", url).returncode == 0
    config = tmp_path / "study.toml"
    config.write_text(
        '[study]\nname = "clitest"\ndataset = "small"\nk = 3\ncluster_id = 2\nn_trials = 3\n',
        encoding="utf-8",
    )
    result = _hpo(tmp_path, "study", "create", "--config", str(config), "--storage", url)
    assert result.returncode == 0, result.stderr
    assert "clitest" in result.stdout

    result = _hpo(tmp_path, "study", "best", "--study", "clitest", "--storage", url)
    assert result.returncode == 0, result.stderr
    assert "no COMPLETE trial" in result.stdout

    result = _hpo(tmp_path, "study", "status", "--study", "clitest", "--json", "--storage", url)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["study"] == "clitest"
    assert status["target"] == 3
    assert status["best"] is None


def test_study_create_with_a_bad_config_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[study]\nnam = "x"\n', encoding="utf-8")
    result = _hpo(
        tmp_path,
        "study",
        "create",
        "--config",
        str(config),
        "--storage",
        f"sqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode == EXIT_BAD_INPUT
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "study.nam" in lines[0] and str(config) in lines[0]


def test_study_best_on_unknown_study_names_it(tmp_path: Path) -> None:
    result = _hpo(
        tmp_path,
        "study",
        "best",
        "--study",
        "nosuch",
        "--storage",
        f"sqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode == EXIT_BAD_INPUT
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "nosuch" in lines[0]


def test_unknown_subcommand_is_a_usage_error(tmp_path: Path) -> None:
    result = _hpo(tmp_path, "nosuchcommand")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_train_command_saves_a_loadable_adapter(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'train.db'}"
    path = write_small_dataset(tmp_path / "small.jsonl", n_personas=10, examples=12)
    for args in (
        ("data", "import", str(path), "--n-test", "2"),
        ("data", "cluster", "--dataset", "small", "--k", "3"),
    ):
        assert _hpo(tmp_path, *args, "--storage", url).returncode == 0
    result = _hpo(
        tmp_path,
        "train",
        "--dataset",
        "small",
        "--k",
        "3",
        "--cluster-id",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--lr",
        "5e-4",
        "--rank",
        "4",
        "--max-train-per-persona",
        "3",
        "--storage",
        url,
        "--output-root",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "eval_loss" in result.stdout
    adapter = tmp_path / "models" / "lora_clusters" / "cluster_02"
    assert (adapter / "adapter_config.json").is_file()
    assert "eval_loss=" in (tmp_path / "logs" / "train-cluster-02.log").read_text()


def test_dashboard_serves_the_study_on_localhost(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    import optuna

    optuna.create_study(study_name="shown", storage=url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo", "dashboard", "--storage", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        body = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies") as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert '"shown"' in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_unsupported_storage_url_is_bad_input(tmp_path: Path) -> None:
    result = _hpo(tmp_path, "study", "status", "--study", "x", "--storage", "mysql://h/db")
    assert result.returncode == 2
    assert "mysql" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.postgres
def test_plain_postgresql_url_means_psycopg3(tmp_path: Path, pg_url: str) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    result = _hpo(tmp_path, "study", "status", "--study", "nosuch", "--storage", plain)
    assert result.returncode == 2
    assert "no study named 'nosuch'" in result.stderr
