"""Estimation: plain sums, the overhead model and its fit, and the missing-key error."""

from __future__ import annotations

import numpy as np
import pytest

import latency_tables as lt
import search_spaces as ss


def synthetic_table(space: ss.SearchSpace) -> lt.LatencyTable:
    """Every key of `space` with a made-up latency derived from its position."""
    t = lt.LatencyTable("local-cpu", {"spaces": [space.name]})
    for i, key in enumerate(lt.all_keys(space)):
        t.set(key, lt.Entry(0.01 * (i + 1), 0.001, 10))
    return t


@pytest.mark.parametrize("name", ["mbv3_tiny", "nb201", "vit_tiny"])
def test_estimate_is_the_sum_of_entries(name: str) -> None:
    space = ss.get_space(name)
    table = synthetic_table(space)
    for seed in range(5):
        arch = space.sample(seed=seed)
        keys = lt.op_keys(space, arch)
        expected = sum(table.get(k).mean for k in keys)
        assert lt.estimate(table, space, arch) == pytest.approx(expected, rel=1e-12)
        assert [k for k, _ in lt.breakdown(table, space, arch)] == keys


def test_overhead_model_is_applied_only_when_asked() -> None:
    space = ss.get_space("nb201")
    table = synthetic_table(space)
    arch = space.sample(seed=1)
    plain = lt.estimate(table, space, arch)
    table.overhead["nb201"] = lt.OverheadModel(a=1.1, b=0.002, c=0.05)
    n = len(lt.op_keys(space, arch))
    assert lt.estimate(table, space, arch) == pytest.approx(1.1 * plain + 0.002 * n + 0.05)
    assert lt.estimate(table, space, arch, overhead=False) == pytest.approx(plain)
    other = ss.get_space("vit_tiny")  # a model for another space does not leak
    vt = synthetic_table(other)
    vt.overhead["nb201"] = table.overhead["nb201"]
    a = other.sample(seed=0)
    assert lt.estimate(vt, other, a) == lt.estimate(vt, other, a, overhead=False)


def test_missing_key_names_it() -> None:
    space = ss.get_space("mbv3_tiny")
    table = synthetic_table(space)
    arch = space.largest()
    gone = lt.op_keys(space, arch)[3]
    table._parts[None].pop(gone)
    with pytest.raises(
        lt.MissingOpKey,
        match=rf"No entry for op key '{gone}' in the 'local-cpu' latency table at "
        r"resolution 32; measure it with `nas latency measure --device "
        r"local-cpu --space mbv3_tiny`",
    ) as info:
        lt.estimate(table, space, arch)
    assert isinstance(info.value, KeyError) and info.value.key == gone


def test_bad_arch_is_refused() -> None:
    space = ss.get_space("mbv3_tiny")
    with pytest.raises(ss.InvalidArch):
        lt.estimate(synthetic_table(space), space, {**space.smallest(), "r": 17})


def test_fit_recovers_coefficients_and_ignores_an_outlier() -> None:
    rng = np.random.default_rng(0)
    s = rng.uniform(1, 10, 40)
    n = rng.integers(8, 20, 40)
    y = 1.2 * s + 0.01 * n + 0.3 + rng.normal(0, 0.001, 40)
    y[5] += 5.0  # one network timed during a burst of load
    m = lt.fit_overhead_model(s, n, y, seed=7)
    assert m.a == pytest.approx(1.2, abs=0.01) and m.b == pytest.approx(0.01, abs=0.002)
    assert m.c == pytest.approx(0.3, abs=0.03) and m.samples == 40 and m.seed == 7 and m.rmse_ms < 0.01
    assert m.apply(2.0, 10) == pytest.approx(1.2 * 2 + 0.1 + 0.3, abs=0.05)


@pytest.mark.parametrize(
    "args, match",
    [
        (([1.0, 2.0], [1, 2], [1.0, 2.0]), "at least 3"),
        (([1.0, 2.0, 3.0], [1, 2], [1.0, 2.0, 3.0]), "equal lengths"),
        (([1.0, 2.0, float("nan")], [1, 2, 3], [1.0, 2.0, 3.0]), "finite"),
    ],
)
def test_fit_errors(args, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lt.fit_overhead_model(*args)


def test_fit_keeps_the_op_count_term_only_when_it_helps() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(1, 10, 40)
    n = np.round(2 * s + rng.normal(0, 1, 40)).astype(int)  # op counts track the sums, as in real spaces
    y = 1.2 * s + 0.3 + rng.normal(0, 0.05, 40)
    m = lt.fit_overhead_model(s, n, y)
    assert m.b == 0.0 and m.a == pytest.approx(1.2, abs=0.03)
    y2 = 1.2 * s + 0.05 * n + 0.3 + rng.normal(0, 0.01, 40)
    assert lt.fit_overhead_model(s, n, y2).b == pytest.approx(0.05, abs=0.01)
