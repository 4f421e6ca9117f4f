"""The ``hpo`` command line: a thin layer over the library functions.

Each command lives in the module of its group and owns its options and its action; this
module only builds the root group and names them in :data:`COMMANDS`. A new command is one
new module plus one entry there.

The root group loads a command's module only when that command runs (click's "lazily loading
subcommands"), so ``hpo study best`` imports the ``study`` group and the query path, not the
demo, the workers or the evaluators; ``hpo --help`` lists every command from the short help
kept in :data:`COMMANDS` and imports none (a test checks that it equals each command's own).

Exit codes (:mod:`hpo.cli.errors`): 0 success, 2 bad input (one line naming the value),
1 anything else, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from hpo.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    BadInputError,
    CommandError,
    CommandInterrupted,
    bad_input_errors,
    usage_error,
)
from hpo.cli.options import STORAGE_META, example, is_verbose, storage_url

__all__ = [
    "COMMANDS",
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "CommandSpec",
    "HpoGroup",
    "LazyCommands",
    "cli",
    "main",
]


@dataclass(frozen=True)
class CommandSpec:
    """Where a root command lives, and its short help for ``hpo --help``."""

    module: str
    """Module under ``hpo.cli`` that defines it."""
    attribute: str
    """Its name in that module."""
    short_help: str
    """Its help's first sentence, as ``Command.get_short_help_str`` gives it untruncated."""


COMMANDS: dict[str, CommandSpec] = {
    "demo": CommandSpec(
        "demo",
        "demo",
        "The whole flow on the embedded default: data with a planted effect "
        "(--negative-control: none), clusters, a study run by workers, the evaluator with its "
        "baselines, per-persona adapters and the MoE merge, and the report with its decision.",
    ),
    "data": CommandSpec("data", "data", "Generate, import and cluster persona datasets."),
    "train": CommandSpec(
        "train", "train", "Train one cluster adapter with the given hyperparameters."
    ),
    "study": CommandSpec("study", "study", "Create a study and query its trials."),
    "worker": CommandSpec(
        "workers",
        "worker",
        "Run trials of a study until its budget is spent (one worker per GPU).",
    ),
    "launch": CommandSpec(
        "workers",
        "launch",
        "Start workers on this machine (--workers N, --gpus IDS or --workers-per-gpu N) and "
        "supervise them until the last one exits.",
    ),
    "dashboard": CommandSpec("dashboard", "dashboard", "Serve optuna-dashboard on the storage."),
    "evaluate": CommandSpec(
        "evaluate",
        "evaluate",
        "Evaluate one trial (or adapter) and the base model on the cluster's test split.",
    ),
    "evaluator": CommandSpec(
        "evaluator",
        "evaluator",
        "Evaluate a study's top trials as they come and promote the best similarity.",
    ),
    "db": CommandSpec("db", "db", "Manage the schema of our tables (Optuna keeps its own)."),
    "personas": CommandSpec(
        "personas", "personas", "Per-persona adapters (the sources of the MoE merge)."
    ),
    "moe": CommandSpec(
        "moe",
        "moe",
        "MoE sparse merge: route each persona to its k nearest personas and merge their adapters.",
    ),
    "report": CommandSpec(
        "report",
        "report",
        "Write the study's comparison: every evaluated method on the identical test "
        "examples, the decision rule's branch, comprehensive_comparison.html/.png and a "
        "markdown summary under OUTPUT_ROOT/results/STUDY/comparison/.",
    ),
}
"""The root commands by name: a new command group is one entry here."""


class LazyCommands(MutableMapping[str, click.Command]):
    """The root group's ``commands``: names known up front, each command imported from its
    module the first time it is looked up (``cli.commands["study"]``, or iterating the items
    loads them all)."""

    def __init__(self, specs: dict[str, CommandSpec]) -> None:
        self._specs = specs
        self._loaded: dict[str, click.Command] = {}

    def short_help(self, name: str, limit: int) -> str:
        """The short help of ``name`` cut to ``limit`` characters as click cuts it, without
        importing the command."""
        if name in self._loaded:
            return self._loaded[name].get_short_help_str(limit)
        return click.Command(name, help=self._specs[name].short_help).get_short_help_str(limit)

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            spec = self._specs[name]  # KeyError: no such command
            module = importlib.import_module(f"{__name__}.{spec.module}")
            command = getattr(module, spec.attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"hpo.cli.{spec.module}.{spec.attribute} is no click command")
            self._loaded[name] = command
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._specs and name not in self._loaded:
            raise KeyError(name)
        self._specs = {key: spec for key, spec in self._specs.items() if key != name}
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._specs
        yield from (name for name in self._loaded if name not in self._specs)

    def __len__(self) -> int:
        return len(self._specs.keys() | self._loaded.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._loaded


class HpoGroup(click.Group):
    """The root group: loads a command when it runs, and turns what a command raises into an
    exit code and one line.

    Its ``commands`` is a :class:`LazyCommands`, so click's own ``list_commands`` (the names)
    and ``get_command`` (one lookup) import only the command asked for.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = LazyCommands(COMMANDS)
        self.commands = self.lazy_commands

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands section of ``hpo --help``, from the short helps, importing no command
        (click's own imports every one to read its help)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, self.lazy_commands.short_help(name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the root's own options; a usage error there is one line, exit 2."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise usage_error(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; bad input (click's usage errors too) exits 2 with one line, any
        other error 1, Ctrl-C 130."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise usage_error(exc) from exc
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt as exc:
            raise CommandInterrupted("interrupted") from exc
        except Exception as exc:
            if is_verbose(ctx):
                traceback.print_exc()
            error = BadInputError if isinstance(exc, bad_input_errors()) else CommandError
            raise error(_one_line(ctx, exc)) from exc


def _one_line(ctx: click.Context, exc: Exception) -> str:
    """What a command's error says: its message; for a table or column of ours missing (a
    database older than the code), the upgrade hint; for a database that cannot be reached,
    the URL (password masked) and the driver's first line instead of its three."""
    import storage

    url = storage_url(ctx.meta.get(STORAGE_META))
    older = storage.older_schema_message(exc, url)
    if older is not None:
        return older
    if storage.is_disconnect(exc):
        return storage.unreachable_message(exc, url)
    return str(exc) or type(exc).__name__


@click.group(
    cls=HpoGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=example("hpo demo", "hpo --version"),
)
@click.version_option(
    package_name="persona-hpo", prog_name="hpo", message="%(prog)s %(version)s (%(package)s)"
)
def cli() -> None:
    """Hyperparameter optimization of persona LoRA adapters: Optuna studies on SQL storage,
    trial workers with pruning, and full evaluation of the best trial."""


OPENMP_SPIN_COUNT = "1000"
"""``GOMP_SPINCOUNT`` for our processes, unless the environment sets one. torch's OpenMP threads
spin 300,000 times by default before they sleep; when the cores are shared (an evaluator beside
workers, other jobs), the spinning threads hold cores that the busy ones need. Measured on the
2-core machine, 200 replies of the tiny model with 2 threads: 0.5 s alone, 22 s beside two busy
processes; with 1,000 spins 0.6 s alone and 1.1 s beside them (BENCHMARKS.md)."""


STACKS_SIGNAL = "SIGUSR1"
"""``kill -USR1 PID`` makes any ``hpo`` process write every thread's stack to its standard
error (the worker's log under ``hpo launch``) and go on: what a hung worker is doing, without a
debugger (Python's :mod:`faulthandler`)."""


def _stacks_on_request() -> None:
    import faulthandler
    import signal

    number = getattr(signal, STACKS_SIGNAL, None)
    if number is None:  # not on Windows
        return
    # A standard error without a file descriptor (an embedding program's): no stacks.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        faulthandler.register(number, file=sys.stderr, all_threads=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hpo`` console script.

    Sets ``GOMP_SPINCOUNT`` (:data:`OPENMP_SPIN_COUNT`) before any command imports torch, so
    that workers, evaluators and the demo stay fast on shared cores.

    Args:
        argv: The arguments after ``hpo``; None reads ``sys.argv``.

    Returns:
        The exit code.
    """
    os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)
    _stacks_on_request()
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="hpo")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or EXIT_OK
        print(exc.code, file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
