"""Where a study's config is stored: the document in our ``study_records`` table, a short
pointer in the study's user attributes.

``optuna studies`` and the dashboard print a study's user attributes whole; with the whole
config there (and every evaluation), one study's row ran to thousands of characters. A study
created now carries ``hpo_config_sha256``: the first :data:`POINTER_LENGTH` hex digits of the
sha256 of the config record (``storage.study_records``), written last at creation, so its
presence still marks a complete study. Studies created before keep the whole config in the
attribute ``hpo_config``, and are read as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import storage
from storage.optuna_schema import ReadSession

CONFIG_ATTR = "hpo_config"
"""Study user attribute that held the whole config as JSON, in studies created before the
config moved to ``study_records`` (read, never written)."""
CONFIG_REF_ATTR = "hpo_config_sha256"
"""Study user attribute: the leading hex digits of the config record's sha256."""
CONFIG_RECORD = "config"
"""Key of the study's config in ``study_records``."""
KIND_ATTR = "kind"
"""Study user attribute of a study of ours not made by ``hpo study create``: its kind."""
PERSONAS_KIND = "personas"
""":data:`KIND_ATTR` of a per-persona study (``<study>-personas``, :mod:`hpo.personas`): a
queue of one adapter per persona, whose values (each persona's own loss) have no best."""
SOURCE_ATTR = "source_study"
"""Study user attribute of a per-persona study: the tuned study it belongs to."""
POINTER_LENGTH = 16
"""Hex digits of a sha256 kept as the pointer: enough to tell two configs apart, short
enough for a one-line ``optuna studies``."""


def has_config(user_attrs: Mapping[str, Any]) -> bool:
    """Whether the study's attributes show a complete study (a config, either form)."""
    return CONFIG_REF_ATTR in user_attrs or CONFIG_ATTR in user_attrs


def save_config(session: ReadSession, study_name: str, config: Mapping[str, Any]) -> str:
    """Store the config record; returns the pointer to set as :data:`CONFIG_REF_ATTR`."""
    return storage.save_study_record(session, study_name, CONFIG_RECORD, dict(config))[
        :POINTER_LENGTH
    ]


def stored_config(
    session: ReadSession, study_name: str, user_attrs: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The study's stored config as a dict (either form), or None when it has none.

    Raises:
        storage.NotFoundError: The study points at a config record that is missing or is
            another one (the message names the study and the pointer).
    """
    pointer = user_attrs.get(CONFIG_REF_ATTR)
    if pointer is None:
        legacy = user_attrs.get(CONFIG_ATTR)
        return legacy if isinstance(legacy, dict) else None
    found = storage.study_record(session, study_name, CONFIG_RECORD)
    if found is None or not found[1].startswith(str(pointer)):
        raise storage.NotFoundError(
            f"study {study_name!r} points at config {pointer} but study_records holds "
            f"{'none' if found is None else found[1][:POINTER_LENGTH]}; the database was "
            "changed by hand: recreate the study"
        )
    value = found[0]
    return value if isinstance(value, dict) else None
