"""What a trial of ours records beyond Optuna's short attributes: its whole training config, its
adapter (path and sha256) and why it failed, as the study record ``trial:<N>`` in our
``study_records`` table.

``optuna trials`` and ``optuna best-trial`` print a trial's user attributes whole, in one row
of a table whose columns are as wide as their widest cell: with the train config, the adapter's
sha256 and a failure's message there, every row ran to 725-742 characters. The parameters (a
float of TPE's is 22 characters) and the value (``{'eval_loss': ...}``) take most of 300, so a
trial keeps only short attributes (worker, seed config, why it was pruned, a failure's error
type), which the dashboard and the CLI tables show, and these records hold the rest,
written before the trial is told, so a COMPLETE trial's adapter is on record when the
evaluator looks for it.

Trials finished before the records moved (their user attributes hold these keys) are read as
they are: :func:`trial_fields` lays the record over the trial's own attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import storage

RECORD_PREFIX = "trial:"
"""Study record ``trial:<N>`` (``storage.study_records``): trial N's long fields."""
TRAIN_CONFIG = "train_config"
"""The trial's whole ``TrainConfig`` as a dict."""
ADAPTER_PATH = "adapter_path"
"""The COMPLETE trial's adapter folder, relative to the output root."""
ADAPTER_SHA256 = "adapter_sha256"
"""The sha256 of that folder (``storage.directory_sha256``)."""
FAIL_REASON = "fail_reason"
"""A failed trial's error: its type and message, cut to :data:`FAIL_REASON_LENGTH`. The trial's
user attribute of that name holds the error's type alone (:func:`error_type`), which the
dashboard shows and a worker's clean stop reads (``hpo.workers.stop``)."""
TRAIN_SECONDS = "train_seconds"
"""Seconds the trial's training took."""
TRAIN_STEPS = "train_steps"
"""Optimizer steps the trial trained (what the study's step budget charged)."""
MEMORY_FIELDS = ("micro_batch_size", "gradient_accumulation_steps", "oom_retries")
"""How the trial's batch was split (``trainers.recipe.TrainResult``): after running out of
memory, a smaller micro-batch with the same effective batch, and how many times it halved."""
FIELDS = (
    TRAIN_CONFIG,
    ADAPTER_PATH,
    ADAPTER_SHA256,
    FAIL_REASON,
    TRAIN_SECONDS,
    TRAIN_STEPS,
    *MEMORY_FIELDS,
)
"""The fields kept here; trials finished before hold them as user attributes."""
FAIL_REASON_LENGTH = 500


def error_type(exc: BaseException) -> str:
    """What a failed trial's user attribute ``fail_reason`` says: the error's type."""
    return type(exc).__name__


def record_key(number: int) -> str:
    """The study record of trial ``number``."""
    return f"{RECORD_PREFIX}{number}"


def save_trial_fields(engine: Any, study_name: str, number: int, **fields: Any) -> None:
    """Add ``fields`` to trial ``number``'s record (the others it holds are kept).

    Only the worker that runs a trial writes its record, so reading and rewriting it in one
    transaction is exact.

    Raises:
        ValueError: A field that is none of :data:`FIELDS`.
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown trial record fields {unknown}; expected some of {FIELDS}")
    with storage.session_scope(engine) as session:
        found = storage.study_record(session, study_name, record_key(number))
        value = dict(found[0]) if found is not None and isinstance(found[0], dict) else {}
        value.update(fields)
        storage.save_study_record(session, study_name, record_key(number), value)


def trial_records(
    session: Any, study_name: str, numbers: Iterable[int] | None = None
) -> dict[int, dict[str, Any]]:
    """{trial number: its record} of the study's trials with one, only ``numbers`` where
    given (one query; none in a database without our tables)."""
    if not storage.has_study_records(session):
        return {}
    keys = None if numbers is None else {record_key(n) for n in numbers}
    found = storage.study_records(session, study_name, prefix=RECORD_PREFIX, keys=keys)
    return {
        int(key.removeprefix(RECORD_PREFIX)): value
        for key, value in found.items()
        if key.removeprefix(RECORD_PREFIX).isdigit() and isinstance(value, dict)
    }


def trial_fields(user_attrs: Mapping[str, Any], record: Mapping[str, Any] | None) -> dict[str, Any]:
    """A trial's long fields: its record laid over what its user attributes hold of
    :data:`FIELDS` (a trial finished before the records moved)."""
    legacy = {key: user_attrs[key] for key in FIELDS if key in user_attrs}
    return {**legacy, **(record or {})}


def records_of(
    engine: Any, study_name: str, numbers: Iterable[int] | None = None
) -> dict[int, dict[str, Any]]:
    """:func:`trial_records` in a session of its own."""
    with storage.session_scope(engine) as session:
        return trial_records(session, study_name, numbers)
