"""The measurement harness: interleaved timing, resumable table measurement, whole networks.

Timing follows `latency_tables._timing` (pinned threads, warm-up, garbage collector off, trimmed
statistics via its `summarize`), with one addition against noise on shared machines: the ops of
a chunk are timed in several short rounds in a fresh random order each round, and each op's
statistics pool all its rounds. A burst of background load then spreads over many ops a little
instead of landing on one.

A table measurement writes its output file (atomically) after every chunk, so a killed run loses
at most one chunk; run again with the same output and it measures only the keys still missing.
"""

from __future__ import annotations

import datetime as _dt
import gc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latency_tables._devices import (
    DeviceCfg,
    Protocol,
    check_protocol,
    device_versions,
    get_device,
    get_runtime,
)
from latency_tables._estimate import fit_overhead_model
from latency_tables._families import all_keys, get_family, op_keys, resolution_of
from latency_tables._guard import SpeedGuard
from latency_tables._keys import canonical_key
from latency_tables._ops import build_op
from latency_tables._table import Entry, LatencyTable, OverheadModel
from latency_tables._timing import LatencyStats, summarize
from search_spaces import SearchSpace, rng_from

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, last_item)`` after each chunk."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _device(device: str | DeviceCfg) -> DeviceCfg:
    return device if isinstance(device, DeviceCfg) else get_device(device)


def time_interleaved(
    calls: Mapping[str, Callable[[], Any]],
    protocol: Protocol,
    *,
    threads: int | None = 1,
    seed: int | np.random.Generator | None = 0,
    guard: SpeedGuard | None = None,
) -> dict[str, LatencyStats]:
    """Time zero-argument `calls` together under `protocol` (see the module docstring).

    Args:
        threads: ``torch.set_num_threads`` while timing (restored afterwards); None leaves it.
        seed: Order of the rounds.
        guard: Speed guard to keep (see `SpeedGuard`); by default one is made (and calibrated)
            when the protocol sets ``max_slowdown``.

    Returns:
        Statistics per name (ms), over ``rounds`` accepted visits of at least ``iters`` calls each.
    """
    names = list(calls)
    if not names:
        return {}
    rng = rng_from(seed)
    samples: dict[str, list[float]] = {n: [] for n in names}
    visits = dict.fromkeys(names, 0)
    old_threads, gc_was_enabled = torch.get_num_threads(), gc.isenabled()
    perf = time.perf_counter
    tick = time.perf_counter_ns if protocol.clock == "wall" else time.thread_time_ns
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if guard is None and protocol.max_slowdown is not None:
            guard = SpeedGuard(protocol.clock, protocol.max_slowdown)
            guard.calibrate(0.5)
        with torch.inference_mode():
            for n in names:
                for _ in range(protocol.warmup):
                    calls[n]()
            gc.collect()
            gc.disable()
            # Every name needs `rounds` accepted visits; a visit the guard rejects is repeated
            # in a later pass (after 4 x rounds passes, visits are accepted unguarded).
            for attempt in range(4 * protocol.rounds):
                todo = [i for i in rng.permutation(len(names)) if visits[names[i]] < protocol.rounds]
                if not todo:
                    break
                guarded = guard is not None and attempt < 4 * protocol.rounds - 1
                for i in todo:
                    fn, name = calls[names[i]], names[i]
                    if guarded:
                        guard.wait_until_fast()  # type: ignore[union-attr]
                    fn()  # untimed: re-warm caches after the previous op
                    buf: list[float] = []
                    deadline = perf() + protocol.min_time_s
                    while len(buf) < protocol.max_iters and (len(buf) < protocol.iters or perf() < deadline):
                        t0 = tick()
                        fn()
                        buf.append((tick() - t0) * 1e-6)
                    if guarded and not guard.fast():  # type: ignore[union-attr]
                        guard.stats.rejected += 1  # type: ignore[union-attr]
                        continue
                    samples[name] += buf
                    visits[name] += 1
    finally:
        if gc_was_enabled:
            gc.enable()
        if threads is not None:
            torch.set_num_threads(old_threads)
    return {n: summarize(samples[n], trim=protocol.trim) for n in names}


def _guard(protocol: Protocol) -> SpeedGuard | None:
    """One calibrated guard per run (its best reference time carries over between chunks)."""
    if protocol.max_slowdown is None:
        return None
    guard = SpeedGuard(protocol.clock, protocol.max_slowdown)
    guard.calibrate(1.0)
    return guard


def _record_guard(table: LatencyTable, guard: SpeedGuard) -> None:
    s = guard.stats
    old = table.meta.get("guard") or {}
    table.meta["guard"] = {
        "reference_best_ms": round(min(s.best_ms, old.get("reference_best_ms", float("inf"))), 5),
        "rejected_visits": s.rejected,
        "unguarded_visits": s.unguarded,
        "waited_s": round(s.waited_s, 1),
    }


def stats_to_entry(s: LatencyStats) -> Entry:
    return Entry(mean=s.mean, std=s.std, count=s.count, p50=s.p50, p90=s.p90, min=s.min)


def measure_ops(
    keys: Sequence[str],
    device: str | DeviceCfg = "local-cpu",
    protocol: Protocol | None = None,
    seed: int = 0,
) -> dict[str, Entry]:
    """Time the ops `keys` name (built standalone, see `build_op`) on `device`, interleaved."""
    cfg = _device(device)
    runtime, p = get_runtime(cfg), check_protocol(cfg, protocol or cfg.protocol or Protocol())
    calls = {}
    for key in keys:
        module, inputs = build_op(key, cfg.batch_size)
        calls[canonical_key(key)] = runtime.prepare(module, inputs, cfg)
    stats = time_interleaved(calls, p, threads=cfg.threads, seed=seed)
    return {k: stats_to_entry(s) for k, s in stats.items()}


@dataclass
class MeasureResult:
    """What `measure_table` did: the table, keys timed now, keys already there, wall time."""

    table: LatencyTable
    measured: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    path: Path | None = None


def _new_table(cfg: DeviceCfg, protocol: Protocol) -> LatencyTable:
    return LatencyTable(
        cfg.name,
        {
            "device": cfg.to_dict(),
            "versions": device_versions(cfg),
            "protocol": protocol.to_dict(),
            "source": "measured",
            "statistic": protocol.statistic,
            "spaces": [],
            "resolutions": {},
            "created": _now(),
            "complete": False,
            "seconds": 0.0,
        },
    )


def open_for_resume(out: Path, cfg: DeviceCfg, protocol: Protocol) -> LatencyTable:
    """The table in `out` (to extend), after checking it was measured the same way."""
    table = LatencyTable.load(out)
    if table.device != cfg.name:
        raise ValueError(
            f"{out} holds a table for device {table.device!r}, not {cfg.name!r}; choose another --out."
        )
    if table.meta.get("source") != "measured":
        raise ValueError(
            f"{out} holds an imported table ({table.meta.get('source')!r}); measure into another file."
        )
    recorded = table.meta.get("protocol")
    if recorded != protocol.to_dict():
        raise ValueError(
            f"{out} was measured with protocol {recorded}, not {protocol.to_dict()}; resume with the same "
            "protocol or start afresh (--fresh)."
        )
    return table


def measure_table(
    space: SearchSpace,
    device: str | DeviceCfg = "local-cpu",
    *,
    resolutions: Sequence[int] | None = None,
    keys: Sequence[str] | None = None,
    out: str | Path | None = None,
    protocol: Protocol | None = None,
    resume: bool = True,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> MeasureResult:
    """Measure every distinct op of `space` on `device` (or just `keys`), resumably.

    Args:
        resolutions: Input resolutions to cover (default: all the space allows).
        keys: Measure these keys instead of the space's full set.
        out: Table file, rewritten atomically after every chunk. An existing file is extended
            (its keys are not measured again) unless `resume` is False.
        protocol: Timing protocol (default: the device's).
        seed: Order of interleaving.
        progress: Called after each chunk.

    Raises:
        KeyError: unknown device. ValueError: a device that cannot be measured here, a resolution
            the space does not allow, or an `out` file for another device or protocol.
    """
    cfg = _device(device)
    runtime = get_runtime(cfg)
    p = check_protocol(cfg, protocol or cfg.protocol or Protocol())
    todo_all = sorted({canonical_key(k) for k in keys}) if keys is not None else all_keys(space, resolutions)
    path = Path(out) if out is not None else None
    if path is not None and path.exists() and resume:
        table = open_for_resume(path, cfg, p)
    else:
        table = _new_table(cfg, p)
    if space.name not in table.meta.setdefault("spaces", []):
        table.meta["spaces"].append(space.name)
    if keys is None:
        res = get_family(space).check_resolutions(space, resolutions)
        done_res = set(table.meta.setdefault("resolutions", {}).get(space.name, []))
        table.meta["resolutions"][space.name] = sorted(done_res | set(res))
    skipped = [k for k in todo_all if table.has(k)]
    todo = [k for k in todo_all if not table.has(k)]
    guard = _guard(p)
    chunk_rng = rng_from(seed)
    # Mixed chunks: each interleaves different ops and shapes, so load drift is spread evenly.
    todo = [todo[i] for i in chunk_rng.permutation(len(todo))]
    table.meta["complete"] = not todo
    result = MeasureResult(table, [], skipped, 0.0, path)
    start = time.perf_counter()
    if progress is not None:
        progress(len(skipped), len(todo_all), "")
    for i in range(0, len(todo), p.chunk):
        chunk = todo[i : i + p.chunk]
        t0 = time.perf_counter()
        calls = {}
        for key in chunk:
            module, inputs = build_op(key, cfg.batch_size)
            calls[key] = runtime.prepare(module, inputs, cfg)
        stats = time_interleaved(calls, p, threads=cfg.threads, seed=chunk_rng, guard=guard)
        for key in chunk:
            table.set(key, stats_to_entry(stats[key]))
        if guard is not None:
            _record_guard(table, guard)
        result.measured += chunk
        table.meta["seconds"] = round(float(table.meta.get("seconds", 0.0)) + time.perf_counter() - t0, 3)
        table.meta["updated"] = _now()
        table.meta["complete"] = i + p.chunk >= len(todo)
        if path is not None:
            table.save(path)
        if progress is not None:
            progress(len(skipped) + len(result.measured), len(todo_all), chunk[-1])
    if path is not None and not todo:
        table.save(path)
    result.seconds = time.perf_counter() - start
    return result


# ----- whole networks ----------------------------------------------------------------------------
def measure_networks(
    space: SearchSpace,
    archs: Sequence[Mapping[str, Any]],
    device: str | DeviceCfg = "local-cpu",
    *,
    protocol: Protocol | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> list[LatencyStats]:
    """End-to-end latency of each extracted subnet (``space.build_supernet().extract(arch)``),
    timed with the same interleaved protocol as table entries."""
    cfg = _device(device)
    runtime = get_runtime(cfg)
    p = check_protocol(cfg, protocol or cfg.protocol or Protocol())
    torch.manual_seed(seed)
    supernet = space.build_supernet()
    supernet.eval()  # type: ignore[attr-defined]  # every supernet is an nn.Module
    rng = rng_from(seed)
    guard = _guard(p)
    out: list[LatencyStats] = []
    for i in range(0, len(archs), p.chunk):
        chunk = archs[i : i + p.chunk]
        calls = {}
        for j, arch in enumerate(chunk):
            net = supernet.extract(arch).eval()  # type: ignore[attr-defined]
            x = torch.randn(cfg.batch_size, *space.input_shape(arch))
            calls[str(i + j)] = runtime.prepare(net, (x,), cfg)
        stats = time_interleaved(calls, p, threads=cfg.threads, seed=rng, guard=guard)
        out += [stats[str(i + j)] for j in range(len(chunk))]
        if progress is not None:
            progress(len(out), len(archs), space.arch_id(chunk[-1]))
    return out


def sample_archs(
    space: SearchSpace, n: int, seed: int, accept: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """`n` distinct random architectures (by `arch_id`), reproducible from `seed`; with `accept`,
    only those it accepts (fewer than `n` if they are rare)."""
    if n < 1:
        raise ValueError(f"`samples >= 1` must hold, but got {n}.")
    rng = rng_from(seed)
    out, seen = [], set()
    for _ in range(50 * n):
        a = space.sample(seed=rng)
        aid = space.arch_id(a)
        if aid not in seen and (accept is None or accept(a)):
            seen.add(aid)
            out.append(a)
            if len(out) == n:
                break
    return out


def fit_overhead(
    table: LatencyTable,
    space: SearchSpace,
    device: str | DeviceCfg | None = None,
    *,
    samples: int = 40,
    seed: int = 10_000,
    protocol: Protocol | None = None,
    progress: ProgressFn | None = None,
) -> OverheadModel:
    """Measure `samples` random subnets end to end and fit the table's overhead model for
    `space` (stored in ``table.overhead[space.name]`` and returned).

    Raises:
        MissingOpKey: the table lacks a key one of the subnets needs.
    """
    from latency_tables._estimate import estimate, table_statistic  # noqa: PLC0415

    cfg = _device(device if device is not None else table.device)

    def covered(arch: dict[str, Any]) -> bool:  # e.g. a table measured at some resolutions only
        r = resolution_of(space, arch)
        return all(table.has(k, r) for k in op_keys(space, arch))

    archs = sample_archs(space, samples, seed, accept=covered)
    if len(archs) < 3:
        estimate(table, space, space.sample(seed=seed), overhead=False)  # raises MissingOpKey
        raise ValueError(
            f"Too few subnets of {space.name!r} are covered by the table to fit an overhead model."
        )
    plain = [estimate(table, space, a, overhead=False) for a in archs]
    n_ops = [len(op_keys(space, a)) for a in archs]
    measured = measure_networks(
        space, archs, cfg, protocol=protocol or _table_protocol(table), seed=seed, progress=progress
    )
    stat = table_statistic(table)
    model = fit_overhead_model(plain, n_ops, [getattr(s, stat) for s in measured], seed=seed)
    table.overhead[space.name] = model
    return model


def _table_protocol(table: LatencyTable) -> Protocol | None:
    p = table.meta.get("protocol")
    return Protocol.from_dict(p) if isinstance(p, dict) else None
