"""The built-in check of table estimates against the device: time random subnets end to end and
compare (nn-Meter's headline figure is the share of networks predicted within +/-10%)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latency_tables._devices import DeviceCfg, Protocol, get_runtime
from latency_tables._estimate import estimate, table_statistic
from latency_tables._measure import ProgressFn, _device, _table_protocol, measure_networks, sample_archs
from latency_tables._table import STATISTICS, LatencyTable
from search_spaces import SearchSpace

WITHIN_TARGET = 0.95
TAU_TARGET = 0.9


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b (ties in either ranking are accounted for); nan for fewer than 2 points."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same length, but got {a.size} and {b.size}.")
    if a.size < 2:
        return float("nan")
    iu = np.triu_indices(a.size, k=1)
    da, db = np.sign(a[:, None] - a[None, :])[iu], np.sign(b[:, None] - b[None, :])[iu]
    n0 = float(da.size)
    denom = math.sqrt((n0 - float((da == 0).sum())) * (n0 - float((db == 0).sum())))
    return float((da * db).sum() / denom) if denom > 0 else float("nan")


def error_metrics(
    predicted: Sequence[float], measured: Sequence[float], pct: float = 10.0
) -> dict[str, float]:
    """Share within +/-`pct`% of measured, MAPE (a fraction), RMSE (ms) and Kendall tau."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if p.shape != m.shape or p.size == 0:
        raise ValueError(
            f"predicted and measured must be non-empty and equally long, got {p.size} and {m.size}."
        )
    rel = np.abs(p - m) / m
    return {
        "within": float((rel <= pct / 100.0).mean()),
        "mape": float(rel.mean()),
        "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
        "kendall_tau": kendall_tau(p, m),
    }


def result_line(figure: str, value: float, target: str | None = None) -> str:
    """``RESULT <figure> <value> [target <op><value> PASS|MISS]`` as in benchmarks/_report.py."""
    line = f"RESULT {figure} {value:.3f}"
    if target is not None:
        op = ">=" if target.startswith(">=") else "<="
        ok = value >= float(target[2:]) if op == ">=" else value <= float(target[2:])
        line += f" target {target} {'PASS' if ok else 'MISS'}"
    return line


@dataclass(frozen=True)
class ValidationReport:
    """Estimated vs measured end-to-end latency of random subnets (ms).

    `statistic` is the table's (see `table_statistic`): estimates sum that entry field and each
    network is summarised by the same statistic of its timed calls. `predicted` uses the table's
    overhead model for the space when it has one; `plain` is the plain sum of entries. Metrics
    are for `predicted`; `plain_metrics` for `plain`; `by_statistic` holds plain-sum metrics for
    every statistic the entries carry (same timings, other summaries).
    """

    device: str
    space: str
    archs: list[dict[str, Any]]
    predicted: list[float]
    plain: list[float]
    measured: list[float]
    has_overhead: bool
    metrics: dict[str, float]
    plain_metrics: dict[str, float]
    statistic: str = "mean"
    by_statistic: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.device}/{self.space}"

    def results(self) -> list[tuple[str, float, str | None]]:
        """(figure, value, target) of the headline figures."""
        m, label = self.metrics, self.label
        return [
            (f"lut_within_10pct[{label}]", m["within"], f">={WITHIN_TARGET}"),
            (f"lut_kendall_tau[{label}]", m["kendall_tau"], f">={TAU_TARGET}"),
            (f"lut_mape[{label}]", m["mape"], None),
            (f"lut_rmse_ms[{label}]", m["rmse_ms"], None),
            (f"lut_within_10pct_plain_sum[{label}]", self.plain_metrics["within"], None),
            *(
                (f"lut_within_10pct_plain_sum_{stat}[{label}]", m2["within"], None)
                for stat, m2 in self.by_statistic.items()
                if stat != self.statistic
            ),
        ]

    def result_lines(self) -> list[str]:
        return [result_line(*r) for r in self.results()]

    @property
    def passed(self) -> bool:
        return self.metrics["within"] >= WITHIN_TARGET and self.metrics["kendall_tau"] >= TAU_TARGET

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate(
    table: LatencyTable,
    space: SearchSpace,
    device: str | DeviceCfg | None = None,
    *,
    samples: int = 100,
    seed: int = 0,
    protocol: Protocol | None = None,
    plot: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> ValidationReport:
    """Time `samples` random subnets of `space` end to end on `device` and compare with the
    table's estimates.

    Args:
        device: Where to measure (default: the table's device).
        seed: Which subnets (keep it apart from the overhead model's fitting seed).
        protocol: Timing protocol (default: the one the table was measured with).
        plot: Write a predicted-vs-measured PNG here.

    Raises:
        MissingOpKey: the table lacks a key a sampled subnet needs (checked before timing).
        ValueError: a device that cannot be measured here, or `samples` < 2.
    """
    if samples < 2:
        raise ValueError(f"`samples >= 2` must hold (rank correlation needs pairs), but got {samples}.")
    cfg = _device(device if device is not None else table.device)
    get_runtime(cfg)  # refuse a device that cannot be measured here before anything else
    archs = sample_archs(space, samples, seed)
    predicted = [estimate(table, space, a) for a in archs]
    plain = [estimate(table, space, a, overhead=False) for a in archs]
    stats = measure_networks(
        space, archs, cfg, protocol=protocol or _table_protocol(table), seed=seed, progress=progress
    )
    stat = table_statistic(table)
    measured = [getattr(s, stat) for s in stats]
    by_stat = {}
    for other in STATISTICS:
        try:
            sums = [estimate(table, space, a, overhead=False, stat=other) for a in archs]
        except ValueError:  # entries without this statistic (imported tables)
            continue
        by_stat[other] = error_metrics(sums, [getattr(s, other) for s in stats])
    report = ValidationReport(
        cfg.name,
        space.name,
        archs,
        predicted,
        plain,
        measured,
        space.name in table.overhead,
        error_metrics(predicted, measured),
        error_metrics(plain, measured),
        stat,
        by_stat,
    )
    if plot is not None:
        plot_report(report, plot)
    return report


def plot_report(report: ValidationReport, path: str | Path) -> Path:
    """Predicted vs measured scatter with the y = x line and the +/-10% band (PNG)."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise ImportError("Plots need matplotlib: `pip install matplotlib`.") from None
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    m = np.asarray(report.measured)
    lo, hi = (
        float(min(m.min(), min(report.predicted), min(report.plain))) * 0.9,
        float(max(m.max(), max(report.predicted), max(report.plain))) * 1.1,
    )
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=120)
    xs = np.linspace(lo, hi, 50)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.88", label="±10%")
    ax.plot(xs, xs, color="0.4", lw=1)
    if report.has_overhead:
        ax.scatter(
            m, report.plain, s=10, marker="x", color="tab:orange", alpha=0.6, label="plain sum of entries"
        )
    ax.scatter(
        m,
        report.predicted,
        s=12,
        color="tab:blue",
        label="estimate" + (" (overhead model)" if report.has_overhead else ""),
    )
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"measured end-to-end latency, {report.statistic} of timed calls (ms)")
    ax.set_ylabel("estimated latency (ms)")
    mt = report.metrics
    ax.set_title(
        f"{report.label}: n={len(m)}, within ±10% {mt['within']:.0%}\n"
        f"Kendall τ {mt['kendall_tau']:.3f}, MAPE {mt['mape']:.1%}, RMSE {mt['rmse_ms']:.3f} ms",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(p, format="png")
    plt.close(fig)
    return p
