"""Data files the tests carry inside the repository (no test reads a path outside it)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
"""The tests' data folder; each dataset sits in a folder with its license note."""

SPC_CSV = DATA / "synthetic-persona-chat" / "Synthetic-Persona-Chat_valid.csv"
"""The Synthetic-Persona-Chat validation split (CC BY 4.0, see the README beside it)."""
