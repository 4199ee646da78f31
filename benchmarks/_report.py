"""RESULT lines and JSON results shared by every benchmark (see DESIGN.md, "Benchmarks").

Each headline figure prints as ``RESULT <figure-name> <value> target <op><value> PASS|MISS`` and
the same lines go to ``benchmarks/results/<NAME>.json`` with machine info and library versions.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    versions = {}
    for dist in ("hwnas", "torch", "numpy", "scikit-learn", "onnxruntime", "optuna", "ray", "sqlalchemy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


class Report:
    """Collects RESULT lines and extra data for one benchmark run."""

    def __init__(self, name: str, quick: bool = False) -> None:
        self.name, self.quick = name, quick
        self.lines: list[str] = []
        self.results: list[dict[str, Any]] = []
        self.data: dict[str, Any] = {}
        self.started = time.time()

    def result(self, figure: str, value: float, target: str | None = None, fmt: str = ".3f") -> bool | None:
        """Print one RESULT line; `target` like ``">=0.95"`` (None: informational, no verdict)."""
        verdict: bool | None = None
        line = f"RESULT {figure} {value:{fmt}}"
        if target is not None:
            op = next(o for o in sorted(_OPS, key=len, reverse=True) if target.startswith(o))
            verdict = bool(_OPS[op](value, float(target[len(op):])))
            line += f" target {target} {'PASS' if verdict else 'MISS'}"
        print(line, flush=True)
        self.lines.append(line)
        self.results.append({"figure": figure, "value": value, "target": target, "pass": verdict})
        return verdict

    def write(self) -> Path:
        """Write ``results/<name>.json`` (``<name>.quick.json`` for a --quick run)."""
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}{'.quick' if self.quick else ''}.json"
        payload = {
            "benchmark": self.name,
            "quick": self.quick,
            "seconds": round(time.time() - self.started, 1),
            "machine": machine_info(),
            "lines": self.lines,
            "results": self.results,
            "data": self.data,
        }
        path.write_text(json.dumps(payload, indent=2, default=str))
        return path


def parse_args(description: str) -> argparse.Namespace:
    """The common ``--quick`` flag."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="reduced run (about a minute), for CI smoke tests")
    return parser.parse_args()
