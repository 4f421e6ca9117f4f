"""The command line loads only what a command needs: ``hpo --help`` imports no command,
``hpo study best`` the query path and none of torch, transformers, the demo or the workers;
the root's short helps are the commands' own; the packages resolve their names on first use.

Each check of ``sys.modules`` runs in a fresh interpreter, since this one has imported
everything already.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import optuna
import pytest

from hpo.cli import COMMANDS, cli
from hpo.study.config import StudyConfig, StudySection
from hpo.study.records import CONFIG_ATTR

ROOT = Path(__file__).resolve().parents[3]

HEAVY = ("torch", "transformers", "peft", "sentence_transformers")
"""Never imported by a query command (nor by any import of a package)."""
NOT_FOR_QUERIES = (
    "hpo.demo",
    "hpo.workers",
    "hpo.evaluation",
    "hpo.personas",
    "evaluators",
)
"""The rest of the service, which a query command has no use for."""
STUDY_CONFIG_MODULES = ["evaluators", "evaluators.config"]
"""What a study config brings of :data:`NOT_FOR_QUERIES`: its ``[evaluation]`` section is
:class:`evaluators.config.EvalConfig`, a plain dataclass module (the package's other names
are loaded on first use)."""

REPORT_MODULES = """
import json, sys
prefixes = {prefixes!r}
print(json.dumps(sorted(
    name for name in sys.modules
    if any(name == p or name.startswith(p + ".") for p in prefixes)
)))
"""


def _loaded_after(code: str, prefixes: tuple[str, ...], **env: str) -> tuple[list[str], str]:
    """Run ``code`` in a fresh interpreter; the modules under ``prefixes`` it loaded, and what
    it printed before that report."""
    script = code + REPORT_MODULES.format(prefixes=prefixes)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    *printed, report = result.stdout.rstrip("\n").split("\n")
    return json.loads(report), "\n".join(printed)


def test_help_lists_every_command_and_imports_none() -> None:
    groups = tuple(f"hpo.cli.{spec.module}" for spec in COMMANDS.values())
    code = "from hpo.cli import main\nassert main(['--help']) == 0\n"
    loaded, printed = _loaded_after(code, (*groups, *NOT_FOR_QUERIES, *HEAVY, "optuna"))
    assert loaded == []
    listed = printed.split("Commands:")[1]
    for name in COMMANDS:
        assert f"\n  {name} " in listed, f"{name} missing from hpo --help"


def test_study_best_imports_the_query_path_only(tmp_path: Path) -> None:
    """A real study with one COMPLETE trial, shown by ``hpo study best`` in a fresh process."""
    url = f"sqlite:///{tmp_path / 'lazy.db'}"
    study = optuna.create_study(study_name="lazy", storage=url)
    study.set_user_attr(CONFIG_ATTR, StudyConfig(study=StudySection(name="lazy")).to_dict())
    study.add_trial(
        optuna.create_trial(
            params={"lora_rank": 8},
            distributions={"lora_rank": optuna.distributions.CategoricalDistribution((4, 8))},
            value=0.625,
        )
    )
    others = tuple(f"hpo.cli.{spec.module}" for spec in COMMANDS.values() if spec.module != "study")
    code = (
        "from hpo.cli import main\n"
        f"assert main(['study', 'best', '--study', 'lazy', '--json', '--storage', {url!r}]) == 0\n"
    )
    loaded, printed = _loaded_after(code, (*others, *NOT_FOR_QUERIES, *HEAVY, "hpo.study.queries"))
    assert loaded == [*STUDY_CONFIG_MODULES, "hpo.study.queries"]  # it ran its query...
    rows = json.loads(printed)
    assert [(r["number"], r["value"], r["params"]) for r in rows] == [(0, 0.625, {"lora_rank": 8})]


def test_resolving_the_study_command_imports_no_heavy_library() -> None:
    code = (
        "import click\nfrom hpo.cli import cli\n"
        "assert isinstance(cli.get_command(click.Context(cli), 'study'), click.Group)\n"
    )
    others = tuple(f"hpo.cli.{spec.module}" for spec in COMMANDS.values() if spec.module != "study")
    loaded, _ = _loaded_after(code, (*HEAVY, *NOT_FOR_QUERIES, *others, "hpo.cli.study"))
    assert loaded == [*STUDY_CONFIG_MODULES, "hpo.cli.study"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_short_help_is_the_commands_own(name: str) -> None:
    """The short help ``hpo --help`` shows without importing a command equals what the command
    itself says, and the entry points at the command of that name."""
    spec = COMMANDS[name]
    command = getattr(importlib.import_module(f"hpo.cli.{spec.module}"), spec.attribute)
    assert isinstance(command, click.Command) and command.name == name
    assert not command.hidden
    assert spec.short_help == command.get_short_help_str(limit=sys.maxsize)


def test_the_lazy_help_equals_clicks_own_rendering() -> None:
    """``hpo --help`` with no command imported is what click prints with every one loaded."""
    code = (
        "import click\nfrom hpo.cli import cli\n"
        "def render(format_commands):\n"
        "    ctx = click.Context(cli, info_name='hpo')\n"
        "    formatter = ctx.make_formatter()\n"
        "    format_commands(cli, ctx, formatter)\n"
        "    return formatter.getvalue()\n"
        "lazy = render(type(cli).format_commands)\n"
        "eager = render(click.Group.format_commands)\n"
        "print(repr(lazy)); print(repr(eager))\n"
    )
    _, printed = _loaded_after(code, ())
    lazy, eager = (ast.literal_eval(line) for line in printed.splitlines())
    assert "Commands:" in lazy and lazy == eager


def test_an_unknown_command_is_none_and_every_name_is_listed() -> None:
    assert cli.get_command(click.Context(cli), "nosuchcommand") is None
    assert set(cli.commands) == set(COMMANDS)


def _type_checking_names(package: str) -> dict[str, str]:
    """{name: module} of the imports in the ``if TYPE_CHECKING:`` block of a package."""
    init = ROOT / package.replace(".", "/") / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    return {
        alias.name: str(node.module)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


LAZY_PACKAGES = (
    "hpo",
    "hpo.evaluation",
    "hpo.personas",
    "hpo.study",
    "hpo.workers",
    "trainers",
    "evaluators",
    "evaluators.baselines",
    "evaluators.moe",
    "evaluators.report",
    "evaluators.scoring",
    "evaluators.stats",
    "evaluators.trials",
)
"""Packages whose names are loaded on first use."""


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_package_names_match_their_imports(package: str) -> None:
    """The {name: module} map a package resolves from is the one its typed imports say, and
    names every public name."""
    module = importlib.import_module(package)
    assert _type_checking_names(package) == module._MODULE_OF
    assert set(module._MODULE_OF) == set(module.__all__)
    assert set(module.__all__) <= set(dir(module))


def test_importing_hpo_imports_no_module_of_it_until_a_name_is_used() -> None:
    code = (
        "import sys, hpo\n"
        "print(sorted(m for m in sys.modules if m.startswith('hpo.')))\n"
        "hpo.run_demo\n"
    )
    loaded, printed = _loaded_after(code, ("hpo.demo",))
    assert printed == "[]"
    assert loaded == ["hpo.demo"]


@pytest.mark.parametrize(("preset", "expected"), [(None, "1000"), ("50", "50")])
def test_openmp_spin_count_is_set_before_torch_loads(preset: str | None, expected: str) -> None:
    """torch's OpenMP threads read GOMP_SPINCOUNT once, when torch loads: the entry point sets
    it first (keeping a value the environment gives) and torch is not loaded yet then."""
    code = (
        "import os, sys\n"
        "from hpo.cli import main\n"
        "main(['--help'])\n"
        "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if preset is not None:
        env["GOMP_SPINCOUNT"] = preset
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[-2:] == [expected, "False"]
