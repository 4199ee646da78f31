"""Supernet training throughput (mbv3_tiny on digits, the settings of examples/train_mbv3_tiny_digits.yaml).

1. Sandwich overhead: time of one sandwich step (largest + smallest + 2 random subnets inside the
   supernet: forward, in-place-distillation loss, backward each, one optimiser step) divided by
   the sum of one stand-alone step of each of the same subnets as an extracted static network
   (forward, cross-entropy, backward, optimiser step). Median over steps; the two are timed
   interleaved so machine noise hits both alike. Target <= 1.15.
2. Data-parallel scaling: training images per second with 1 worker (in-process) and with 2 Ray
   Train workers (CPU, gloo, one thread each), measured between step events after warm-up, so
   Ray's start-up is excluded; the ratio is the speed-up.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, parse_args  # noqa: E402

from nas.train import (  # noqa: E402
    RecordingSink,
    SubnetSampler,
    TrainingSpec,
    build_optimizer,
    load_dataset,
    load_spec,
    parse_spec,
    student_loss,
    to_input,
    train,
)
from nas.train._ray import PROGRESS_FILE  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_mbv3_tiny_digits.yaml"


def sandwich_overhead(steps: int, batch: int) -> tuple[float, list[float]]:
    spec = load_spec(EXAMPLE)
    import search_spaces as ss

    space = ss.get_space(spec.space.name, **spec.space.overrides)
    data = load_dataset(spec.data)
    torch.manual_seed(0)
    net = space.build_supernet().train()
    t = TrainingSpec(**{**spec.training.model_dump(), "deps_start_fraction": None})
    opt = build_optimizer(net, t)
    sampler = SubnetSampler(space, t.sandwich_n, "uniform", seed=0)
    x, y = data.train_x[:batch], data.train_y[:batch]

    def sandwich(archs: list[dict[str, Any]]) -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        teacher = None
        for j, arch in enumerate(archs):
            net.set_active(arch)
            out = net(to_input(x, space.input_shape(arch)))
            if j == 0:
                loss = F.cross_entropy(out, y, label_smoothing=t.label_smoothing)
                teacher = out.detach()
            else:
                loss = student_loss(out, y, teacher, alpha=t.distill_alpha, temperature=t.kd_temperature)
            loss.backward()
        opt.step()
        return time.perf_counter() - t0

    def standalone(archs: list[dict[str, Any]]) -> float:
        total = 0.0
        for arch in archs:
            sub = net.extract(arch).train()
            sub_opt = build_optimizer(sub, t)
            xin = to_input(x, space.input_shape(arch))
            for rep in range(2):  # the first step of a fresh optimiser allocates its state
                t0 = time.perf_counter()
                sub_opt.zero_grad(set_to_none=True)
                F.cross_entropy(sub(xin), y, label_smoothing=t.label_smoothing).backward()
                sub_opt.step()
                if rep == 1:
                    total += time.perf_counter() - t0
        return total

    ratios = []
    sandwich(sampler.sandwich(10_000))  # warm-up
    for s in range(steps):
        archs = sampler.sandwich(s)
        a, b = sandwich(archs), standalone(archs)
        a2 = sandwich(archs)
        ratios.append(min(a, a2) / b)
    return statistics.median(ratios), ratios


class _TimedSink(RecordingSink):
    def step(self, step: int, loss: float, phase: str) -> None:
        self.events.append(("step", (step, time.perf_counter())))


def _rate(points: list[tuple[int, float]], batch: int, skip: int) -> float:
    pts = [p for p in points if p[0] > skip]
    (s0, t0), (s1, t1) = pts[0], pts[-1]
    return (s1 - s0) * batch / (t1 - t0)


def images_per_second(workers: int, epochs: int, max_samples: int | None, tmp: Path) -> tuple[float, float]:
    base = load_spec(EXAMPLE).model_dump(mode="json")
    base["training"].update(epochs=epochs, deps_start_fraction=None)
    base["data"]["max_samples"] = max_samples
    base.update(workers=workers, output=str(tmp / f"w{workers}"), register_checkpoint=False)
    spec = parse_spec(base)
    sink = _TimedSink()
    t0 = time.perf_counter()
    train(spec, sink)
    wall = time.perf_counter() - t0
    batch = spec.training.batch_size
    if workers == 1:
        points = [e for k, e in sink.events if k == "step"]
    else:  # rank 0's step events, with its own clock
        points = []
        for line in (tmp / f"w{workers}" / PROGRESS_FILE).read_text().splitlines():
            ev = json.loads(line)
            if ev.get("type") == "step":
                points.append((ev["step"], ev["time"]))
    return _rate(points, batch, skip=3), wall


def main() -> None:
    args = parse_args(__doc__ or "")
    torch.set_num_threads(1)
    report = Report("train_throughput", quick=args.quick)
    median, ratios = sandwich_overhead(steps=4 if args.quick else 12, batch=32)
    report.data["sandwich_ratios"] = ratios
    report.result("sandwich_step_over_standalone_sum[mbv3_tiny,batch32]", median, "<=1.15")
    with tempfile.TemporaryDirectory() as d:
        epochs, max_samples = (1, 700) if args.quick else (2, None)
        r1, wall1 = images_per_second(1, epochs, max_samples, Path(d))
        r2, wall2 = images_per_second(2, epochs, max_samples, Path(d))
    report.data.update(wall_s_1_worker=wall1, wall_s_2_workers=wall2)
    report.result("images_per_s[1 worker]", r1, fmt=".1f")
    report.result("images_per_s[2 ray workers]", r2, fmt=".1f")
    report.result("speedup_2_workers_over_1", r2 / r1, fmt=".2f")
    print(f"wall time incl. start-up: 1 worker {wall1:.0f}s, 2 workers {wall2:.0f}s", flush=True)
    report.write()


if __name__ == "__main__":
    main()
