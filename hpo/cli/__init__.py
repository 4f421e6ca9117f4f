"""The ``hpo`` command line: a thin layer over the library functions.

Each command lives in the module of its group and owns its options and its action; this
module only builds the root group and registers them. A new command is one new module
plus one ``cli.add_command`` line below.

Exit codes (:mod:`hpo.cli.errors`): 0 success, 2 bad input (one line naming the value),
1 anything else, 130 interrupted.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
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
)
from hpo.cli.options import example, is_verbose

from . import (
    dashboard,
    data,
    db,
    demo,
    evaluate,
    evaluator,
    moe,
    personas,
    report,
    study,
    train,
    workers,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_OK", "cli", "main"]


class HpoGroup(click.Group):
    """The root group: turns what a command raises into an exit code and one line."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; bad input exits 2, any other error 1, Ctrl-C 130."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt as exc:
            raise CommandInterrupted("interrupted") from exc
        except Exception as exc:
            if is_verbose(ctx):
                traceback.print_exc()
            error = BadInputError if isinstance(exc, bad_input_errors()) else CommandError
            raise error(str(exc) or type(exc).__name__) from exc


@click.group(
    cls=HpoGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=example("hpo demo"),
)
def cli() -> None:
    """Hyperparameter optimization of persona LoRA adapters: Optuna studies on SQL storage,
    trial workers with pruning, and full evaluation of the best trial."""


cli.add_command(demo.demo)
cli.add_command(data.data)
cli.add_command(train.train)
cli.add_command(study.study)
cli.add_command(workers.worker)
cli.add_command(workers.launch)
cli.add_command(dashboard.dashboard)
cli.add_command(evaluate.evaluate)
cli.add_command(evaluator.evaluator)
cli.add_command(db.db)
cli.add_command(personas.personas)
cli.add_command(moe.moe)
cli.add_command(report.report)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hpo`` console script.

    Args:
        argv: The arguments after ``hpo``; None reads ``sys.argv``.

    Returns:
        The exit code.
    """
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="hpo")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or EXIT_OK
        print(exc.code, file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
