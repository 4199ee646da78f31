"""Where tables live: an explicit file, the user's ``$NAS_HOME/latency/``, or the shipped data."""

from __future__ import annotations

import os
from pathlib import Path

from latency_tables._table import LatencyTable

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Shipped tables: ``data/<device>/<space>.json`` (package data)."""


def nas_home() -> Path:
    """``$NAS_HOME`` (default ``./.nas``)."""
    return Path(os.environ.get("NAS_HOME", ".nas"))


def user_table_path(device: str, space: str) -> Path:
    """Where `nas latency measure` writes by default: ``$NAS_HOME/latency/<device>/<space>.json``."""
    return nas_home() / "latency" / device / f"{space}.json"


def shipped_table_path(device: str, space: str) -> Path:
    return DATA_DIR / device / f"{space}.json"


def list_shipped() -> list[tuple[str, str]]:
    """(device, space) of every shipped table."""
    if not DATA_DIR.is_dir():
        return []
    return sorted((d.name, f.stem) for d in DATA_DIR.iterdir() if d.is_dir() for f in d.glob("*.json"))


def find_table(device: str, space: str, path: str | os.PathLike[str] | None = None) -> LatencyTable:
    """Load the table for (`device`, `space`): `path` if given, else the user's, else the shipped one.

    Raises:
        FileNotFoundError: none exists (the message says how to measure or import one and lists
            the shipped tables). ValueError: a malformed file.
    """
    if path is not None:
        return LatencyTable.load(path)
    for candidate in (user_table_path(device, space), shipped_table_path(device, space)):
        if candidate.is_file():
            return LatencyTable.load(candidate, device)
    shipped = ", ".join(f"{d}/{s}" for d, s in list_shipped()) or "(none)"
    raise FileNotFoundError(
        f"No latency table for device {device!r} and space {space!r} "
        f"(looked in {user_table_path(device, space)} "
        f"and the shipped tables: {shipped}); measure one with `nas latency measure --device {device} "
        f"--space {space}`, import one with `nas latency import`, or pass --table."
    )
