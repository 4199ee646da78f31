"""Estimating a subnet's latency from a table: the sum of its ops' entries, optionally corrected
by the device's fitted overhead model (plain sums drift from end-to-end latency, as nn-Meter and
HAT report: per-call runtime overhead, glue between blocks, cache effects)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from latency_tables._devices import DEVICES, get_device
from latency_tables._families import op_keys, resolution_of
from latency_tables._table import STATISTICS, LatencyTable, OverheadModel
from search_spaces import SearchSpace


class MissingOpKey(KeyError):
    """A subnet uses an op the table has no entry for (the message names the key)."""

    def __init__(self, key: str, device: str, resolution: int | None, space: str) -> None:
        self.key, self.device, self.resolution = key, device, resolution
        at = f" at resolution {resolution}" if resolution is not None else ""
        fix = "import a table that has it (`nas latency import`)"
        if device in DEVICES and get_device(device).measurable:
            fix = f"measure it with `nas latency measure --device {device} --space {space}` or {fix}"
        super().__init__(f"No entry for op key {key!r} in the {device!r} latency table{at}; {fix}.")

    def __str__(self) -> str:
        return str(self.args[0])


def table_statistic(table: LatencyTable) -> str:
    """The entry field a table's estimates sum: ``meta["statistic"]`` (default ``mean``)."""
    stat = table.meta.get("statistic") or "mean"
    if stat not in STATISTICS:
        raise ValueError(f"Table statistic {stat!r} is not one of {', '.join(STATISTICS)}.")
    return str(stat)


def breakdown(
    table: LatencyTable, space: SearchSpace, arch: Mapping[str, Any], stat: str | None = None
) -> list[tuple[str, float]]:
    """(op key, ms) per op of `arch`, in execution order.

    Args:
        stat: Entry field to read (default: the table's statistic, see `table_statistic`).

    Raises:
        MissingOpKey: the first key the table lacks. InvalidArch: a bad architecture.
        ValueError: an unknown statistic, or an entry without it.
    """
    stat = table_statistic(table) if stat is None else stat
    if stat not in STATISTICS:
        raise ValueError(f"Unknown statistic {stat!r}; allowed: {', '.join(STATISTICS)}.")
    r = resolution_of(space, arch)
    out = []
    for key in op_keys(space, arch):
        try:
            entry = table.get(key, r)
        except KeyError:
            raise MissingOpKey(key, table.device, r, space.name) from None
        value = getattr(entry, stat)
        if value is None:
            raise ValueError(
                f"Entry {key!r} has no {stat!r} value (imported tables may carry only the mean)."
            )
        out.append((key, value))
    return out


def estimate(
    table: LatencyTable,
    space: SearchSpace,
    arch: Mapping[str, Any],
    *,
    overhead: bool = True,
    stat: str | None = None,
) -> float:
    """Estimated latency of `arch` in ms.

    Args:
        overhead: Apply the table's overhead model for this space when it has one; with False (or
            without a model) the result is the plain sum of the ops' entries.
        stat: Entry field to sum (default: the table's statistic, ``mean`` unless the table says
            otherwise). The overhead model, fitted for the table's statistic, applies only to it.

    Raises:
        MissingOpKey: a key of `arch` has no entry. InvalidArch: a bad architecture.
    """
    own = table_statistic(table)
    parts = breakdown(table, space, arch, stat)
    total = 0.0
    for _, ms in parts:
        total += ms
    model = table.overhead.get(space.name) if overhead and (stat is None or stat == own) else None
    return model.apply(total, len(parts)) if model is not None else total


def missing_keys(
    table: LatencyTable, space: SearchSpace, keys_by_resolution: Mapping[int, Sequence[str]]
) -> list[str]:
    """Keys (per resolution) the table cannot answer."""
    return sorted({k for r, keys in keys_by_resolution.items() for k in keys if not table.has(k, r)})


def _loo_rmse(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out RMSE of a least-squares fit (closed form through the hat matrix)."""
    pinv = np.linalg.pinv(x)
    resid = y - x @ (pinv @ y)
    h = np.einsum("ij,ji->i", x, pinv)
    return float(np.sqrt(np.mean((resid / np.clip(1.0 - h, 1e-9, None)) ** 2)))


def fit_overhead_model(
    plain_sums: Sequence[float], n_ops: Sequence[int], measured: Sequence[float], seed: int | None = None
) -> OverheadModel:
    """Fit ``measured ~ a * plain_sum + b * n_ops + c`` by least squares.

    Sums and op counts are strongly correlated across subnets, so the op-count term is kept only
    when it lowers the leave-one-out error; otherwise ``b = 0``. One refit drops points whose
    residual exceeds 3 robust standard deviations (a network timed during a burst of load
    should not tilt the line).

    Raises:
        ValueError: fewer than 3 points, inputs of different lengths, or non-finite values.
    """
    s, n, y = (np.asarray(v, dtype=np.float64) for v in (plain_sums, n_ops, measured))
    if not (len(s) == len(n) == len(y)):
        raise ValueError(
            f"plain_sums, n_ops and measured must have equal lengths, but got {len(s)}, {len(n)}, {len(y)}."
        )
    if len(s) < 3:
        raise ValueError(f"An overhead model needs at least 3 whole-network measurements, but got {len(s)}.")
    if not (np.isfinite(s).all() and np.isfinite(n).all() and np.isfinite(y).all()):
        raise ValueError("Overhead-model inputs must be finite.")
    full = np.stack([s, n, np.ones_like(s)], axis=1)

    def fit(mask: np.ndarray) -> np.ndarray:
        xs, ys = full[mask], y[mask]
        small = xs[:, [0, 2]]
        use_n = len(ys) >= 5 and _loo_rmse(xs, ys) < _loo_rmse(small, ys)
        if use_n:
            return np.linalg.lstsq(xs, ys, rcond=None)[0]
        a, c = np.linalg.lstsq(small, ys, rcond=None)[0]
        return np.array([a, 0.0, c])

    keep = np.ones(len(s), dtype=bool)
    coef = fit(keep)
    resid = y - full @ coef
    mad = float(np.median(np.abs(resid - np.median(resid)))) * 1.4826
    refit = np.abs(resid) <= max(3 * mad, 1e-12)
    if 3 <= refit.sum() < len(s):
        keep = refit
        coef = fit(keep)
    rmse = float(np.sqrt(np.mean((y[keep] - full[keep] @ coef) ** 2)))
    return OverheadModel(float(coef[0]), float(coef[1]), float(coef[2]), int(len(s)), rmse, seed)
