"""The harness: interleaved timing, table measurement, resuming after an interruption or a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import latency_tables as lt
import search_spaces as ss
from tests.latency_tables.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]


def test_time_interleaved_counts_and_restores_threads() -> None:
    calls = {"a": [], "b": []}
    threads = torch.get_num_threads()
    seen = []

    def make(name):
        def fn():
            calls[name].append(1)
            seen.append(torch.get_num_threads())

        return fn

    p = lt.Protocol(warmup=2, rounds=3, iters=4, min_time_s=0.0)
    stats = lt.time_interleaved({n: make(n) for n in calls}, p, threads=1, seed=0)
    assert stats["a"].count == stats["b"].count == 12
    # warm-up, then per round one untimed re-warm call and the timed ones
    assert len(calls["a"]) == 2 + 3 * (1 + 4)
    assert set(seen) == {1} and torch.get_num_threads() == threads
    assert lt.time_interleaved({}, p) == {}


def test_min_time_extends_a_round() -> None:
    p = lt.Protocol(warmup=0, rounds=2, iters=1, min_time_s=0.02)
    s = lt.time_interleaved({"sleep": lambda: time.sleep(0.002)}, p)["sleep"]
    assert s.count >= 2 * 5 and s.p50 >= 2.0


def test_thread_clock_leaves_out_sleeping() -> None:
    p = lt.Protocol(warmup=0, rounds=2, iters=3, min_time_s=0.0, clock="thread")
    s = lt.time_interleaved({"sleep": lambda: time.sleep(0.005)}, p)["sleep"]
    assert s.count == 6 and s.p90 < 1.0  # ms of CPU time, not the 5 ms slept


def _keys(n: int) -> list[str]:
    space = ss.get_space("mbv3_tiny")
    return lt.all_keys(space, [16])[:n]


def test_measure_table_writes_a_complete_table(tmp_path) -> None:
    space = ss.get_space("mbv3_tiny")
    keys = _keys(6)
    seen = []
    out = tmp_path / "t.json"
    r = lt.measure_table(
        space,
        "local-cpu",
        keys=keys,
        out=out,
        protocol=TINY,
        progress=lambda done, total, key: seen.append((done, total)),
    )
    assert sorted(r.measured) == sorted(keys) and r.skipped == []
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    t = lt.LatencyTable.load(out)
    assert sorted(t.keys()) == sorted(keys) and t.meta["complete"] and t.meta["source"] == "measured"
    assert t.meta["protocol"] == TINY.to_dict() and t.meta["spaces"] == ["mbv3_tiny"]
    assert "torch" in t.meta["versions"] and t.meta["device"]["name"] == "local-cpu"
    e = t.get(keys[0])
    assert e.count == TINY.rounds * TINY.iters and 0 < e.p50 <= e.p90 and e.mean > 0
    again = lt.measure_table(space, "local-cpu", keys=keys, out=out, protocol=TINY)
    assert again.measured == [] and sorted(again.skipped) == sorted(keys)
    assert lt.LatencyTable.load(out) == t  # nothing re-measured, nothing changed


def test_interrupted_measurement_resumes_without_remeasuring(tmp_path) -> None:
    space = ss.get_space("mbv3_tiny")
    keys = _keys(10)
    out = tmp_path / "t.json"

    def stop_after_two_chunks(done: int, total: int, key: str) -> None:
        if done >= 2 * TINY.chunk:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lt.measure_table(
            space, "local-cpu", keys=keys, out=out, protocol=TINY, progress=stop_after_two_chunks
        )
    partial = lt.LatencyTable.load(out)
    assert len(partial) == 2 * TINY.chunk and not partial.meta["complete"]
    r = lt.measure_table(space, "local-cpu", keys=keys, out=out, protocol=TINY)
    assert sorted(r.skipped) == partial.keys() and set(r.measured).isdisjoint(r.skipped)
    assert sorted(r.measured + r.skipped) == sorted(keys)
    final = lt.LatencyTable.load(out)
    assert final.meta["complete"] and all(final.get(k) == partial.get(k) for k in partial.keys())


@pytest.mark.slow
def test_killed_measurement_resumes_without_remeasuring(tmp_path) -> None:
    """A real SIGKILL mid-run: the file holds whole chunks only; the rerun measures the rest once."""
    out = tmp_path / "killed.json"
    script = (
        "import latency_tables as lt, search_spaces as ss\n"
        "sp = ss.get_space('mbv3_tiny')\n"
        "p = lt.Protocol(warmup=1, rounds=2, iters=2, min_time_s=0.15, chunk=2)\n"
        f"lt.measure_table(sp, 'local-cpu', keys=lt.all_keys(sp, [16])[:12], out={str(out)!r}, protocol=p)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and len(lt.LatencyTable.load(out)) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the measurement finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    partial = lt.LatencyTable.load(out)  # never half-written
    assert 2 <= len(partial) < 12 and len(partial) % 2 == 0 and not partial.meta["complete"]
    p = lt.Protocol(warmup=1, rounds=2, iters=2, min_time_s=0.15, chunk=2)
    r = lt.measure_table(ss.get_space("mbv3_tiny"), "local-cpu", keys=_keys(12), out=out, protocol=p)
    assert sorted(r.skipped) == partial.keys() and len(r.measured) == 12 - len(partial)
    assert set(r.measured).isdisjoint(r.skipped) and lt.LatencyTable.load(out).meta["complete"]


def test_resume_refuses_other_devices_and_protocols(tmp_path) -> None:
    space = ss.get_space("nb201")
    out = tmp_path / "t.json"
    lt.measure_table(space, "local-cpu", keys=lt.all_keys(space)[:2], out=out, protocol=TINY)
    with pytest.raises(ValueError, match="for device 'local-cpu', not 'local-cpu-ort'"):
        lt.measure_table(space, "local-cpu-ort", keys=lt.all_keys(space)[:2], out=out, protocol=TINY)
    with pytest.raises(ValueError, match=r"was measured with protocol .*\(--fresh\)"):
        lt.measure_table(space, "local-cpu", out=out, protocol=lt.Protocol(rounds=1, iters=1))
    fresh = lt.measure_table(
        space,
        "local-cpu",
        keys=lt.all_keys(space)[:1],
        out=out,
        protocol=lt.Protocol(rounds=1, iters=1),
        resume=False,
    )
    assert len(fresh.table) == 1 and len(lt.LatencyTable.load(out)) == 1
    imported = lt.LatencyTable("local-cpu", {"source": "csv"})
    imported.save(out)
    with pytest.raises(ValueError, match="imported table"):
        lt.measure_table(space, "local-cpu", keys=lt.all_keys(space)[:1], out=out, protocol=TINY)


def test_measure_errors() -> None:
    space = ss.get_space("mbv3_tiny")
    with pytest.raises(ValueError, match="cannot be measured on this machine"):
        lt.measure_table(space, "note10", keys=_keys(1))
    with pytest.raises(KeyError, match="Unknown device"):
        lt.measure_table(space, "tpu-v9", keys=_keys(1))
    with pytest.raises(ValueError, match="Resolution 64 is not allowed"):
        lt.measure_table(space, "local-cpu", resolutions=[64], protocol=TINY)
    with pytest.raises(ValueError, match="Unknown op"):
        lt.measure_table(space, "local-cpu", keys=["Nope-input:1x1x1"], protocol=TINY)


def test_whole_networks_and_overhead_fit() -> None:
    space = ss.get_space("mbv3_tiny")
    archs = lt.sample_archs(space, 4, seed=1)
    assert len({space.arch_id(a) for a in archs}) == 4
    keys = sorted({k for a in archs for k in lt.op_keys(space, a)})
    table = lt.measure_table(space, "local-cpu", keys=keys, protocol=TINY).table
    stats = lt.measure_networks(space, archs, "local-cpu", protocol=TINY)
    assert len(stats) == 4 and all(s.mean > 0 for s in stats)
    model = lt.fit_overhead(table, space, samples=4, seed=1, protocol=TINY)
    assert table.overhead["mbv3_tiny"] is model and model.samples == 4 and model.seed == 1
    with pytest.raises(ValueError, match="samples >= 1"):
        lt.sample_archs(space, 0, seed=0)


def test_onnxruntime_device() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    space = ss.get_space("nb201")
    keys = [
        "nb201_add-input:8x8x64",
        "nor_conv_1x1-input:16x16x32-output:16x16x32",
        "nb201_zeros-input:8x8x64",
    ]
    entries = lt.measure_ops(keys, "local-cpu-ort", TINY)
    assert set(entries) == set(keys) and all(e.mean > 0 for e in entries.values())
    (s,) = lt.measure_networks(space, [space.sample(seed=0)], "local-cpu-ort", protocol=TINY)
    assert s.mean > 0
    assert "onnxruntime" in lt.device_versions(lt.get_device("local-cpu-ort"))


def test_overhead_fit_uses_only_covered_subnets() -> None:
    space = ss.get_space("mbv3_tiny")
    table = lt.measure_table(space, "local-cpu", resolutions=[16], protocol=TINY).table
    assert table.meta["resolutions"] == {"mbv3_tiny": [16]}
    model = lt.fit_overhead(table, space, samples=3, protocol=TINY)
    assert model.samples == 3
    with pytest.raises(lt.MissingOpKey):
        lt.fit_overhead(lt.LatencyTable("local-cpu"), space, samples=3, protocol=TINY)
