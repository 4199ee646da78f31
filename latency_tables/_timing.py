"""A robust wall-clock timing protocol for torch modules and arbitrary callables.

Protocol: pin torch's intra-op threads, run warm-up calls, then time calls one by one with
``time.perf_counter_ns`` until both `iters` calls and `min_time_s` seconds are reached (or
`max_iters`), and summarise with trimmed statistics: the mean and std drop the top and bottom
`trim` share of samples (outliers from interrupts, page faults, frequency changes); the
percentiles use all samples. Times are in milliseconds.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one measurement, in milliseconds.

    Attributes:
        count: Timed calls (warm-up excluded).
        mean: Trimmed mean.
        std: Trimmed standard deviation.
        p50: Median over all timed calls.
        p90: 90th percentile over all timed calls.
        min: Fastest call.
    """

    count: int
    mean: float
    std: float
    p50: float
    p90: float
    min: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(samples_ms: Sequence[float], *, trim: float = 0.1) -> LatencyStats:
    """Trimmed statistics of raw per-call times (ms).

    Raises:
        ValueError: no samples, a negative or non-finite sample, or `trim` outside [0, 0.5).
    """
    if not 0 <= trim < 0.5:
        raise ValueError(f"`0 <= trim < 0.5` must hold, but got {trim=}.")
    arr = np.sort(np.asarray(samples_ms, dtype=np.float64).reshape(-1))
    if arr.size == 0:
        raise ValueError("No timing samples to summarise; measure at least one call.")
    if not np.isfinite(arr).all() or arr[0] < 0:
        raise ValueError("Timing samples must be finite and >= 0.")
    k = int(math.floor(arr.size * trim))
    kept = arr[k : arr.size - k] if arr.size - 2 * k > 0 else arr
    return LatencyStats(
        count=int(arr.size),
        mean=float(kept.mean()),
        std=float(kept.std()),
        p50=float(np.percentile(arr, 50)),
        p90=float(np.percentile(arr, 90)),
        min=float(arr[0]),
    )


def measure(
    target: nn.Module | Callable[..., Any],
    inputs: Any = (),
    *,
    warmup: int = 10,
    iters: int = 50,
    min_time_s: float = 0.0,
    max_iters: int = 100_000,
    threads: int | None = 1,
    trim: float = 0.1,
    clock: str = "wall",
) -> LatencyStats:
    """Time ``target(*inputs)``.

    Args:
        target: A torch module (run in eval mode under ``torch.inference_mode``; its training flag
            is restored afterwards) or any callable.
        inputs: One tensor, or a tuple/list of positional arguments.
        warmup: Untimed calls first (allocator, caches, lazy init).
        iters: Minimum number of timed calls.
        min_time_s: Keep timing until this many seconds are spent (and `iters` reached).
        max_iters: Upper bound on timed calls whatever `min_time_s` says.
        threads: ``torch.set_num_threads`` during the measurement (restored afterwards); None
            leaves the setting alone.
        trim: Share dropped from each end for the mean and std.
        clock: ``"wall"`` (``time.perf_counter_ns``) or ``"thread"`` (``time.thread_time_ns``, the
            calling thread's CPU time: equal to wall time for single-threaded work on an idle
            machine, but it leaves out time the OS gives to other processes; only meaningful with
            ``threads=1``).

    Raises:
        ValueError: a bad count, time, thread number or trim; TypeError: `target` is not callable.
    """
    if not callable(target):
        raise TypeError(f"target must be a torch module or a callable, but got {type(target).__name__}.")
    if warmup < 0 or iters < 1 or max_iters < iters:
        raise ValueError(
            f"Need warmup >= 0 and 1 <= iters <= max_iters; got {warmup=}, {iters=}, {max_iters=}."
        )
    if min_time_s < 0:
        raise ValueError(f"`min_time_s >= 0` must hold, but got {min_time_s=}.")
    if threads is not None and threads < 1:
        raise ValueError(
            f"`threads >= 1` must hold (or None to keep the current setting), but got {threads=}."
        )
    if not 0 <= trim < 0.5:
        raise ValueError(f"`0 <= trim < 0.5` must hold, but got {trim=}.")
    if clock not in ("wall", "thread"):
        raise ValueError(f"Unknown clock {clock!r}; allowed: 'wall', 'thread'.")
    if clock == "thread" and threads != 1:
        raise ValueError(
            f"clock='thread' measures one thread's CPU time; it needs threads=1, got {threads=}."
        )
    tick = time.perf_counter_ns if clock == "wall" else time.thread_time_ns
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)

    module = target if isinstance(target, nn.Module) else None
    was_training = module.training if module is not None else False
    old_threads = torch.get_num_threads()
    gc_was_enabled = gc.isenabled()
    samples: list[float] = []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if module is not None:
            module.eval()
        with torch.inference_mode() if module is not None else contextlib.nullcontext():
            for _ in range(warmup):
                target(*args)
            gc.collect()
            gc.disable()
            deadline = time.perf_counter() + min_time_s
            while len(samples) < max_iters and (len(samples) < iters or time.perf_counter() < deadline):
                t0 = tick()
                target(*args)
                samples.append((tick() - t0) / 1e6)
    finally:
        if gc_was_enabled:
            gc.enable()
        if threads is not None:
            torch.set_num_threads(old_threads)
        if module is not None:
            module.train(was_training)
    return summarize(samples, trim=trim)
