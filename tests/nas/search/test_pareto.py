"""Pareto masks and hypervolume against brute-force references."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume

from nas.search import hypervolume, pareto_mask, to_minimization


def exact_hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Coordinate compression: the grid cells spanned by all coordinates; a cell counts when some
    point weakly dominates its lower corner (O(cells * n), exact, for small inputs)."""
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    axes = [np.unique(np.append(pts[:, k], ref[k])) for k in range(pts.shape[1])]
    total = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        lo = np.array([axes[k][i] for k, i in enumerate(cell)])
        if np.any(np.all(pts <= lo, axis=1)):
            total += float(np.prod([axes[k][i + 1] - axes[k][i] for k, i in enumerate(cell)]))
    return total


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_pareto_mask_matches_brute_force_with_ties(
    dims: int, brute_front: Callable[[np.ndarray], np.ndarray]
) -> None:
    rng = np.random.default_rng(dims)
    for trial in range(40):
        n = int(rng.integers(1, 120))
        # Few distinct values: many ties on single coordinates and exact duplicates.
        pts = rng.integers(0, 6, size=(n, dims)).astype(float)
        if trial % 3 == 0:
            pts = np.vstack([pts, pts[: n // 3]])  # explicit duplicates
        if trial % 5 == 0:
            pts = pts * rng.choice([-1.0, 1.0], size=dims) + rng.normal(0, 1e-9, size=(1, dims))
        mask = pareto_mask(pts)
        assert mask.dtype == bool and mask.shape == (len(pts),)
        np.testing.assert_array_equal(mask, brute_front(pts))


def test_pareto_mask_continuous_data(brute_front: Callable[[np.ndarray], np.ndarray]) -> None:
    rng = np.random.default_rng(7)
    for d in (2, 3):
        pts = rng.random((300, d))
        pts[:, 1] = 1 - pts[:, 0] + 0.05 * pts[:, 1]  # a dense front
        np.testing.assert_array_equal(pareto_mask(pts), brute_front(pts))


def test_pareto_mask_edge_cases() -> None:
    assert pareto_mask(np.zeros((0, 2))).shape == (0,)
    assert pareto_mask(np.array([[3.0, 1.0]])).tolist() == [True]
    assert pareto_mask(np.ones((4, 3))).tolist() == [True] * 4  # duplicates are all kept
    assert pareto_mask(np.array([[1.0, 1.0], [1.0, 2.0], [2.0, 1.0], [1.0, 1.0]])).tolist() == [
        True,
        False,
        False,
        True,
    ]
    inf = np.inf
    assert pareto_mask(np.array([[inf, 1.0], [1.0, inf], [inf, inf], [-inf, 5.0]])).tolist() == [
        True,
        False,
        False,
        True,
    ]
    assert pareto_mask([[1, 2], [2, 1], [2, 2]]).tolist() == [True, True, False]  # lists and ints


def test_rows_with_nan_are_never_on_the_front_and_do_not_hang() -> None:
    nan = np.nan
    pts = np.array([[1.0, 2.0], [nan, 0.0], [2.0, 1.0], [0.0, nan], [3.0, 3.0]])
    assert pareto_mask(pts).tolist() == [True, False, True, False, False]
    assert pareto_mask(np.full((3, 2), nan)).tolist() == [False, False, False]


def test_to_minimization() -> None:
    v = np.array([[70.0, 3.0], [80.0, 4.0]])
    np.testing.assert_array_equal(to_minimization(v, ["maximize", "minimize"]), [[-70.0, 3.0], [-80.0, 4.0]])
    np.testing.assert_array_equal(to_minimization(v, ["minimize", "minimize"]), v)


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_matches_exact_and_optuna(dims: int) -> None:
    rng = np.random.default_rng(10 + dims)
    for trial in range(25):
        n = int(rng.integers(1, 14 if dims == 3 else 40))
        if trial % 2:
            pts = rng.integers(0, 5, size=(n, dims)).astype(float)  # ties and duplicates
        else:
            pts = rng.random((n, dims)) * 4
        ref = (
            np.full(dims, 4.5) if trial % 3 else np.array([3.0] + [4.5] * (dims - 1))
        )  # some points beyond ref
        got = hypervolume(pts, ref)
        assert got == pytest.approx(exact_hypervolume(pts, ref), rel=1e-9, abs=1e-12)
        inside = pts[np.all(pts < ref, axis=1)]
        if len(inside):
            assert got == pytest.approx(float(compute_hypervolume(inside, ref)), rel=1e-9)


def test_hypervolume_edge_cases() -> None:
    ref = np.array([10.0, 10.0])
    assert hypervolume(np.zeros((0, 2)), ref) == 0.0
    assert hypervolume(np.array([[10.0, 1.0], [11.0, 0.0]]), ref) == 0.0  # on or beyond the reference
    assert hypervolume(np.array([[2.0, 4.0]]), ref) == pytest.approx(8 * 6)
    assert hypervolume(np.array([[2.0, 4.0], [2.0, 4.0]]), ref) == pytest.approx(48)
    assert hypervolume(np.array([[2.0, 4.0], [4.0, 2.0]]), ref) == pytest.approx(48 + 48 - 36)
    assert hypervolume(np.array([[2.0, 4.0], [np.nan, 0.0]]), ref) == pytest.approx(48)
    assert hypervolume(np.array([[3.0], [1.0], [7.0]]), np.array([10.0])) == pytest.approx(9)
    # Adding a dominated point changes nothing; adding a non-dominated one only increases it.
    base = np.array([[1.0, 5.0], [3.0, 3.0], [5.0, 1.0]])
    hv = hypervolume(base, ref)
    assert hypervolume(np.vstack([base, [[4.0, 4.0]]]), ref) == pytest.approx(hv)
    assert hypervolume(np.vstack([base, [[2.0, 2.0]]]), ref) > hv
    pts3 = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 2.0, 2.0], [2.0, 2.0, 2.0]])
    assert hypervolume(pts3, np.full(3, 4.0)) == pytest.approx(exact_hypervolume(pts3, np.full(3, 4.0)))


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_improvement_is_the_difference_of_hypervolumes(dims: int) -> None:
    from nas.search._pareto import hypervolume_improvement

    rng = np.random.default_rng(30 + dims)
    ref = np.full(dims, 5.0)
    for trial in range(12):
        n_front = int(rng.integers(0, 8))
        front = (
            rng.integers(0, 6, size=(n_front, dims)).astype(float)
            if trial % 2
            else rng.random((n_front, dims)) * 5.5
        )
        cands = np.vstack(
            [rng.random((15, dims)) * 5.5, front[:2], np.full((1, dims), 6.0)]
        )  # incl. on-front and beyond-ref
        got = hypervolume_improvement(front, cands, ref)
        base = hypervolume(front, ref) if n_front else 0.0
        want = [hypervolume(np.vstack([front, c[None, :]]), ref) - base for c in cands]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        assert np.all(got >= 0) and got[-1] == 0.0
