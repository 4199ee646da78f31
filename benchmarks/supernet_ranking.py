"""Does the supernet rank subnets as training them alone would? (mbv3_tiny on digits)

1. Train the supernet of examples/train_mbv3_tiny_digits.yaml (2 Ray workers; in-process with
   --workers 1).
2. Draw random subnets (distinct architectures, seeded), stratified over MACs: subnet k is drawn
   uniformly at random until its MACs fall in log-spaced bin k mod 8 between the smallest and the
   largest subnet, so the ranking covers the whole complexity range rather than uniform
   sampling's pile-up at medium sizes (`--uniform` draws plain uniform samples). For each: the
   validation loss with inherited weights after BN recalibration, and the validation loss of the
   same architecture
   trained alone from scratch (fresh initialisation, the same data, augmentation, optimiser and
   label smoothing, `--standalone-epochs` epochs; two processes, one thread each).
   With ``--seeds N`` each subnet trains alone N times (the mean loss is the reference) and the
   Kendall tau between two seeds' stand-alone losses is printed: the noise ceiling of any proxy.
3. Kendall tau (and Spearman rho) between the two losses. Target tau >= 0.5 over >= 20 subnets
   (BossNAS reports Spearman 0.78 for MBConv on ImageNet).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_mbv3_tiny_digits.yaml"


def _standalone(job: dict[str, Any]) -> dict[str, float]:
    """Train one architecture alone (runs in a worker process, one thread)."""
    torch.set_num_threads(1)
    import search_spaces as ss
    from nas.train import TrainSpec, build_optimizer, load_dataset, shift_augment, to_input
    from nas.train._sampling import Schedule

    spec = TrainSpec.model_validate(job["spec"])
    t = spec.training
    space = ss.get_space(spec.space.name, **spec.space.overrides)
    data = load_dataset(spec.data)
    arch = job["arch"]
    torch.manual_seed(job["seed"])
    net = space.build_supernet().extract(arch).train()  # fresh initialisation, static network
    opt = build_optimizer(net, t)
    spe = len(data.train_y) // t.batch_size
    sched = Schedule(space, t.model_copy(update={"epochs": job["epochs"]}), spe)
    shape = space.input_shape(arch)
    gen = torch.Generator().manual_seed(job["seed"])
    for step in range(job["epochs"] * spe):
        if step % spe == 0:
            perm = torch.randperm(len(data.train_y), generator=gen)
        idx = perm[(step % spe) * t.batch_size : (step % spe + 1) * t.batch_size]
        x = shift_augment(data.train_x[idx], gen) if t.augment else data.train_x[idx]
        for g in opt.param_groups:
            g["lr"] = sched.lr(step)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(
            net(to_input(x, shape)), data.train_y[idx], label_smoothing=t.label_smoothing
        ).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        out = net(to_input(data.val_x, shape))
        loss = float(F.cross_entropy(out, data.val_y))
        acc = float((out.argmax(1) == data.val_y).float().mean())
    return {"loss": loss, "accuracy": acc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="reduced run (about a minute or two), for CI smoke tests"
    )
    parser.add_argument("--subnets", type=int, default=None, help="random subnets (default 24; quick 8)")
    parser.add_argument("--standalone-epochs", type=int, default=None, help="default 10; quick 2")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers for the supernet (1: in-process)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="stand-alone trainings per subnet; their mean loss is the reference (>= 2 also measures "
        "seed noise: two seeds agree only to tau 0.45 on digits, so one seed is too noisy a reference)",
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="reuse a trained supernet checkpoint")
    parser.add_argument("--uniform", action="store_true", help="plain uniform subnet samples (no MAC strata)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from scipy.stats import kendalltau, spearmanr

    import search_spaces as ss
    from nas.train import (
        RichSink,
        SubnetEvaluator,
        SubnetSampler,
        load_dataset,
        load_model,
        load_spec,
        parse_spec,
        train,
    )

    report = Report("supernet_ranking", quick=args.quick)
    n_sub = args.subnets or (8 if args.quick else 24)
    sa_epochs = args.standalone_epochs or (2 if args.quick else 10)
    base = load_spec(EXAMPLE).model_dump(mode="json")
    if args.quick:
        base["training"]["epochs"] = 3
        base["data"]["max_samples"] = 600
    # Kept under $NAS_HOME so a rerun reuses the (deterministic) supernet instead of retraining it.
    out = (
        Path(os.environ.get("NAS_HOME", ".nas"))
        / "runs"
        / f"supernet_ranking{'_quick' if args.quick else ''}"
    )
    base.update(workers=args.workers, output=str(out), register_checkpoint=False)
    spec = parse_spec(base)
    t0 = time.perf_counter()
    if args.checkpoint is None:
        with RichSink(enabled=False) as sink:
            result = train(spec, sink)
        ckpt_path = result.checkpoint
    else:
        ckpt_path = args.checkpoint
    supernet_s = time.perf_counter() - t0
    net, ckpt = load_model(ckpt_path)
    spec = parse_spec({**ckpt.meta["spec"], "output": None, "workers": 1})
    space = ss.get_space(spec.space.name, **spec.space.overrides)
    data = load_dataset(spec.data)
    evaluator = SubnetEvaluator(net, space, data, spec.training.bn_calib_batches)

    rng = np.random.default_rng(2024)
    strata = SubnetSampler(space, bins=8)
    edges = strata.bin_edges()
    archs, ids = [], set()
    while len(archs) < n_sub:
        target = len(archs) % 8
        for _ in range(5000):
            a = space.sample(rng)
            if args.uniform or strata.bin_of(strata.macs(a), edges) == target:
                break
        if space.arch_id(a) not in ids:
            ids.add(space.arch_id(a))
            archs.append(a)
    inherited = [evaluator.evaluate(a) for a in archs]

    t1 = time.perf_counter()
    jobs = [
        {"spec": spec.model_dump(mode="json"), "arch": a, "epochs": sa_epochs, "seed": i + 1000 * k}
        for k in range(args.seeds)
        for i, a in enumerate(archs)
    ]
    with ProcessPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(_standalone, jobs))
    standalone_s = time.perf_counter() - t1
    per_seed = [runs[k * n_sub : (k + 1) * n_sub] for k in range(args.seeds)]
    alone = [
        {m: float(np.mean([seed[i][m] for seed in per_seed])) for m in ("loss", "accuracy")}
        for i in range(n_sub)
    ]

    li = [r["loss"] for r in inherited]
    ls = [r["loss"] for r in alone]
    tau = float(kendalltau(li, ls).statistic)
    rho = float(spearmanr(li, ls).statistic)
    tau_acc = float(kendalltau([r["accuracy"] for r in inherited], [r["accuracy"] for r in alone]).statistic)
    rows = []
    for a, i, s in zip(archs, inherited, alone, strict=True):
        rows.append(
            {
                "arch_id": space.arch_id(a),
                "arch": a,
                "macs": space.cost(a)["macs"],
                "inherited": i,
                "standalone": s,
            }
        )
        print(
            f"{space.arch_id(a)} MACs {space.cost(a)['macs'] / 1e6:6.2f}M  inherited loss {i['loss']:.4f} "
            f"acc {i['accuracy']:.4f} | alone loss {s['loss']:.4f} acc {s['accuracy']:.4f}",
            flush=True,
        )
    report.data.update(
        subnets=rows,
        supernet_train_s=supernet_s,
        standalone_train_s=standalone_s,
        standalone_epochs=sa_epochs,
        standalone_seeds=args.seeds,
        supernet_epochs=spec.training.epochs,
    )
    print(f"supernet: {supernet_s:.0f}s; {len(jobs)} stand-alone trainings: {standalone_s:.0f}s", flush=True)
    report.result(f"kendall_tau_val_loss[inherited_vs_standalone,n={n_sub}]", tau, ">=0.5")
    report.result(f"spearman_rho_val_loss[n={n_sub}]", rho)
    report.result(f"kendall_tau_val_accuracy[n={n_sub}]", tau_acc if not math.isnan(tau_acc) else 0.0)
    report.result("mean_inherited_accuracy", float(np.mean([r["accuracy"] for r in inherited])), fmt=".4f")
    report.result("mean_standalone_accuracy", float(np.mean([r["accuracy"] for r in alone])), fmt=".4f")
    if args.seeds >= 2:  # how well one stand-alone run ranks another: the ceiling for any proxy
        noise = float(
            kendalltau([r["loss"] for r in per_seed[0]], [r["loss"] for r in per_seed[1]]).statistic
        )
        report.result(f"kendall_tau_val_loss[standalone_seed0_vs_seed1,n={n_sub}]", noise)
        report.result(
            f"kendall_tau_val_loss[inherited_vs_standalone_seed0,n={n_sub}]",
            float(kendalltau(li, [r["loss"] for r in per_seed[0]]).statistic),
        )
        report.data["standalone_per_seed"] = per_seed
    report.data["sampling"] = "uniform" if args.uniform else "uniform within 8 log-spaced MAC strata"
    report.write()


if __name__ == "__main__":
    main()
