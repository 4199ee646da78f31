"""Rank and error metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

import predictors as pr


def test_kendall_tau_hand_computed() -> None:
    # 6 pairs, only (2, 3) discordant: (5 - 1) / 6.
    assert pr.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert pr.kendall_tau([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


def test_spearman_hand_computed() -> None:
    # rank differences (0, -1, 1, 0): 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    assert pr.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_mape_and_within_pct() -> None:
    assert pr.mape([110, 90, 100], [100, 100, 100]) == pytest.approx(20 / 3)
    # 105: 5% in, 111: 11% out, 90: exactly 10% in, 100: in.
    assert pr.within_pct([105, 111, 90, 100], [100, 100, 100, 100]) == pytest.approx(0.75)
    assert pr.within_pct([105, 111, 90, 100], [100, 100, 100, 100], pct=5) == pytest.approx(0.5)


def test_rank_metrics_dict() -> None:
    m = pr.rank_metrics(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4]))
    assert set(m) == {"kendall_tau", "spearman", "mape", "within_10pct"}
    assert m["kendall_tau"] == pytest.approx(4 / 6)
    assert m["mape"] == pytest.approx(100 * (1 / 3 + 1 / 2) / 4)
    assert math.isnan(pr.rank_metrics([1, 2], [0, 1])["mape"])


def test_constant_input_gives_nan() -> None:
    assert math.isnan(pr.kendall_tau([1, 1, 1], [1, 2, 3]))


@pytest.mark.parametrize(
    "fn, args, match",
    [
        (pr.kendall_tau, ([1, 2, 3], [1, 2]), "pred has 3 values but true has 2"),
        (pr.kendall_tau, ([1], [1]), "at least 2"),
        (pr.spearman, ([1, np.nan], [1, 2]), r"pred\[1\] = nan"),
        (pr.mape, ([1, 2], [1, 0]), r"true\[1\] = 0"),
        (pr.within_pct, ([1, 2], [1, 2], -1), "pct >= 0"),
        (pr.kendall_tau, ([[1, 2]], [[1, 2]]), "must be 1-D"),
    ],
)
def test_bad_inputs(fn, args, match) -> None:
    with pytest.raises(ValueError, match=match):
        fn(*args)
