"""Search quality on tabular benchmarks with known Pareto fronts (issue 5, acceptance 1).

Problems (NAS-Bench-201, all 15,625 cells, real data): maximise the 12-epoch CIFAR-10 validation
accuracy (``../shared/data/nb201_12epoch``) and minimise either the latency estimated from the
shipped ``local-cpu`` table (measured on this project's machine) or the MACs. Both fronts are known
exactly by enumerating every cell.

Methods, run side by side in this process with the same objective function and the same budget
rule (the budget counts distinct architectures evaluated; a repeated proposal is answered from the
cache and costs nothing, for every method, up to 4 proposals per evaluation of budget): the project's samplers through
`nas.search.create_sampler` (the default, ``predictor``, exploits the fact that latency and MACs
are free: it evaluates only the accuracy), and Optuna's own RandomSampler, NSGAIISampler and
TPESampler used directly. Figure: hypervolume of the found front / hypervolume of the true front
(objectives min-max normalised over all cells, reference point at the worst corner), median over
seeds, after 100 and 300 evaluations (and NSGA-II after 1,000).

Targets: the default at 300 reaches NSGA-II's median at 1,000, and is never below a peer at equal
budget.

    python benchmarks/search_quality.py [--quick] [--seeds 5]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import Report  # noqa: E402

import latency_tables as lt  # noqa: E402
import search_spaces as ss  # noqa: E402
from nas.search._metrics import MetricDef  # noqa: E402
from nas.search._pareto import hypervolume, pareto_mask  # noqa: E402
from nas.search._samplers import SamplerContext, create_sampler, search_distributions  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_12epoch" / "nb201_12epoch_acc.csv"


def load_problem(second: str) -> tuple[ss.SearchSpace, dict[str, dict[str, float]], np.ndarray]:
    """(space, {arch_id: {accuracy, latency_ms@local-cpu | macs}}, normalised true front)."""
    space = ss.get_space("nb201")
    table = lt.find_table("local-cpu", "nb201")
    rows: dict[str, dict[str, float]] = {}
    with DATA.open(newline="") as fh:
        for row in csv.DictReader(fh):
            arch = space.from_str(row["arch"])
            second_value = (
                lt.estimate(table, space, arch) if second == "latency_ms@local-cpu" else float(space.cost(arch)["macs"])
            )
            rows[space.arch_id(arch)] = {"accuracy": float(row["cifar10-val"]), second: float(second_value)}
    return space, rows, np.array([[v["accuracy"], v[second]] for v in rows.values()])


class Normaliser:
    """Min-max normalisation to minimisation in [0, 1]; reference point (1, 1)."""

    def __init__(self, all_points: np.ndarray) -> None:
        self.lo, self.hi = all_points.min(axis=0), all_points.max(axis=0)

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        z = (np.asarray(pts, dtype=np.float64) - self.lo) / (self.hi - self.lo)
        z[:, 0] = 1.0 - z[:, 0]  # accuracy is maximised
        return z


def run_method(
    make_sampler: Callable[[SamplerContext], optuna.samplers.BaseSampler],
    space: ss.SearchSpace,
    rows: dict[str, dict[str, float]],
    second: str,
    budget: int,
    seed: int,
    marks: list[int],
    norm: Normaliser,
) -> dict[int, float]:
    """Ask/tell until `budget` distinct architectures are evaluated; HV (normalised) at `marks`."""
    objectives = [
        MetricDef("accuracy", "accuracy", None, 0, "maximize", True, False),
        MetricDef(second, second.split("@")[0], "local-cpu" if "@" in second else None, 1, "minimize", True, True),
    ]

    def cheap(arch: Any) -> dict[str, float]:
        return {second: rows[space.arch_id(arch)][second]}

    ctx = SamplerContext(space, objectives, cheap, [], seed, budget)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(ctx))
    dists = search_distributions(space)
    seen: dict[str, tuple[float, float]] = {}
    found: list[tuple[float, float]] = []
    out: dict[int, float] = {}
    asks = 0
    while len(seen) < budget and asks < 4 * budget:
        asks += 1
        trial = study.ask(dists)
        arch = space.from_params(trial.params)
        aid = space.arch_id(arch)
        v = rows[aid]
        values = (v["accuracy"], v[second])
        study.tell(trial, list(values))
        if aid in seen:
            continue
        seen[aid] = values
        found.append(values)
        if len(seen) in marks:
            out[len(seen)] = hypervolume(norm(np.array(found)), np.ones(2))
    for m in marks:  # a search that stopped early (space exhausted) keeps its last value
        out.setdefault(m, hypervolume(norm(np.array(found)), np.ones(2)))
    return out


PEERS: dict[str, Callable[[SamplerContext], optuna.samplers.BaseSampler]] = {
    "optuna_random": lambda ctx: optuna.samplers.RandomSampler(seed=ctx.seed),
    "optuna_nsga2": lambda ctx: optuna.samplers.NSGAIISampler(seed=ctx.seed),
    "optuna_tpe": lambda ctx: optuna.samplers.TPESampler(seed=ctx.seed),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--ours", default="predictor,nsga2,tpe", help="project samplers to run")
    parser.add_argument("--problems", default="latency_ms@local-cpu,macs")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = Report("search_quality", args.quick)
    seeds = list(range(args.seeds if args.seeds is not None else (2 if args.quick else 5)))
    budgets = [30, 60] if args.quick else [100, 300]
    long_budget = 200 if args.quick else 1000
    ours = [s.strip() for s in args.ours.split(",") if s.strip()]
    for second in [p.strip() for p in args.problems.split(",")]:
        t0 = time.perf_counter()
        space, rows, allpts = load_problem(second)
        norm = Normaliser(allpts)
        true_hv = hypervolume(norm(allpts[pareto_mask(norm(allpts))]), np.ones(2))
        label = "latency" if second.startswith("latency") else "macs"
        print(f"# problem accuracy vs {second}: {len(rows)} cells, true front "
              f"{int(pareto_mask(norm(allpts)).sum())} points, loaded in {time.perf_counter() - t0:.1f}s", flush=True)
        methods: dict[str, tuple[Callable[[SamplerContext], optuna.samplers.BaseSampler], int]] = {
            f"ours_{name}": ((lambda n: (lambda ctx: create_sampler(n, ctx)))(name), max(budgets)) for name in ours
        }
        methods.update({k: (v, max(budgets)) for k, v in PEERS.items()})
        methods["optuna_nsga2"] = (PEERS["optuna_nsga2"], long_budget)
        ratios: dict[str, dict[int, list[float]]] = {}
        for name, (make, budget) in methods.items():
            marks = sorted({*budgets, budget})
            t1 = time.perf_counter()
            for seed in seeds:
                hv = run_method(make, space, rows, second, budget, seed, marks, norm)
                for m, v in hv.items():
                    ratios.setdefault(name, {}).setdefault(m, []).append(v / true_hv)
            med = {m: statistics.median(v) for m, v in ratios[name].items()}
            print(f"# {label} {name}: " + ", ".join(f"{m}: {med[m]:.4f}" for m in sorted(med))
                  + f" ({time.perf_counter() - t1:.0f}s for {len(seeds)} seeds)", flush=True)
        report.data[label] = {n: {str(m): v for m, v in r.items()} for n, r in ratios.items()}
        med = {n: {m: statistics.median(v) for m, v in r.items()} for n, r in ratios.items()}
        default = "ours_predictor" if "ours_predictor" in med else f"ours_{ours[0]}"
        for b in budgets:
            for n in med:
                report.result(f"hv_ratio[{label},{n},{b}]", med[n][b], fmt=".4f")
        nsga_long = med["optuna_nsga2"][long_budget]
        report.result(f"hv_ratio[{label},optuna_nsga2,{long_budget}]", nsga_long, fmt=".4f")
        report.result(
            f"default_at_{max(budgets)}_minus_nsga2_at_{long_budget}[{label}]",
            med[default][max(budgets)] - nsga_long, target=">=0", fmt=".4f",
        )
        worst_margin = min(
            med[default][b] - med[p][b] for b in budgets for p in PEERS
        )
        report.result(f"default_minus_best_peer_min_over_budgets[{label}]", worst_margin, target=">=0", fmt=".4f")
    print(f"wrote {report.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
