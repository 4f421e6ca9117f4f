"""Exit codes, and which errors are bad input.

0 success, 2 bad input, 1 anything else. Bad input is a click usage error (a flag's value,
raised where click or our code checks it; printed as one line like every error, see
:func:`usage_error`) or one of the few library errors that say the
user's input is wrong (:func:`bad_input_errors`); nothing is bad input by its base class alone
(a ``KeyError`` or ``ValueError`` from deep inside is a failure, exit 1).
"""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, as a shell reports a process stopped by Ctrl-C."""


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """The library errors that mean bad input: a file, a name, a URL or a config (imported
    when an error happens, so that ``hpo --help`` stays fast)."""
    from hpo.artifacts import ArtifactStoreError
    from hpo.study.config import ConfigError
    from hpo.study.creation import StudyConfigMismatch
    from hpo.workers.worker import OutputRootError
    from storage import DatasetExistsError, InvalidNameError, InvalidURLError, NotFoundError
    from trainers.adapter_check import AdapterError
    from trainers.clustering import ClusteringError
    from trainers.data import DatasetError
    from trainers.input_file import InputFileError

    return (
        DatasetError,
        InputFileError,
        AdapterError,
        ArtifactStoreError,
        DatasetExistsError,
        ClusteringError,
        ConfigError,
        StudyConfigMismatch,
        OutputRootError,
        InvalidNameError,
        InvalidURLError,
        NotFoundError,
    )


class CommandError(click.ClickException):
    """A command failed: one line ``hpo: error: ...`` on stderr, exit code 1."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()) or "failed")

    def show(self, file: object = None) -> None:
        """Print the one line to stderr."""
        click.echo(f"hpo: error: {self.format_message()}", err=True)


class BadInputError(CommandError):
    """The input was wrong (a file, a name, a URL, a config): exit code 2."""

    exit_code = EXIT_BAD_INPUT


def usage_error(exc: click.UsageError) -> BadInputError:
    """Click's usage error (a bad option value, a missing argument, an unknown option) as one
    line naming the command's help, instead of click's usage block, hint and message."""
    where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return BadInputError(f"{exc.format_message()}{where}")


class CommandInterrupted(CommandError):
    """Ctrl-C: exit code 130."""

    exit_code = EXIT_INTERRUPTED
