"""Dataset file formats: one small base class, one module per format, a registry by name.

Each format reads a file into :class:`~trainers.dataset.Record` values;
:func:`trainers.data.load_dataset` does the rest (grouping, checks, split) the same for all.
"""

from __future__ import annotations

from trainers.formats._base import DatasetFormat, ParsedFile
from trainers.formats._convai2 import ConvAI2Format
from trainers.formats._jsonl import JsonlFormat
from trainers.formats._registry import FORMATS, detect_format, get_format
from trainers.formats._synthetic_persona_chat import SyntheticPersonaChatFormat

__all__ = [
    "FORMATS",
    "ConvAI2Format",
    "DatasetFormat",
    "JsonlFormat",
    "ParsedFile",
    "SyntheticPersonaChatFormat",
    "detect_format",
    "get_format",
]
