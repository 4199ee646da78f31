"""``nas demo``: the whole pipeline on embedded defaults, in minutes on a laptop CPU.

1. train a small mbv3_tiny supernet on scikit-learn's bundled digits (no download);
2. search accuracy (supernet with BN recalibration) vs latency from the shipped ``local-cpu``
   table, under a latency constraint, with the default sampler;
3. print the Pareto table and write a Pareto plot (PNG);
4. export the knee subnet (torch + ONNX bundle, verified against the supernet).

Everything goes under ``$NAS_HOME`` (default ``./.nas``): the run, the database, the plot and
the bundle. ``--quick`` is the CI-sized variant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DemoConfig", "home_dir", "knee_point", "pareto_plot", "search_spec", "train_spec"]


@dataclass(frozen=True)
class DemoConfig:
    epochs: int = 8
    trials: int = 60
    max_latency_ms: float = 2.5
    max_samples: int | None = None
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(epochs=2, trials=12, max_samples=600)


def train_spec(cfg: DemoConfig, home: Path) -> dict[str, Any]:
    """mbv3_tiny at its preset width and 16/20 px (keys the shipped local-cpu table covers)."""
    return {
        "name": "demo_mbv3_tiny_digits" + ("_quick" if cfg.max_samples else ""),
        "space": {"name": "mbv3_tiny", "overrides": {"resolutions": [16, 20]}},
        "data": {"kind": "digits", "val_fraction": 0.2, "seed": cfg.seed, "calib_size": 256,
                 **({"max_samples": cfg.max_samples} if cfg.max_samples else {})},
        "training": {"epochs": cfg.epochs, "batch_size": 64, "lr": 0.1, "warmup_epochs": 1,
                     "sandwich_n": 2, "distill": True, "bn_calib_batches": 4},
        "workers": 1,
        "output": str(home / "runs" / ("demo" + ("_quick" if cfg.max_samples else ""))),
        "seed": cfg.seed,
    }


def search_spec(cfg: DemoConfig, checkpoint: Path) -> dict[str, Any]:
    return {
        "name": "demo_search",
        "space": {"name": "mbv3_tiny", "overrides": {"resolutions": [16, 20]}},
        "evaluator": {"kind": "supernet", "checkpoint": str(checkpoint), "bn_calib_batches": 2},
        "objectives": [
            {"name": "accuracy", "direction": "maximize"},
            {"name": "latency_ms", "device": "local-cpu", "direction": "minimize"},
        ],
        "constraints": [{"name": "latency_ms", "device": "local-cpu", "max": cfg.max_latency_ms}],
        "metrics": [{"name": "macs", "direction": "minimize"}, {"name": "params", "direction": "minimize"}],
        "budget": {"trials": cfg.trials, "parallelism": 1, "seed": cfg.seed},
    }


def knee_point(points: np.ndarray) -> int:
    """Index of the knee of a 2-objective front (minimisation): the point farthest from the line
    through the two extremes, after min-max normalisation."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) <= 2:
        return 0
    span = np.where(np.ptp(pts, axis=0) > 0, np.ptp(pts, axis=0), 1.0)
    z = (pts - pts.min(axis=0)) / span
    a, b = z[np.argmin(z[:, 0])], z[np.argmin(z[:, 1])]
    d = b - a
    norm = float(np.hypot(*d)) or 1.0
    dist = np.abs(d[0] * (z[:, 1] - a[1]) - d[1] * (z[:, 0] - a[0])) / norm
    return int(np.argmax(dist))


def pareto_plot(rows: list[dict[str, Any]], front: list[dict[str, Any]], x: str, y: str, path: Path,
                title: str, knee: dict[str, Any] | None = None) -> Path:
    """Scatter of every trial (feasible and not) with the front drawn as a staircase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    feas = [r for r in rows if r["feasible"]]
    infeas = [r for r in rows if not r["feasible"]]
    ax.scatter([r[x] for r in feas], [r[y] for r in feas], s=14, c="tab:blue", alpha=0.5, label="feasible trials")
    if infeas:
        ax.scatter([r[x] for r in infeas], [r[y] for r in infeas], s=14, marker="x", c="tab:gray",
                   alpha=0.6, label="violates constraint")
    f = sorted(front, key=lambda r: r[x])
    ax.step([r[x] for r in f], [r[y] for r in f], where="post", c="tab:red", lw=1.5, label="Pareto front")
    ax.scatter([r[x] for r in f], [r[y] for r in f], s=30, c="tab:red", zorder=3)
    if knee is not None:
        ax.scatter([knee[x]], [knee[y]], s=120, facecolors="none", edgecolors="k", lw=1.5, zorder=4,
                   label=f"knee (trial {knee['number']})")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def home_dir() -> Path:
    return Path(os.environ.get("NAS_HOME", ".nas"))
