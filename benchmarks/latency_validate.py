"""Latency tables vs the device: estimates from per-op tables against end-to-end timings.

For each (device, space) in local-cpu / local-cpu-ort x mbv3_tiny / nb201: take a table (full
run: measured afresh here, with its overhead model fitted on 40 other subnets; --quick: the
shipped one), time random subnets end to end, and report the share estimated within +/-10%
(nn-Meter's headline figure), Kendall tau, MAPE and RMSE. The full run also times the
measurement of the whole mbv3_tiny table on local-cpu (target: <= 10 minutes on 2 cores).

    python benchmarks/latency_validate.py            # ~15 minutes on 2 cores
    python benchmarks/latency_validate.py --quick    # shipped tables, 25 subnets each, ~1-2 minutes
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from _report import RESULTS_DIR, Report, parse_args  # noqa: E402

import latency_tables as lt  # noqa: E402
import search_spaces as ss  # noqa: E402

COMBOS = [
    ("local-cpu", "mbv3_tiny"),
    ("local-cpu", "nb201"),
    ("local-cpu-ort", "mbv3_tiny"),
    ("local-cpu-ort", "nb201"),
]
QUICK_PROTOCOL = lt.Protocol(warmup=5, rounds=4, iters=10, min_time_s=0.01)


def _table(device: str, space: ss.SearchSpace, quick: bool, tmp: Path, report: Report) -> lt.LatencyTable:
    label = f"{device}/{space.name}"
    if quick:
        try:
            return lt.find_table(device, space.name)
        except FileNotFoundError:
            print(f"# {label}: no shipped table; measuring one (cheap protocol)", flush=True)
            protocol = QUICK_PROTOCOL
    else:
        protocol = None
    t0 = time.perf_counter()
    result = lt.measure_table(space, device, out=tmp / f"{device}-{space.name}.json", protocol=protocol)
    minutes = (time.perf_counter() - t0) / 60
    target = "<=10" if (device, space.name) == ("local-cpu", "mbv3_tiny") and not quick else None
    report.result(f"lut_measure_minutes[{label}]", minutes, target)
    report.data.setdefault("tables", {})[label] = {"keys": len(result.table), "minutes": minutes}
    t0 = time.perf_counter()
    lt.fit_overhead(result.table, space, device, samples=40 if not quick else 10, protocol=protocol)
    report.data["tables"][label]["overhead_fit_minutes"] = (time.perf_counter() - t0) / 60
    return result.table


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    report = Report("latency_validate", quick=args.quick)
    samples = 25 if args.quick else 100
    with tempfile.TemporaryDirectory() as tmpdir:
        for device, name in COMBOS:
            space = ss.get_space(name)
            label = f"{device}/{name}"
            table = _table(device, space, args.quick, Path(tmpdir), report)
            png = RESULTS_DIR / f"latency_validate_{device}_{name}{'.quick' if args.quick else ''}.png"
            t0 = time.perf_counter()
            rep = lt.validate(
                table,
                space,
                device,
                samples=samples,
                seed=0,
                protocol=QUICK_PROTOCOL if args.quick else None,
                plot=png,
            )
            for figure, value, target in rep.results():
                report.result(figure, value, target)
            report.data[label] = {
                "samples": samples,
                "seconds": round(time.perf_counter() - t0, 1),
                "table": table.meta.get("source"),
                "overhead": table.overhead[name].to_dict() if name in table.overhead else None,
                "metrics": rep.metrics,
                "plain_sum_metrics": rep.plain_metrics,
                "measured_ms": rep.measured,
                "predicted_ms": rep.predicted,
                "plot": str(png.relative_to(RESULTS_DIR.parent.parent)),
            }
    print(f"# wrote {report.write()}")


if __name__ == "__main__":
    main()
