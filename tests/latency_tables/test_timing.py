"""The timing protocol: modules and callables, thread pinning, trimmed statistics, bad input."""

from __future__ import annotations

import time

import pytest
import torch

from latency_tables import LatencyStats, measure, summarize


def test_summarize_hand_computed() -> None:
    samples = [1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 100.0]
    s = summarize(samples, trim=0.1)  # drops 1.0 and 100.0
    assert s.count == 10
    assert s.mean == pytest.approx(2.5)
    assert s.std == pytest.approx(0.5)
    assert s.p50 == pytest.approx(2.5)
    assert s.min == 1.0
    assert s.p90 == pytest.approx(3.0 + 0.1 * 97.0)
    assert summarize([4.0]).mean == 4.0
    assert set(s.to_dict()) == {"count", "mean", "std", "p50", "p90", "min"}


def test_measure_module_restores_state() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Dropout(0.5))
    net.train()
    threads = torch.get_num_threads()
    s = measure(net, torch.randn(1, 16), warmup=2, iters=20, threads=1)
    assert isinstance(s, LatencyStats) and s.count == 20
    assert 0 < s.min <= s.p50 <= s.p90 and s.mean > 0
    assert net.training and torch.get_num_threads() == threads


def test_measure_callable_and_min_time() -> None:
    calls = []

    def fn(a: int, b: int) -> int:
        calls.append(1)
        time.sleep(0.001)
        return a + b

    s = measure(fn, (1, 2), warmup=3, iters=5, min_time_s=0.05, threads=None)
    assert s.count >= 5 and len(calls) == s.count + 3
    assert s.p50 >= 1.0  # ms
    assert measure(lambda: None, iters=10, max_iters=10, min_time_s=10).count == 10


def test_thread_clock_leaves_out_sleeping() -> None:
    s = measure(lambda: time.sleep(0.002), warmup=0, iters=5, clock="thread")
    assert s.p50 < 1.0  # the thread sleeps: wall time 2 ms, CPU time ~0
    net = torch.nn.Linear(64, 64)
    assert measure(net, torch.randn(1, 64), iters=10, clock="thread").mean > 0


def test_threads_are_pinned_during_measurement() -> None:
    seen = []
    measure(lambda: seen.append(torch.get_num_threads()), iters=3, warmup=0, threads=1)
    assert seen == [1, 1, 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iters": 0}, "iters"),
        ({"warmup": -1}, "warmup"),
        ({"min_time_s": -1.0}, "min_time_s"),
        ({"threads": 0}, "threads"),
        ({"trim": 0.5}, "trim"),
        ({"iters": 10, "max_iters": 5}, "max_iters"),
        ({"clock": "cpu"}, "Unknown clock 'cpu'"),
        ({"clock": "thread", "threads": 2}, "needs threads=1"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        measure(lambda: None, **kwargs)


def test_bad_target_and_samples() -> None:
    with pytest.raises(TypeError, match="callable"):
        measure(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="No timing samples"):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, float("nan")])
