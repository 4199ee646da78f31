"""INT8 export: accuracy drop and latency change of ONNX Runtime static quantisation (QDQ).

1. Train the supernet of examples/train_mbv3_tiny_digits.yaml (in-process by default; kept under
   $NAS_HOME/runs/export_int8 so a rerun reuses it), or use --checkpoint.
2. Export its largest and smallest subnet with ``int8=True`` (`nas.export.export_subnet`): BN
   recalibration on training images, ONNX, INT8 calibrated on training images.
3. Report, per subnet, the INT8 model's validation accuracy drop against the float ONNX model
   (percentage points; target <= 1.0) and INT8 / float latency (ONNX Runtime CPU, one thread,
   batch 1, timed interleaved under the local-cpu protocol; informational: below 1 is faster).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_mbv3_tiny_digits.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced run (about a minute), for CI")
    parser.add_argument("--workers", type=int, default=1, help="Ray workers for the supernet (1: in-process)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="use this supernet checkpoint")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    import latency_tables as lt
    from nas.export import export_subnet
    from nas.train import RichSink, load_model, load_spec, parse_spec, train

    report = Report("export_int8", quick=args.quick)
    t0 = time.perf_counter()
    if args.checkpoint is None:
        base = load_spec(EXAMPLE).model_dump(mode="json")
        if args.quick:
            base["training"].update(epochs=2, sandwich_n=0)
        name = f"export_int8{'_quick' if args.quick else ''}"
        out = Path(os.environ.get("NAS_HOME", ".nas")) / "runs" / name
        base.update(workers=args.workers, output=str(out), register_checkpoint=False)
        with RichSink(enabled=False) as sink:
            ckpt_path = train(parse_spec(base), sink).checkpoint
    else:
        ckpt_path = args.checkpoint
    report.data["supernet_s"] = round(time.perf_counter() - t0, 1)
    report.data["checkpoint"] = str(ckpt_path)
    net, _ = load_model(ckpt_path)
    space = net.space
    protocol = lt.QUICK_PROTOCOL if args.quick else None
    with tempfile.TemporaryDirectory() as d:
        for which in ("largest", "smallest"):
            arch = getattr(space, which)()
            result = export_subnet(ckpt_path, arch, Path(d) / which, int8=True, protocol=protocol)
            m = result.manifest
            q, acc, lat = m["int8"], m["accuracy"], m["latency"]
            label = f"{space.name}/{which}"
            report.data[which] = {
                "arch_id": m["arch_id"],
                "accuracy": acc,
                "int8": q,
                "measured": lat["measured"]["results"],
                "estimated_ms": lat["estimated_ms"],
                "costs": m["costs"],
            }
            print(
                f"{label}: fp32 ONNX acc {acc['onnx']:.4f}, int8 acc {acc['int8']:.4f} "
                f"(recipe {q['recipe']}; tried {q['recipes_tried']}), {acc['images']} validation images; "
                f"fp32 ONNX "
                f"{q['fp32_onnx_latency_ms']:.4f} ms, int8 {q['latency_ms']:.4f} ms, torch eager "
                f"{lat['measured']['results']['torch']['ms']:.4f} ms",
                flush=True,
            )
            report.result(f"int8_accuracy_drop_points[{label}]", q["accuracy_drop_points"], "<=1.0")
            report.result(f"int8_latency_ratio[{label}]", q["latency_ratio"])
    report.write()


if __name__ == "__main__":
    main()
