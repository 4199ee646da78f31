"""Validation metrics and the end-to-end check against the device (tiny and cheap here)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import latency_tables as lt
import search_spaces as ss
from tests.latency_tables.conftest import TINY


def naive_tau_b(x, y) -> float:
    conc = disc = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        a, b = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if a == 0 and b == 0:
            continue
        if a == 0:
            tx += 1
        elif b == 0:
            ty += 1
        elif a == b:
            conc += 1
        else:
            disc += 1
    return (conc - disc) / np.sqrt((conc + disc + tx) * (conc + disc + ty))


def test_kendall_tau() -> None:
    assert lt.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert lt.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 30).astype(float)  # many ties
    assert lt.kendall_tau(x, y) == pytest.approx(naive_tau_b(x, y))
    assert np.isnan(lt.kendall_tau([1.0], [2.0])) and np.isnan(lt.kendall_tau([1, 1], [1, 2]))
    with pytest.raises(ValueError, match="same length"):
        lt.kendall_tau([1, 2], [1, 2, 3])


def test_error_metrics() -> None:
    m = lt.error_metrics([1.05, 2.5, 2.7], [1.0, 2.0, 3.0])
    assert m["within"] == pytest.approx(2 / 3) and m["mape"] == pytest.approx((0.05 + 0.25 + 0.1) / 3)
    assert m["rmse_ms"] == pytest.approx(np.sqrt((0.05**2 + 0.5**2 + 0.3**2) / 3)) and m["kendall_tau"] == 1.0
    with pytest.raises(ValueError, match="equally long"):
        lt.error_metrics([1.0], [1.0, 2.0])


def test_validate_end_to_end(tmp_path) -> None:
    space = ss.get_space("mbv3_tiny")
    archs = lt.sample_archs(space, 4, seed=5)
    keys = sorted({k for a in archs for k in lt.op_keys(space, a)})
    table = lt.measure_table(space, "local-cpu", keys=keys, protocol=TINY).table
    png = tmp_path / "plot.png"
    report = lt.validate(table, space, samples=4, seed=5, protocol=TINY, plot=png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(report.measured) == len(report.predicted) == 4 and not report.has_overhead
    assert report.predicted == report.plain
    lines = report.result_lines()
    assert (
        lines[0].startswith("RESULT lut_within_10pct[local-cpu/mbv3_tiny] ") and "target >=0.95" in lines[0]
    )
    assert lines[0].endswith(("PASS", "MISS")) and lines[1].startswith(
        "RESULT lut_kendall_tau[local-cpu/mbv3_tiny]"
    )
    assert any(ln.startswith("RESULT lut_mape[") for ln in lines) and any(
        "lut_rmse_ms[" in ln for ln in lines
    )
    assert report.to_dict()["space"] == "mbv3_tiny"


def test_validate_errors() -> None:
    space = ss.get_space("mbv3_tiny")
    empty = lt.LatencyTable("local-cpu")
    with pytest.raises(lt.MissingOpKey, match="No entry for op key 'Conv-input"):
        lt.validate(empty, space, samples=3, protocol=TINY)
    with pytest.raises(ValueError, match="samples >= 2"):
        lt.validate(empty, space, samples=1)
    with pytest.raises(ValueError, match="cannot be measured"):
        lt.validate(lt.LatencyTable("note10"), ss.get_space("ofa_mbv3_w12"), samples=3)


def test_result_line_format() -> None:
    from latency_tables._validate import result_line

    assert (
        result_line("lut_within_10pct[d/s]", 0.97, ">=0.95")
        == "RESULT lut_within_10pct[d/s] 0.970 target >=0.95 PASS"
    )
    assert result_line("x", 0.5, ">=0.9").endswith("MISS") and result_line("y", 1.23456) == "RESULT y 1.235"
