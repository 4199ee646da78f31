"""Rank and error metrics between predicted and true objective values."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import stats


def _pair(pred: Any, true: Any, *, min_len: int = 1) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1) if np.ndim(pred) <= 1 else None
    t = np.asarray(true, dtype=np.float64).reshape(-1) if np.ndim(true) <= 1 else None
    if p is None or t is None:
        raise ValueError(f"pred and true must be 1-D, but got shapes {np.shape(pred)} and {np.shape(true)}.")
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} values but true has {t.size}; they must match one to one.")
    if p.size < min_len:
        raise ValueError(f"Need at least {min_len} (pred, true) pairs, but got {p.size}.")
    for name, a in (("pred", p), ("true", t)):
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name}[{i}] = {a[i]}; values must be finite.")
    return p, t


def kendall_tau(pred: Any, true: Any) -> float:
    """Kendall's tau-b between `pred` and `true` (NaN when either is constant)."""
    p, t = _pair(pred, true, min_len=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(p, t).statistic)


def spearman(pred: Any, true: Any) -> float:
    """Spearman's rank correlation between `pred` and `true` (NaN when either is constant)."""
    p, t = _pair(pred, true, min_len=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(p, t).statistic)


def mape(pred: Any, true: Any) -> float:
    """Mean absolute percentage error, in percent: ``100 * mean(|pred - true| / |true|)``.

    Raises:
        ValueError: a true value is 0 (the relative error is undefined).
    """
    p, t = _pair(pred, true)
    if (t == 0).any():
        i = int(np.argmax(t == 0))
        raise ValueError(f"true[{i}] = 0; MAPE needs non-zero true values.")
    return float(100.0 * np.mean(np.abs(p - t) / np.abs(t)))


def within_pct(pred: Any, true: Any, pct: float = 10.0) -> float:
    """Share (0..1) of predictions within ``+/- pct`` percent of the true value.

    Raises:
        ValueError: `pct` < 0, or a true value is 0.
    """
    if not pct >= 0:
        raise ValueError(f"`pct >= 0` must hold, but got {pct=}.")
    p, t = _pair(pred, true)
    if (t == 0).any():
        i = int(np.argmax(t == 0))
        raise ValueError(f"true[{i}] = 0; a relative error needs non-zero true values.")
    # A tiny tolerance so that an error of exactly pct percent counts as within.
    return float(np.mean(np.abs(p - t) <= np.abs(t) * pct / 100.0 * (1 + 1e-12)))


def rank_metrics(pred: Any, true: Any, *, pct: float = 10.0) -> dict[str, float]:
    """All metrics in one dict: ``kendall_tau``, ``spearman``, ``mape``, ``within_<pct>pct``.

    MAPE and the within share are NaN when some true value is 0.
    """
    p, t = _pair(pred, true, min_len=2)
    out = {"kendall_tau": kendall_tau(p, t), "spearman": spearman(p, t)}
    nonzero = bool((t != 0).all())
    out["mape"] = mape(p, t) if nonzero else float("nan")
    out[f"within_{pct:g}pct"] = within_pct(p, t, pct) if nonzero else float("nan")
    return out
