"""Search throughput with a supernet evaluator: 2 Ray evaluator actors vs 1 (issue 5, acceptance 3).

A mbv3_tiny supernet checkpoint (digits, 3 x 16-20 px inputs; weights random, which does not
change the cost of an evaluation: BN recalibration on the calibration images plus a pass over the
validation split) is searched with the random sampler for the same number of evaluations, once
with one Ray evaluator actor and once with two, each in a fresh database (so the evaluation cache
cannot help). Throughput is evaluations per second of the driver's loop (actor start-up, which
loads the supernet once per actor, is reported separately).

    python benchmarks/search_throughput.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import Report, parse_args  # noqa: E402


def make_checkpoint(root: Path) -> Path:
    import torch

    import search_spaces as ss
    from nas.train import load_dataset, parse_spec, save_checkpoint

    overrides = {"resolutions": [16, 20]}
    spec = parse_spec({
        "name": "throughput", "space": {"name": "mbv3_tiny", "overrides": overrides},
        "data": {"kind": "digits", "calib_size": 256}, "training": {"epochs": 1}, "workers": 1,
        "output": str(root), "seed": 0, "register_checkpoint": False,
    })
    space = ss.get_space("mbv3_tiny", **overrides)
    torch.manual_seed(0)
    net = space.build_supernet()
    data = load_dataset(spec.data)
    meta = {"space": space.spec(), "spec": spec.model_dump(mode="json"), "data": data.describe(),
            "progress": {"step": 1, "epoch": 1, "complete": True}}
    return save_checkpoint(root / "checkpoints", 1, net, None, meta)  # type: ignore[arg-type]


def run(checkpoint: Path, parallelism: int, trials: int, workdir: Path) -> tuple[float, float, int]:
    """(evaluations per second, start-up seconds, evaluations)."""
    import ray

    from nas.db import dispose_engines
    from nas.search import run_search

    url = f"sqlite:///{workdir / f'p{parallelism}.db'}"
    spec = {
        "name": f"throughput-{parallelism}",
        "space": {"name": "mbv3_tiny", "overrides": {"resolutions": [16, 20]}},
        "evaluator": {"kind": "supernet", "checkpoint": str(checkpoint), "bn_calib_batches": 2},
        "objectives": [{"name": "accuracy", "direction": "maximize"}, {"name": "macs", "direction": "minimize"}],
        "sampler": {"name": "random"},
        "budget": {"trials": trials, "parallelism": parallelism, "seed": parallelism},
    }
    ray.init(num_cpus=parallelism, include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        result = run_search(spec, url=url, use_ray=True)
        total = time.perf_counter() - t0
    finally:
        ray.shutdown()
        dispose_engines()
    return result.evaluations / result.seconds, total - result.seconds, result.evaluations


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    report = Report("search_throughput", args.quick)
    trials = 16 if args.quick else 60
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(Path(tmp) / "run")
        rates = {}
        for p in (1, 2):
            rate, startup, n = run(ckpt, p, trials, Path(tmp))
            rates[p] = rate
            print(f"# {p} Ray evaluator(s): {n} evaluations, {rate:.2f}/s, start-up {startup:.1f}s", flush=True)
            report.result(f"evaluations_per_s[{p} ray evaluators]", rate, fmt=".2f")
    report.result("throughput_2_over_1_evaluators[supernet,mbv3_tiny]", rates[2] / rates[1], target=">=1.7")
    print(f"wrote {report.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
