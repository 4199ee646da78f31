"""Importers for tables measured elsewhere: Once-for-All's YAML lookup tables and plain CSV.

Once-for-All ships one YAML file per input resolution (``160_lookup_table.yaml``), each a mapping
``key: {count, mean, std}`` in milliseconds; the resolution comes from the file name (or is given).
A plain CSV has the columns ``key, mean, std`` (header optional; ``count``, ``p50``, ``p90`` and
``resolution`` may follow). Every key is canonicalised; a malformed file, an unknown op, a bad
number or a repeated key raises ValueError naming the file and line.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from latency_tables._devices import get_device
from latency_tables._keys import canonical_key
from latency_tables._table import CSV_COLUMNS, Entry, LatencyTable, _entry, _resolution, atomic_write

_OFA_NAME = re.compile(r"^(\d+)_lookup_table\.ya?ml$")
_OFA_FIELDS = ("count", "mean", "std", "p50", "p90", "min")

PathLike = str | os.PathLike[str]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _ofa_files(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                (f for f in p.iterdir() if _OFA_NAME.match(f.name)),
                key=lambda f: int(_OFA_NAME.match(f.name)[1]),  # type: ignore[index]
            )
            if not found:
                raise FileNotFoundError(
                    f"No Once-for-All tables (R_lookup_table.yaml) in directory {str(p)!r}."
                )
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"No such file or directory: {str(p)!r}.")
    return files


def _base_meta(device: str, source: str, files: list[str]) -> dict[str, Any]:
    cfg = get_device(device)
    return {
        "device": cfg.to_dict(),
        "versions": dict(cfg.versions),  # what the registry records; the importing machine's are irrelevant
        "source": source,
        "files": files,
        "created": _now(),
        "complete": True,
    }


def import_ofa_yaml(
    paths: PathLike | Sequence[PathLike],
    device: str = "note10",
    *,
    resolution: int | None = None,
) -> LatencyTable:
    """Read Once-for-All lookup tables (files, or directories of ``R_lookup_table.yaml``).

    Args:
        paths: One file, several, or directories.
        device: Registered device the numbers were measured on.
        resolution: Partition for files whose name carries no resolution (default: from the name;
            a file without one goes to the any-resolution partition).

    Raises:
        KeyError: unknown device. FileNotFoundError: a missing path.
        ValueError: malformed YAML, a non-mapping, an unknown or malformed key, a bad or missing
            number, a repeated key: naming the file and line.
    """
    files = _ofa_files(paths)
    table = LatencyTable(device, _base_meta(device, "once-for-all yaml", [f.name for f in files]))
    for f in files:
        m = _OFA_NAME.match(f.name)
        res = int(m[1]) if m else resolution
        for line, key, entry in _read_ofa_yaml(f):
            if table.peek(key, res) is not None:
                raise ValueError(f"{f}: line {line}: op key {key!r} appears again for resolution {res}.")
            table.set(key, entry, res)
    return table


def _read_ofa_yaml(path: Path) -> list[tuple[int, str, Entry]]:
    text = path.read_text()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise ValueError(f"{path}: {line}malformed YAML ({getattr(exc, 'problem', None) or exc}).") from None
    if root is None:
        raise ValueError(f"{path}: empty file; expected a mapping of op keys to {{count, mean, std}}.")
    if not isinstance(root, yaml.MappingNode):
        raise ValueError(
            f"{path}: line {root.start_mark.line + 1}: expected a mapping of op keys to {{count, mean, std}}."
        )
    out: list[tuple[int, str, Entry]] = []
    seen: dict[str, int] = {}
    for knode, vnode in root.value:
        line = knode.start_mark.line + 1
        where = f"{path}: line {line}"
        if not isinstance(knode, yaml.ScalarNode):
            raise ValueError(f"{where}: an op key must be a plain string.")
        try:
            key = canonical_key(knode.value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if key in seen:
            raise ValueError(f"{where}: op key {key!r} appears again (first on line {seen[key]}).")
        seen[key] = line
        if not isinstance(vnode, yaml.MappingNode):
            raise ValueError(f"{where}: op key {key!r} must map to {{count, mean, std}}.")
        row: dict[str, Any] = {"key": key}
        for fk, fv in vnode.value:
            name = fk.value if isinstance(fk, yaml.ScalarNode) else None
            if name not in _OFA_FIELDS or not isinstance(fv, yaml.ScalarNode):
                raise ValueError(
                    f"{path}: line {fk.start_mark.line + 1}: unknown field {name!r} for op key {key!r}; "
                    f"allowed: {', '.join(_OFA_FIELDS)}."
                )
            row[name] = fv.value
        if "count" in row and isinstance(row["count"], str) and re.fullmatch(r"\d+\.0*", row["count"]):
            row["count"] = row["count"].split(".")[0]
        out.append((line, key, _entry(row, where)))
    return out


def import_csv(path: PathLike, device: str, *, resolution: int | None = None) -> LatencyTable:
    """Read a plain CSV of ``key, mean, std`` rows (ms).

    A header is recognised by a ``mean`` column; with one, columns go by name (``key`` may be
    ``op_key`` or ``op``; optional ``count``, ``p50``, ``p90``, ``min``, ``resolution``); without
    one, by position in the order ``key, mean, std, count, p50, p90, min, resolution``. Blank lines and lines
    starting with ``#`` are skipped.

    Raises:
        KeyError: unknown device. FileNotFoundError: no such file.
        ValueError: a missing column, a bad number, an unknown or malformed key, a repeated key:
            naming the file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"No such CSV file: {str(p)!r}.")
    table = LatencyTable(device, _base_meta(device, "csv", [p.name]))
    columns: list[str] | None = None
    seen: dict[tuple[int | None, str], int] = {}
    with p.open(newline="") as fh:
        for lineno, raw in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in raw]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            where = f"{p}: line {lineno}"
            if columns is None and any(c.lower() == "mean" for c in cells):
                columns = [{"op_key": "key", "op": "key"}.get(c.lower(), c.lower()) for c in cells]
                unknown = [c for c in columns if c not in CSV_COLUMNS]
                if unknown:
                    raise ValueError(
                        f"{where}: unknown column {unknown[0]!r}; allowed: {', '.join(CSV_COLUMNS)}."
                    )
                for need in ("key", "mean"):
                    if need not in columns:
                        raise ValueError(f"{where}: the header has no {need!r} column.")
                continue
            names = columns or list(CSV_COLUMNS)
            if len(cells) > len(names):
                raise ValueError(
                    f"{where}: {len(cells)} cells but only {len(names)} columns ({', '.join(names)})."
                )
            if len(cells) < (len(names) if columns else 2):
                raise ValueError(
                    f"{where}: expected the columns {', '.join(names)}, but got {len(cells)} cell(s)."
                )
            row = dict(zip(names, cells, strict=False))  # trailing optional columns may be absent
            try:
                key = canonical_key(row["key"])
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            row["key"] = key
            res = _resolution(row.get("resolution"), where)
            res = res if res is not None else resolution
            if (res, key) in seen:
                raise ValueError(f"{where}: op key {key!r} appears again (first on line {seen[(res, key)]}).")
            seen[(res, key)] = lineno
            table.set(key, _entry(row, where), res)
    if not len(table):
        raise ValueError(f"{p}: no rows; expected lines of 'key,mean,std'.")
    return table


def export_ofa_yaml(table: LatencyTable, path: PathLike, resolution: int | None = None) -> Path:
    """Write one partition in Once-for-All's YAML form (``key: {count, mean, std}``), plus the
    any-resolution entries when `resolution` is given, so OFA's own tools can read it."""
    rows: dict[str, dict[str, Any]] = {}
    for part in (None, resolution) if resolution is not None else (None,):
        for key in table.keys(part):
            e = table.get(key, part)
            rows[key] = {"count": e.count or 0, "mean": e.mean, "std": e.std}
    p = Path(path)
    atomic_write(p, yaml.safe_dump(rows, sort_keys=True))
    return p
