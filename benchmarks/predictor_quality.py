"""Accuracy predictors and zero-cost proxies on NAS-Bench-201 (CIFAR-10 validation accuracy, 12 epochs).

For each seed, draw a random permutation of the 15,625 cells; train every registered predictor
on the first 50, 100 and 200 cells (``space.encode`` one-hot features) and report Kendall's tau
between predicted means and true accuracies on *all* the remaining cells. Headline: the median
over seeds of the best predictor's tau at 200 (target >= 0.75).

Zero-cost proxies need no training data but cost about a second per cell on one CPU thread, so
each seed scores a random subset of the held-out cells (100; 20 with --quick) with freshly
initialised extracted subnets on a seeded synthetic batch (64 standard-normal 32x32 images with
random labels: no CIFAR images ship with the project), and reports tau on that subset.

Predictor hyper-parameters are the library defaults, fixed before this benchmark was run; the
default predictor (`predictors.DEFAULT_PREDICTOR`) is the one with the best median tau at 200 here.

    python benchmarks/predictor_quality.py [--quick] [--data DIR] [--seeds 5]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from _report import Report  # noqa: E402

import predictors as pr  # noqa: E402
import search_spaces as ss  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nb201_12epoch"
TARGET_COLUMN = "cifar10-val"
TAU_TARGET = ">=0.75"


def load_nb201(data_dir: Path) -> tuple[list[str], np.ndarray]:
    path = data_dir / "nb201_12epoch_acc.csv" if data_dir.is_dir() else data_dir
    if not path.is_file():
        sys.exit(f"NAS-Bench-201 accuracy table not found at {path}; pass --data DIR.")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["arch"] for r in rows], np.array([float(r[TARGET_COLUMN]) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="reduced run (about a minute), for CI smoke tests"
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="directory with nb201_12epoch_acc.csv"
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5; 1 with --quick)")
    parser.add_argument("--proxy-archs", type=int, default=None, help="cells scored by proxies per seed")
    args = parser.parse_args()
    torch.set_num_threads(1)

    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 5)))
    sizes = [50, 200] if args.quick else [50, 100, 200]
    n_proxy = args.proxy_archs if args.proxy_archs is not None else (20 if args.quick else 100)
    report = Report("predictor_quality", quick=args.quick)

    space = ss.get_space("nb201")
    strings, acc = load_nb201(args.data)
    archs = [space.from_str(s) for s in strings]
    X = np.stack([space.encode(a) for a in archs]).astype(np.float64)
    print(f"# {len(archs)} cells, encoding length {X.shape[1]}, seeds {seeds}, sizes {sizes}", flush=True)

    names = pr.list_predictors()
    taus: dict[str, dict[int, list[float]]] = {n: {k: [] for k in sizes} for n in names}
    fit_seconds: dict[str, list[float]] = {n: [] for n in names}
    proxy_taus: dict[str, list[float]] = {p: [] for p in pr.list_proxies()}
    supernet = space.build_supernet()
    for seed in seeds:
        perm = np.random.default_rng(seed).permutation(len(archs))
        for n in sizes:
            train, test = perm[:n], perm[n:]
            for name in names:
                t0 = time.perf_counter()
                model = pr.create_predictor(name, seed=seed).fit(X[train], acc[train])
                fit_seconds[name].append(time.perf_counter() - t0)
                tau = pr.kendall_tau(model.predict(X[test]).mean, acc[test])
                taus[name][n].append(tau)
                print(
                    f"seed {seed} n={n:<4d} {name:<14s} tau {tau:.3f} ({fit_seconds[name][-1]:.1f} s)",
                    flush=True,
                )
        # Proxies: fresh weights (seeded) on a seeded synthetic batch, on held-out cells.
        subset = perm[max(sizes) : max(sizes) + n_proxy]
        batch = pr.synthetic_batch(space.input_shape(archs[0]), batch_size=64, seed=seed)
        scores: dict[str, list[float]] = {p: [] for p in proxy_taus}
        t0 = time.perf_counter()
        for i in subset:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = supernet.extract(archs[i])
                for layer in net.modules():  # re-draw every weight from the seed, like a fresh network
                    if hasattr(layer, "reset_parameters"):
                        layer.reset_parameters()
            for p in scores:
                scores[p].append(pr.compute_proxy(p, net, batch, seed=seed))
        for p, vals in scores.items():
            vals_arr = np.nan_to_num(
                np.asarray(vals), nan=-np.inf, posinf=np.finfo(float).max, neginf=-np.finfo(float).max
            )
            proxy_taus[p].append(pr.kendall_tau(vals_arr, acc[subset]))
        print(
            f"seed {seed} proxies on {len(subset)} cells ({time.perf_counter() - t0:.0f} s): "
            + ", ".join(f"{p} {proxy_taus[p][-1]:.3f}" for p in proxy_taus),
            flush=True,
        )

    med = {name: {n: statistics.median(taus[name][n]) for n in sizes} for name in names}
    for name in names:
        for n in sizes:
            report.result(f"nb201_tau[{name}@{n}]", med[name][n])
    for p, vals in proxy_taus.items():
        report.result(f"nb201_tau[proxy:{p}]", statistics.median(vals))
    best = max(names, key=lambda nm: med[nm][max(sizes)])
    report.data.update(
        {
            "target_column": TARGET_COLUMN,
            "seeds": seeds,
            "sizes": sizes,
            "proxy_archs_per_seed": n_proxy,
            "tau_per_seed": taus,
            "tau_median": med,
            "proxy_tau_per_seed": proxy_taus,
            "fit_seconds_median": {nm: statistics.median(v) for nm, v in fit_seconds.items()},
            "best_predictor": best,
        }
    )
    report.result(f"nb201_best_tau@{max(sizes)}[{best}]", med[best][max(sizes)], TAU_TARGET)
    print(f"# results written to {report.write()}")


if __name__ == "__main__":
    main()
