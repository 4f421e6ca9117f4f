"""What every command shares: ``--storage``, ``--output-root``, ``-v/--verbose``, and the
example at the end of each command's help."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

STORAGE_ENV = "HPO_STORAGE"
OUTPUT_ROOT_ENV = "HPO_OUTPUT_ROOT"
VERBOSE_KEY = "hpo.verbose"
"""Key in ``click.Context.meta`` (shared by a command and its parent groups) set by -v."""
STUDY_EVALUATION = "[evaluation]"
"""Where the EvalConfig flags left alone take their values: the study config's section
(``--help`` shows ``[default: ([evaluation] or 2.0)]``)."""


def example(*commands: str) -> str:
    """The epilog of a command's help: its example command lines, kept unwrapped."""
    lines = "\n".join(f"  {command}" for command in commands)
    return f"\b\nExample:\n{lines}"


STORAGE_META = "hpo.storage"
"""Where ``--storage`` leaves its value in ``ctx.meta``, for the root group's error line."""


def _remember_storage(ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    ctx.meta[STORAGE_META] = value
    return value


def storage_option(f: F) -> F:
    """``--storage URL`` (env ``HPO_STORAGE``); None when neither is given."""
    return click.option(
        "--storage",
        envvar=STORAGE_ENV,
        default=None,
        metavar="URL",
        callback=_remember_storage,
        help=f"SQL storage URL of the study and our tables (env {STORAGE_ENV}; default "
        "sqlite:///hpo.db). Use postgresql+psycopg://user@host/db for many workers.",
    )(f)


def study_option(f: F) -> F:
    """``--study NAME`` (required), passed to the command as ``name``."""
    return click.option("--study", "name", required=True, metavar="NAME", help="study name")(f)


def patience_option(default: float, who: str) -> Callable[[F], F]:
    """``--patience SECONDS``: how long a database or artifact store outage is waited out
    before ``who`` (``"the evaluator"``) exits 1 naming it."""
    return click.option(
        "--patience",
        type=click.FloatRange(min=1),
        default=default,
        show_default=True,
        help="seconds a database or artifact store outage is waited out (retried with "
        f"backoff) before {who} exits 1 naming it",
    )


def output_root_option(default: Path = Path(".")) -> Callable[[F], F]:
    """``--output-root DIR`` (env ``HPO_OUTPUT_ROOT``): root of models/, logs/, results/, data/."""
    return click.option(
        "--output-root",
        envvar=OUTPUT_ROOT_ENV,
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        show_default=True,
        metavar="DIR",
        help=f"root of models/, logs/, results/, data/ (env {OUTPUT_ROOT_ENV})",
    )


def verbose_option(log_level: int = logging.WARNING) -> Callable[[F], F]:
    """``-v/--verbose``: log at INFO, keep library warnings, show tracebacks of errors.

    Args:
        log_level: The logging level without ``--verbose`` (the worker logs at INFO).
    """

    def configure(ctx: click.Context, param: click.Parameter, verbose: bool) -> bool:
        if verbose:
            ctx.meta[VERBOSE_KEY] = True
        else:
            # Library notices that say nothing to a user of this tool (API deprecations inside
            # transformers, Optuna features marked experimental that we rely on on purpose).
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
            warnings.filterwarnings("ignore", message=r".*(is experimental|experimental feature)")
            # Alembic logs seven "setup plugin ..." lines at INFO each time a process checks
            # the schema: the worst repeated block of the demo's worker logs (every worker and
            # every evaluator start), telling a user nothing. Its migrations still log.
            logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
        logging.basicConfig(
            level=logging.INFO if verbose else log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return verbose

    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=configure,
        help="log more; show the traceback of an error",
    )


def common_options(
    *, output_root: Path = Path("."), log_level: int = logging.WARNING
) -> Callable[[F], F]:
    """``--storage``, ``--output-root`` and ``-v`` on one command.

    Args:
        output_root: Default of ``--output-root`` when ``HPO_OUTPUT_ROOT`` is not set.
        log_level: The logging level without ``--verbose``.
    """

    def decorate(f: F) -> F:
        return storage_option(output_root_option(output_root)(verbose_option(log_level)(f)))

    return decorate


def storage_url(storage: str | None) -> str:
    """The URL a command uses: ``--storage``, else ``HPO_STORAGE``, else ``sqlite:///hpo.db``."""
    import storage as storage_package

    return storage or storage_package.default_storage_url()


def is_verbose(ctx: click.Context) -> bool:
    """Whether -v was given to the running command."""
    return bool(ctx.meta.get(VERBOSE_KEY))
