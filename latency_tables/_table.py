"""The latency table: per-device rows keyed by canonical op keys, with file and row round-trips.

A table belongs to one device. Rows live in partitions: the ``None`` partition holds entries that
apply at any input resolution (keys carry their shapes, so tables measured here use only this
one); a resolution partition holds entries measured for that input resolution only, as
Once-for-All ships one table per resolution (its classifier key, for instance, is the same at
every resolution but was measured 17 times). A lookup tries the arch's resolution first, then
``None``.

Files: ``.json`` and ``.yaml``/``.yml`` keep everything (metadata, overhead models, rows);
``.csv`` keeps the rows (``key,mean,std,count,p50,p90,min,resolution``). `to_rows` / `from_rows`
give plain dicts for databases (see `latency_tables._sql`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from latency_tables._keys import canonical_key

FORMAT = "hwnas-latency-table/1"
CSV_COLUMNS = ("key", "mean", "std", "count", "p50", "p90", "min", "resolution")
ROW_FIELDS = ("device", "resolution", "key", "count", "mean", "std", "p50", "p90", "min")
STATISTICS = ("mean", "p50", "min")
"""Entry fields an estimate can sum (a table's ``meta["statistic"]``, default ``mean``)."""


@dataclass(frozen=True)
class Entry:
    """Latency of one op in milliseconds: trimmed mean and std, median and 90th percentile over
    `count` timed calls, and the fastest call (`count`, `p50`, `p90`, `min` may be unknown for
    imported tables)."""

    mean: float
    std: float = 0.0
    count: int | None = None
    p50: float | None = None
    p90: float | None = None
    min: float | None = None

    def check(self, key: str) -> Entry:
        """Return self, or raise ValueError naming `key` and the bad value."""
        for name in ("mean", "std", "p50", "p90", "min"):
            v = getattr(self, name)
            if v is None and name in ("p50", "p90", "min"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"Entry {key!r}: `{name}` must be a finite number >= 0 (ms), but got {v!r}.")
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0
        ):
            raise ValueError(f"Entry {key!r}: `count` must be an integer >= 0, but got {self.count!r}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OverheadModel:
    """Whole-network latency from a plain table sum: ``a * sum_ms + b * n_ops + c`` (ms).

    Fitted by least squares on end-to-end measurements of `samples` random subnets (drawn with
    `seed`): it absorbs what block sums miss (glue between blocks, per-call runtime overhead
    counted once per op by the table, cache effects). `rmse_ms` is the fit's residual RMSE.
    """

    a: float
    b: float
    c: float
    samples: int = 0
    rmse_ms: float = 0.0
    seed: int | None = None

    def apply(self, plain_sum_ms: float, n_ops: int) -> float:
        return self.a * plain_sum_ms + self.b * n_ops + self.c

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OverheadModel:
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ValueError(
                f"Bad overhead model {dict(data)!r}: {exc}; fields: a, b, c, samples, rmse_ms, seed."
            ) from None


def _resolution(value: Any, where: str) -> int | None:
    """A partition from a row: None, "" and 0 mean "any resolution"."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: resolution must be a positive integer or empty, but got {value!r}.")
    return value or None


@dataclass
class LatencyTable:
    """Per-op latencies of one device.

    Attributes:
        device: Device name (see `list_devices`).
        meta: What the numbers mean: device configuration, software versions, protocol, source,
            the space(s) measured, timestamps; ``complete`` is False while a measurement runs.
        overhead: Overhead models by space name (see `OverheadModel`).

    Thread-safety: not thread-safe; share read-only or copy.
    """

    device: str
    meta: dict[str, Any] = field(default_factory=dict)
    overhead: dict[str, OverheadModel] = field(default_factory=dict)
    _parts: dict[int | None, dict[str, Entry]] = field(default_factory=dict, repr=False)

    # ----- entries -------------------------------------------------------------------------------
    def set(self, key: str, entry: Entry, resolution: int | None = None) -> str:
        """Store `entry` under the canonical form of `key`; returns that form.

        Raises:
            ValueError: a malformed or unknown key, or a bad entry (both named).
        """
        canon = canonical_key(key)
        self._parts.setdefault(resolution, {})[canon] = entry.check(canon)
        return canon

    def get(self, key: str, resolution: int | None = None) -> Entry:
        """The entry for `key` at `resolution` (its partition first, then the any-resolution one).

        Raises:
            KeyError: no such entry (the message names the key, device and resolution).
        """
        for part in (resolution, None) if resolution is not None else (None,):
            entries = self._parts.get(part)
            if entries is not None and key in entries:
                return entries[key]
        canon = canonical_key(key)
        if canon != key:
            return self.get(canon, resolution)
        at = f" at resolution {resolution}" if resolution is not None else ""
        raise KeyError(f"No entry for op key {key!r} in the {self.device!r} latency table{at}.")

    def peek(self, key: str, resolution: int | None = None) -> Entry | None:
        """The entry stored in exactly this partition under this exact (canonical) key, else None."""
        return self._parts.get(resolution, {}).get(key)

    def has(self, key: str, resolution: int | None = None) -> bool:
        try:
            self.get(key, resolution)
        except KeyError:
            return False
        return True

    def keys(self, resolution: int | None = None) -> list[str]:
        """Sorted keys of one partition."""
        return sorted(self._parts.get(resolution, {}))

    @property
    def resolutions(self) -> list[int | None]:
        """Partitions present (None first, then resolutions ascending)."""
        return sorted(self._parts, key=lambda r: -1 if r is None else r)

    def items(self) -> Iterator[tuple[int | None, str, Entry]]:
        """(resolution, key, entry) for every row, in a stable order."""
        for r in self.resolutions:
            for k in sorted(self._parts[r]):
                yield r, k, self._parts[r][k]

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts.values())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(key in p for p in self._parts.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyTable):
            return NotImplemented
        return (
            self.device == other.device
            and self.meta == other.meta
            and self.overhead == other.overhead
            and {r: p for r, p in self._parts.items() if p} == {r: p for r, p in other._parts.items() if p}
        )

    # ----- rows ----------------------------------------------------------------------------------
    def to_rows(self) -> list[dict[str, Any]]:
        """One plain dict per entry: device, resolution (None: any), key, count, mean, std, p50, p90, min."""
        return [
            {"device": self.device, "resolution": r, "key": k, **{f: getattr(e, f) for f in ROW_FIELDS[3:]}}
            for r, k, e in self.items()
        ]

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, Any]],
        device: str | None = None,
        meta: Mapping[str, Any] | None = None,
        overhead: Mapping[str, OverheadModel] | None = None,
    ) -> LatencyTable:
        """Inverse of `to_rows`; `device` defaults to the rows' (which must agree).

        Raises:
            ValueError: rows of several devices, a duplicate (resolution, key), a bad key or value.
        """
        devices = {r.get("device") for r in rows if r.get("device") is not None}
        if device is None:
            if len(devices) != 1:
                raise ValueError(
                    f"Rows name {len(devices)} devices ({sorted(map(str, devices))}); pass device=."
                )
            device = str(devices.pop())
        elif devices - {device}:
            raise ValueError(
                f"Rows name device(s) {sorted(map(str, devices - {device}))}, "
                f"but the table is for {device!r}."
            )
        table = cls(device, dict(meta or {}), dict(overhead or {}))
        for i, row in enumerate(rows):
            where = f"row {i}"
            res = _resolution(row.get("resolution"), where)
            key = canonical_key(str(row["key"]))
            if table.peek(key, res) is not None:
                raise ValueError(f"{where}: duplicate entry for op key {key!r} (resolution {res}).")
            table.set(key, _entry(row, where), res)
        return table

    # ----- dicts and files -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "device": self.device,
            "meta": self.meta,
            "overhead": {k: v.to_dict() for k, v in sorted(self.overhead.items())},
            "entries": [{k: v for k, v in row.items() if k != "device"} for row in self.to_rows()],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "table") -> LatencyTable:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"{source} is not a latency table: expected format {FORMAT!r}, but got {got!r}.")
        for name in ("device", "entries"):
            if name not in data:
                raise ValueError(f"{source}: missing field {name!r}.")
        overhead = {str(k): OverheadModel.from_dict(v) for k, v in (data.get("overhead") or {}).items()}
        entries = data["entries"]
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) and "key" in e for e in entries):
            raise ValueError(f"{source}: `entries` must be a list of objects with a `key`.")
        try:
            return cls.from_rows(entries, str(data["device"]), data.get("meta") or {}, overhead)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (a temporary file beside `path`, then a rename); format by suffix.

        Raises:
            ValueError: an unknown suffix (allowed: .json, .yaml, .yml, .csv).
        """
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"
        elif suffix in (".yaml", ".yml"):
            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        elif suffix == ".csv":
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for r, k, e in self.items():
                writer.writerow(
                    [
                        k,
                        repr(e.mean),
                        repr(e.std),
                        _blank(e.count),
                        _blank(e.p50),
                        _blank(e.p90),
                        _blank(e.min),
                        _blank(r),
                    ]
                )
            text = buf.getvalue()
        else:
            raise ValueError(
                f"Unknown table file type {p.suffix!r} for {str(p)!r}; allowed: .json, .yaml, .yml, .csv."
            )
        atomic_write(p, text)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | None = None) -> LatencyTable:
        """Read a file written by `save` (a CSV needs `device`; see also `import_csv`).

        Raises:
            FileNotFoundError: no such file. ValueError: malformed content (naming file and line).
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"No latency table file {str(p)!r}.")
        suffix = p.suffix.lower()
        text = p.read_text()
        if suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}: line {exc.lineno}: invalid JSON ({exc.msg}).") from None
        elif suffix in (".yaml", ".yml"):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = f"line {mark.line + 1}: " if mark is not None else ""
                raise ValueError(f"{p}: {line}invalid YAML ({getattr(exc, 'problem', exc)}).") from None
        elif suffix == ".csv":
            from latency_tables._importers import import_csv  # noqa: PLC0415

            if device is None:
                raise ValueError(f"{p}: a CSV table carries no device; pass the device name.")
            return import_csv(p, device)
        else:
            raise ValueError(
                f"Unknown table file type {p.suffix!r} for {str(p)!r}; allowed: .json, .yaml, .yml, .csv."
            )
        table = cls.from_dict(data, str(p))
        if device is not None and table.device != device:
            raise ValueError(f"{p} holds a table for device {table.device!r}, not {device!r}.")
        return table


def _blank(v: Any) -> str:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)


def _entry(row: Mapping[str, Any], where: str) -> Entry:
    def num(name: str, required: bool = False, integer: bool = False) -> Any:
        v = row.get(name)
        if v is None or v == "":
            if required:
                raise ValueError(f"{where}: missing `{name}` for op key {row.get('key')!r}.")
            return 0.0 if name == "std" else None
        if isinstance(v, str):
            try:
                v = int(v) if integer else float(v)
            except ValueError:
                kind = "an integer" if integer else "a number"
                raise ValueError(
                    f"{where}: `{name}` of op key {row.get('key')!r} must be {kind}, but got {v!r}."
                ) from None
        return v

    entry = Entry(
        num("mean", True), num("std"), num("count", integer=True), num("p50"), num("p90"), num("min")
    )
    try:
        return entry.check(str(row.get("key")))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
