"""Latency figures for the manifest: table estimates per device, and re-measurement of the exported
files on this machine.

Estimates come from the device's latency table (`latency_tables.find_table` / `estimate`); a
device without a table, or whose table lacks an op of this subnet (other overrides, another
resolution), is skipped with the reason recorded. Measurements time the exported artefacts
themselves, interleaved under one protocol (`latency_tables.time_interleaved`), so the float vs
INT8 ratio is fair on a shared machine: the torch module on ``local-cpu``, the ONNX files on
``local-cpu-ort`` settings (ONNX Runtime CPU, one thread).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import latency_tables as lt
from search_spaces import SearchSpace

__all__ = ["check_devices", "estimate_latency", "measure_calls"]


def check_devices(devices: Sequence[str] | None) -> list[str]:
    """The device names to estimate for (default: every registered device).

    Raises:
        ValueError: an unknown device name (the message lists the known ones).
    """
    known = lt.list_devices()
    if devices is None:
        return known
    if isinstance(devices, str):
        devices = [devices]
    bad = [d for d in devices if d not in known]
    if bad:
        raise ValueError(f"Unknown device {bad[0]!r}; known devices: {', '.join(known)}.")
    return list(dict.fromkeys(devices))


def estimate_latency(
    space: SearchSpace, arch: Mapping[str, Any], devices: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Table estimates (ms) per device, and the devices skipped with the reason.

    Returns:
        ``({device: {"ms", "plain_sum_ms", "overhead_model", "statistic"}}, {device: reason})``.
    """
    estimated: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for device in devices:
        try:
            table = lt.find_table(device, space.name)
        except FileNotFoundError:
            skipped[device] = "no latency table"
            continue
        except ValueError as exc:
            skipped[device] = f"unreadable latency table: {exc}"
            continue
        try:
            ms = lt.estimate(table, space, arch)
            plain = lt.estimate(table, space, arch, overhead=False)
        except lt.MissingOpKey as exc:
            skipped[device] = f"table lacks op {exc.key!r}"
            continue
        estimated[device] = {
            "ms": ms,
            "plain_sum_ms": plain,
            "overhead_model": space.name in table.overhead,
            "statistic": str(table.meta.get("statistic") or "mean"),
        }
    return estimated, skipped


def measure_calls(
    calls: Mapping[str, Callable[[], Any]], protocol: lt.Protocol, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Time zero-argument `calls` interleaved, one thread; ``{name: LatencyStats as dict}`` (ms)."""
    stats = lt.time_interleaved(dict(calls), protocol, threads=1, seed=seed)
    return {name: s.to_dict() for name, s in stats.items()}
