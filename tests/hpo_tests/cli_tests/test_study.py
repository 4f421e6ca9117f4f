"""``hpo study create | status | best | trials`` on a real storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo.cli import EXIT_BAD_INPUT
from tests.conftest import import_and_cluster, write_small_dataset
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_create_refuses_an_unknown_dataset(hpo: Hpo, tmp_path: Path) -> None:
    config = _config(tmp_path, '[study]\nname = "clitest"\ndataset = "nosuchdata"\n')
    result = hpo("study", "create", "--config", config, "--storage", f"sqlite:///{tmp_path}/s.db")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nosuchdata" in one_line(result)


def test_create_refuses_a_dataset_without_the_clustering(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    path = write_small_dataset(tmp_path / "small.jsonl", n_personas=10, examples=12)
    assert hpo("data", "import", path, "--n-test", "2", "--storage", url).exit_code == 0
    config = _config(
        tmp_path, '[study]\nname = "clitest"\ndataset = "small"\nk = 3\ncluster_id = 2\n'
    )
    result = hpo("study", "create", "--config", config, "--storage", url)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "hpo data cluster --dataset small --k 3" in one_line(result)


def test_create_then_best_status_and_trials(hpo: Hpo, tmp_path: Path) -> None:
    url = import_and_cluster(f"sqlite:///{tmp_path / 'study.db'}", tmp_path, "small", k=3)
    config = _config(
        tmp_path,
        '[study]\nname = "clitest"\ndataset = "small"\nk = 3\ncluster_id = 2\nn_trials = 3\n',
    )
    result = hpo("study", "create", "--config", config, "--storage", url, "--n-trials", "4")
    assert result.exit_code == 0, result.output
    assert "study 'clitest' ready: 4 trials on cluster 2" in result.stdout

    result = hpo("study", "best", "--study", "clitest", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "no COMPLETE trial" in result.stdout
    result = hpo("study", "best", "--study", "clitest", "--storage", url, "--json", "-n", "2")
    assert json.loads(result.stdout) == []

    result = hpo("study", "status", "--study", "clitest", "--json", "--storage", url)
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert (status["study"], status["target"], status["finished"]) == ("clitest", 4, 0)
    assert status["best"] is None
    assert status["counts"] == {"WAITING": 3}  # the three enqueued seed configs

    result = hpo("study", "trials", "--study", "clitest", "--json", "--storage", url)
    trials = json.loads(result.stdout)
    assert [t["state"] for t in trials] == ["WAITING"] * 3
    table = hpo("study", "trials", "--study", "clitest", "--storage", url)
    assert table.exit_code == 0 and "trials of clitest" in table.stdout


def test_create_with_a_bad_config_names_the_field(hpo: Hpo, tmp_path: Path) -> None:
    config = _config(tmp_path, '[study]\nnam = "x"\n')
    result = hpo("study", "create", "--config", config, "--storage", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == EXIT_BAD_INPUT
    line = one_line(result)
    assert "study.nam" in line and str(config) in line


def test_create_names_the_config_file_for_a_missing_base_model(hpo: Hpo, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[study]\nname = "x"\ndataset = "d"\n[model]\nbase_model = "/nonexistent/model"\n',
    )
    result = hpo("study", "create", "--config", config, "--storage", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == EXIT_BAD_INPUT
    line = one_line(result)
    assert line.startswith(f"hpo: error: {config}: model.base_model="), line
    assert "no such folder" in line


def test_create_with_a_missing_config_names_the_file(hpo: Hpo, tmp_path: Path) -> None:
    result = hpo("study", "create", "--config", tmp_path / "none.toml")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "none.toml" in one_line(result)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("study", "create", "--config", "c.toml", "--n-trials", "0"), "--n-trials"),
        (("study", "best", "--study", "s", "-n", "0"), "-n"),
    ],
)
def test_counts_below_one_are_refused_naming_the_flag(
    hpo: Hpo, args: tuple[str, ...], flag: str
) -> None:
    result = hpo(*args)
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"Invalid value for '{flag}'" in result.stderr


@pytest.mark.parametrize("command", ["status", "best", "trials"])
def test_an_unknown_study_is_named(hpo: Hpo, tmp_path: Path, command: str) -> None:
    result = hpo("study", command, "--study", "nosuch", "--storage", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no study named 'nosuch'" in one_line(result)


def test_an_unsupported_storage_url_is_bad_input(hpo: Hpo) -> None:
    result = hpo("study", "status", "--study", "x", "--storage", "mysql://h/db")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "mysql" in one_line(result)


@pytest.mark.postgres
def test_plain_postgresql_url_means_psycopg3(hpo: Hpo, pg_url: str) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    result = hpo("study", "status", "--study", "nosuch", "--storage", plain)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no study named 'nosuch'" in one_line(result)


def test_tables_piped_are_plain_rows_with_whole_cells(hpo: Hpo, tmp_path: Path) -> None:
    """CliRunner's stdout is no terminal: every table comes as tab-separated rows, each cell
    whole on one line, no box drawing, so ``hpo study trials | grep`` keeps whole values."""
    import optuna

    from hpo.study.space import default_search_space, suggest

    url = import_and_cluster(f"sqlite:///{tmp_path / 'study.db'}", tmp_path, "small", k=3)
    name = "a-study-name-long-enough-that-rich-would-fold-it-at-eighty-columns"
    config = _config(
        tmp_path,
        f'[study]\nname = "{name}"\ndataset = "small"\nk = 3\ncluster_id = 2\nn_trials = 3\n',
    )
    assert hpo("study", "create", "--config", config, "--storage", url).exit_code == 0
    study = optuna.load_study(study_name=name, storage=url)
    for value in (0.123456789, 0.0987654321):  # the enqueued seed trials, told as a worker would
        trial = study.ask()
        suggest(trial, default_search_space())
        study.tell(trial, value)
    listed = json.loads(hpo("study", "trials", "--study", name, "--json", "--storage", url).stdout)
    done = [t for t in listed if t["state"] == "COMPLETE"]
    assert len(done) == 2

    table = hpo("study", "trials", "--study", name, "--storage", url)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert not any(ch in table.stdout for ch in "│┃━─┏└╭…")
    assert lines[0].startswith(f"# trials of {name} (")
    assert lines[1].split("\t") == ["trial", "state", "eval_loss", "params", "seed", "note"]
    rows = {int(line.split("\t")[0]): line.split("\t") for line in lines[2:]}
    assert set(rows) == {t["number"] for t in listed}
    for trial in done:
        cells = rows[trial["number"]]
        assert cells[1:3] == ["COMPLETE", f"{trial['value']:.4f}"]
        params = sorted(trial["params"].items())  # every parameter on the trial's one line
        assert cells[3] == ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params
        )
    assert len(lines[0]) > 80  # the title, whole on its line
    grepped = [line for line in lines if "\tCOMPLETE\t" in line]
    assert len(grepped) == 2

    best = hpo("study", "best", "--study", name, "--storage", url).stdout.splitlines()
    assert best[2].split("\t")[:3] == ["1", "COMPLETE", "0.0988"]
    status = hpo("study", "status", "--study", name, "--storage", url).stdout.splitlines()
    assert status[0] == f"# study {name}" and "complete\t2" in status
    listing = hpo("study", "list", "--storage", url).stdout.splitlines()
    assert any(line.startswith(f"{name}\t3\t2\t0\t0\t1\t0.0988 (#1)") for line in listing)
