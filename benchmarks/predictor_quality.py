"""Accuracy predictors and zero-cost proxies on NAS-Bench-201 (CIFAR-10 validation accuracy, 12 epochs).

For each seed, draw a random permutation of the 15,625 cells; train every registered predictor
on the first 50, 100 and 200 cells and report Kendall's tau between predicted means and true
accuracies on *all* the remaining cells. Each predictor is a row twice: on ``space.encode``
(one-hot per edge; rows named ``<predictor>``) and on ``space.features`` (structural features
of the live cell, `predictors.space_features`; rows named ``<predictor>+features``). Headline:
the median over seeds of the best row's tau at 200 (target >= 0.75). Also recorded: tau at 200
on the held-out cells whose output is reachable (the 2% disconnected cells all score chance
accuracy, 9.71%, and are easy to rank last).

Zero-cost proxies need no training data but cost about a second per cell on one CPU thread, so
each seed scores a random subset of the held-out cells (100; 20 with --quick) with freshly
initialised extracted subnets on a seeded synthetic batch (64 standard-normal 32x32 images with
random labels: no CIFAR images ship with the project), and reports tau on that subset. Their
figures do not depend on the predictors, so ``--parts predictors --proxy-results FILE`` copies
them from an earlier run's JSON (recorded as ``proxy_results_from``) instead of recomputing.

Predictor hyper-parameters are the library defaults. The NB201 features (`NB201Space.features`)
and ``gp_ard`` were designed with exploratory runs on this same table (3 seeds, 4,000 held-out
cells), so those rows are not blind to design choices; no predictor sees held-out labels. The
defaults `predictors.DEFAULT_PREDICTOR` (one-hot encodings) and
`predictors.DEFAULT_FEATURES_PREDICTOR` (structural features) are the best rows of each kind here.

    python benchmarks/predictor_quality.py [--quick] [--data DIR] [--seeds 5] [--parts predictors,proxies]
"""

from __future__ import annotations

import argparse
import csv
import json
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
FEATURE_SETS = {"": "encoding", "+features": "features"}
"""Row-name suffix -> `predictors.arch_features` feature set."""


def load_nb201(data_dir: Path) -> tuple[list[str], np.ndarray]:
    path = data_dir / "nb201_12epoch_acc.csv" if data_dir.is_dir() else data_dir
    if not path.is_file():
        sys.exit(f"NAS-Bench-201 accuracy table not found at {path}; pass --data DIR.")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["arch"] for r in rows], np.array([float(r[TARGET_COLUMN]) for r in rows])


def run_predictors(
    rows: dict[str, tuple[str, str]],
    Xs: dict[str, np.ndarray],
    acc: np.ndarray,
    connected: np.ndarray,
    seeds: list[int],
    sizes: list[int],
) -> tuple[dict[str, dict[int, list[float]]], dict[str, list[float]], dict[str, list[float]]]:
    """Per row (name -> (predictor, feature set)): tau per size and seed, fit seconds, and tau at
    the largest size on connected held-out cells only."""
    taus: dict[str, dict[int, list[float]]] = {r: {k: [] for k in sizes} for r in rows}
    fit_seconds: dict[str, list[float]] = {r: [] for r in rows}
    tau_connected: dict[str, list[float]] = {r: [] for r in rows}
    for seed in seeds:
        perm = np.random.default_rng(seed).permutation(len(acc))
        for n in sizes:
            train, test = perm[:n], perm[n:]
            for row, (name, feats) in rows.items():
                X = Xs[feats]
                t0 = time.perf_counter()
                model = pr.create_predictor(name, seed=seed).fit(X[train], acc[train])
                fit_seconds[row].append(time.perf_counter() - t0)
                mean = model.predict(X[test]).mean
                taus[row][n].append(pr.kendall_tau(mean, acc[test]))
                if n == max(sizes):
                    live = connected[test]
                    tau_connected[row].append(pr.kendall_tau(mean[live], acc[test][live]))
                print(
                    f"seed {seed} n={n:<4d} {row:<24s} tau {taus[row][n][-1]:.3f} "
                    f"({fit_seconds[row][-1]:.1f} s)",
                    flush=True,
                )
    return taus, fit_seconds, tau_connected


def run_proxies(
    space: ss.SearchSpace, archs: list[dict], acc: np.ndarray, seeds: list[int], n_train: int, n_proxy: int
) -> dict[str, list[float]]:
    """Per proxy, per seed: tau on `n_proxy` held-out cells (fresh seeded weights, synthetic batch)."""
    proxy_taus: dict[str, list[float]] = {p: [] for p in pr.list_proxies()}
    supernet = space.build_supernet()
    for seed in seeds:
        perm = np.random.default_rng(seed).permutation(len(archs))
        subset = perm[n_train : n_train + n_proxy]
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
    return proxy_taus


def reuse_proxies(path: Path, seeds: list[int], n_proxy: int) -> dict[str, list[float]]:
    """Proxy taus of an earlier ``--parts proxies`` run; they do not depend on the predictors."""
    data = json.loads(path.read_text())["data"]
    if data["seeds"] != seeds or data["proxy_archs_per_seed"] != n_proxy:
        sys.exit(
            f"{path} was run with seeds {data['seeds']} and {data['proxy_archs_per_seed']} cells per seed; "
            f"this run needs {seeds} and {n_proxy}."
        )
    return {p: list(v) for p, v in data["proxy_tau_per_seed"].items()}


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
    parser.add_argument(
        "--parts",
        type=lambda v: set(v.split(",")),
        default={"predictors", "proxies"},
        help="comma-separated subset of 'predictors,proxies' to run (default both)",
    )
    parser.add_argument(
        "--proxy-results",
        type=Path,
        default=None,
        help="with --parts predictors: copy proxy taus from this earlier proxies run (same seeds)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 5)))
    sizes = [50, 200] if args.quick else [50, 100, 200]
    n_proxy = args.proxy_archs if args.proxy_archs is not None else (20 if args.quick else 100)
    if not args.parts or not args.parts <= {"predictors", "proxies"}:
        sys.exit(f"--parts must be a comma-separated subset of predictors,proxies; got {sorted(args.parts)}.")
    if args.proxy_results is not None and "proxies" in args.parts:
        sys.exit("--proxy-results replaces computing the proxies; use it with --parts predictors.")
    if args.parts == {"predictors", "proxies"} or args.proxy_results is not None:
        report = Report("predictor_quality", quick=args.quick)
    else:
        report = Report(f"predictor_quality.{next(iter(args.parts))}", quick=args.quick)

    space = ss.get_space("nb201")
    strings, acc = load_nb201(args.data)
    archs = [space.from_str(s) for s in strings]
    Xs = {feats: pr.arch_features(space, archs, feats) for feats in FEATURE_SETS.values()}
    connected = Xs["features"][:, space.feature_names().index("disconnected")] == 0
    print(
        f"# {len(archs)} cells ({(~connected).sum()} disconnected, accuracy "
        f"{np.unique(acc[~connected])}), feature lengths { {k: v.shape[1] for k, v in Xs.items()} }, "
        f"seeds {seeds}, sizes {sizes}",
        flush=True,
    )

    rows = {
        f"{name}{suffix}": (name, feats)
        for suffix, feats in FEATURE_SETS.items()
        for name in (pr.list_predictors() if "predictors" in args.parts else [])
    }
    names = list(rows)
    proxy_taus: dict[str, list[float]] = {}
    if args.proxy_results is not None:  # read first: fail before the long run
        proxy_taus = reuse_proxies(args.proxy_results, seeds, n_proxy)
    taus, fit_seconds, tau_connected = run_predictors(rows, Xs, acc, connected, seeds, sizes)
    if "proxies" in args.parts:
        proxy_taus = run_proxies(space, archs, acc, seeds, max(sizes), n_proxy)

    med = {name: {n: statistics.median(taus[name][n]) for n in sizes} for name in names}
    for name in names:
        for n in sizes:
            report.result(f"nb201_tau[{name}@{n}]", med[name][n])
    for p, vals in proxy_taus.items():
        report.result(f"nb201_tau[proxy:{p}]", statistics.median(vals))
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
            "tau_connected_per_seed": tau_connected,
            "tau_connected_median": {nm: statistics.median(v) for nm, v in tau_connected.items() if v},
            "proxy_results_from": str(args.proxy_results) if args.proxy_results else None,
        }
    )
    if names:
        best = max(names, key=lambda nm: med[nm][max(sizes)])
        report.data["best_predictor"] = best
        report.result(
            f"nb201_tau_connected@{max(sizes)}[{best}]", statistics.median(tau_connected[best])
        )
        report.result(f"nb201_best_tau@{max(sizes)}[{best}]", med[best][max(sizes)], TAU_TARGET)
    print(f"# results written to {report.write()}")


if __name__ == "__main__":
    main()
