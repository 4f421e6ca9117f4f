"""Errors raised by the storage package."""

from __future__ import annotations


class StorageError(RuntimeError):
    """A database operation failed; the message names the URL (password masked) or operation."""


class InvalidNameError(ValueError):
    """A study, run or file name that is unsafe to store or to use in a path."""


class NotFoundError(StorageError, LookupError):
    """A named dataset, clustering or cluster does not exist (bad input, not a failure)."""


class InvalidURLError(StorageError, ValueError):
    """A storage URL that cannot be parsed or names an unsupported backend (bad input)."""
