"""A speed guard for shared machines: time only while the CPU runs at its usual speed.

On a shared (virtualised) machine the CPU's speed changes in epochs of seconds: co-tenants,
frequency changes, a sibling hyperthread on the host. A slow epoch inflates every call in it,
the fastest included, so no statistic over one key's calls can undo it, and a table measured in
one epoch then disagrees with networks timed in another. The guard times a fixed reference op
(a small convolution: the same kind of work as the ops being measured) before and after each
visit of the harness to a key, and the harness keeps a visit only when both readings are within
``max_slowdown`` of the fastest reading seen so far; a rejected visit is repeated later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class GuardStats:
    """What the guard did: fastest reference time (ms), readings, waits and rejections."""

    best_ms: float = float("inf")
    readings: int = 0
    waited_s: float = 0.0
    rejected: int = 0
    unguarded: int = 0


class SpeedGuard:
    """Watches the machine's speed through a fixed reference op.

    Args:
        clock: ``wall`` or ``thread`` (as the protocol times).
        max_slowdown: A reading above ``best * max_slowdown`` means "slow epoch".
        max_wait_s: Longest wait for a fast epoch before a visit goes ahead unguarded.

    Thread-safety: not thread-safe; one per measurement.
    """

    def __init__(self, clock: str = "wall", max_slowdown: float = 1.2, max_wait_s: float = 20.0) -> None:
        if max_slowdown <= 1.0:
            raise ValueError(f"`max_slowdown > 1` must hold, but got {max_slowdown=}.")
        self.tick = time.perf_counter_ns if clock == "wall" else time.thread_time_ns
        self.max_slowdown, self.max_wait_s = max_slowdown, max_wait_s
        g = torch.Generator().manual_seed(0)
        self._x = torch.randn(1, 32, 16, 16, generator=g)
        self._w = torch.randn(32, 32, 3, 3, generator=g)
        self.stats = GuardStats()

    def reading(self, calls: int = 5) -> float:
        """Fastest of `calls` reference calls (ms); updates the best."""
        best = float("inf")
        tick, x, w = self.tick, self._x, self._w
        with torch.inference_mode():
            for _ in range(calls):
                t0 = tick()
                F.relu(F.conv2d(x, w, padding=1))
                best = min(best, (tick() - t0) * 1e-6)
        self.stats.readings += 1
        self.stats.best_ms = min(self.stats.best_ms, best)
        return best

    def calibrate(self, seconds: float = 1.0) -> float:
        """Take readings for `seconds` to find the fast-epoch reference time."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.reading()
            time.sleep(0.02)
        return self.stats.best_ms

    def fast(self) -> bool:
        """One reading, within the allowed slowdown of the best?"""
        return self.reading() <= self.stats.best_ms * self.max_slowdown

    def wait_until_fast(self) -> bool:
        """Block until a fast reading (True), or `max_wait_s` passed (False: go ahead unguarded)."""
        start = time.perf_counter()
        while not self.fast():
            if time.perf_counter() - start > self.max_wait_s:
                self.stats.unguarded += 1
                return False
            time.sleep(0.05)
        self.stats.waited_s += time.perf_counter() - start
        return True
