"""Cost of running a subnet inside the supernet vs. as an extracted static network.

For mbv3_tiny and ofa_mbv3_w10 at batch 1 and 32 (CPU, one thread): median over archs of
supernet-at-arch forward time / extracted forward time (target <= 1.10), and extraction time
(target <= 50 ms for ofa_mbv3_w10). The two forwards are timed interleaved, so machine noise hits
both alike.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, parse_args  # noqa: E402

import search_spaces as ss  # noqa: E402


def _time(fn, x: torch.Tensor, min_seconds: float) -> float:
    """Median seconds of one call, over repeats filling about `min_seconds`."""
    times = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    args = parse_args(__doc__ or "")
    torch.set_num_threads(1)
    report = Report("elastic_overhead", quick=args.quick)
    n_archs = 2 if args.quick else 5
    rounds = 3 if args.quick else 5
    for name in ("mbv3_tiny", "ofa_mbv3_w10"):
        space = ss.get_space(name)
        torch.manual_seed(0)
        net = space.build_supernet().eval()
        archs = [space.largest(), *(space.sample(seed=s) for s in range(n_archs - 1))]
        if args.quick and name.startswith("ofa"):
            archs = [{**a, "r": 128} for a in archs]
        extract_ms = []
        for arch in archs:
            net.extract(arch)  # warm-up
            for _ in range(3):
                t = time.perf_counter()
                net.extract(arch)
                extract_ms.append(1000 * (time.perf_counter() - t))
        for batch in (1, 32):
            ratios = []
            for arch in archs:
                sub = net.extract(arch).eval()
                net.set_active(arch)
                x = torch.randn(batch, *space.input_shape(arch))
                budget = 0.05 if args.quick else 0.3
                with torch.inference_mode():
                    net(x), sub(x)  # warm-up (fills the supernet's eval weight cache)
                    pairs = [(_time(net, x, budget), _time(sub, x, budget)) for _ in range(rounds)]
                ratios.append(statistics.median(a / b for a, b in pairs))
            report.result(f"supernet_over_extracted[{name},batch={batch}]", statistics.median(ratios), "<=1.10")
            report.data[f"ratios[{name},batch={batch}]"] = ratios
        target = "<=50" if name == "ofa_mbv3_w10" else None
        report.result(f"extract_ms[{name}]", statistics.median(extract_ms), target, fmt=".1f")
    print(f"wrote {report.write()}")


if __name__ == "__main__":
    main()
