"""ArchPredictor / latency_predictor on real spaces, and CSV reading."""

from __future__ import annotations

import json

import numpy as np
import pytest

import predictors as pr

ss = pytest.importorskip("search_spaces")
needs_nb201 = pytest.mark.skipif("nb201" not in ss.list_spaces(), reason="nb201 space not available")
needs_mbv3 = pytest.mark.skipif("mbv3_tiny" not in ss.list_spaces(), reason="mbv3_tiny space not available")


def _nb201_data(n: int, seed: int):
    space = ss.get_space("nb201")
    archs = [space.sample(seed=seed * 1000 + i) for i in range(n)]
    # A synthetic objective with the shape of NB201 accuracies: convs help, "none" hurts.
    y = np.array(
        [
            60 + 4 * sum(o.startswith("nor_conv") for o in a["edges"]) - 3 * a["edges"].count("none")
            for a in archs
        ]
    )
    return space, archs, y.astype(float)


@needs_nb201
def test_fit_predict_save_load(tmp_path) -> None:
    space, archs, y = _nb201_data(60, seed=0)
    _, test, yt = _nb201_data(100, seed=1)
    p = pr.ArchPredictor(space, "gp", n_restarts=0).fit(archs, y)
    pred = p.predict(test)
    assert pr.kendall_tau(pred.mean, yt) > 0.5
    p.save(tmp_path / "m")
    q = pr.ArchPredictor.load(tmp_path / "m")
    assert q.space.name == "nb201" and q.features == "encoding"
    np.testing.assert_allclose(q.predict(test).mean, pred.mean, rtol=1e-12)
    assert json.loads((tmp_path / "m" / "arch_predictor.json").read_text())["space"] == {"name": "nb201"}


@needs_nb201
def test_cost_features_and_log_target() -> None:
    space, archs, y = _nb201_data(40, seed=0)
    feats = pr.arch_features(space, archs, "encoding+cost")
    assert feats.shape == (40, space.encoding_length() + 3)
    p = pr.latency_predictor(space, "random_forest", n_estimators=30).fit(archs, y)
    assert p.log_target and p.features == "encoding+cost"
    out = p.predict(archs[:5])
    assert (out.mean > 0).all() and (out.std >= 0).all()
    with pytest.raises(ValueError, match=r"y\[2\] = -1.0; log_target=True needs positive"):
        pr.latency_predictor(space).fit(archs[:3], [1.0, 2.0, -1.0])


@needs_nb201
def test_bad_inputs(tmp_path) -> None:
    space, archs, y = _nb201_data(10, seed=0)
    with pytest.raises(ValueError, match="Unknown feature set 'graph'"):
        pr.ArchPredictor(space, features="graph")
    with pytest.raises(ValueError, match="empty training set"):
        pr.ArchPredictor(space).fit([], [])
    with pytest.raises(ValueError, match="10 architectures but 9 targets"):
        pr.ArchPredictor(space).fit(archs, y[:9])
    with pytest.raises(ss.InvalidArch):
        pr.ArchPredictor(space).fit([{"edges": ["conv9x9"] * 6}], [1.0])
    with pytest.raises(pr.NotFittedError):
        pr.ArchPredictor(space).predict(archs)
    with pytest.raises(FileNotFoundError, match="arch_predictor.json"):
        pr.ArchPredictor.load(tmp_path)


@needs_nb201
def test_read_arch_table(tmp_path) -> None:
    space = ss.get_space("nb201")
    a = space.arch_str(space.sample(seed=0))
    good = tmp_path / "good.csv"
    good.write_text(f"arch,acc\n{a},71.5\n{a},70\n")
    archs, y = pr.read_arch_table(good, space, "acc")
    assert len(archs) == 2 and y.tolist() == [71.5, 70.0]
    with pytest.raises(ValueError, match="no column 'latency'; columns: arch, acc"):
        pr.read_arch_table(good, space, "latency")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"arch,acc\n{a},71.5\n|nope~0|,70\n")
    with pytest.raises(ValueError, match="bad.csv line 3: bad architecture"):
        pr.read_arch_table(bad, space, "acc")
    bad.write_text(f"arch,acc\n{a},n/a\n")
    with pytest.raises(ValueError, match="line 2: acc = 'n/a' is not a number"):
        pr.read_arch_table(bad, space, "acc")
    with pytest.raises(FileNotFoundError):
        pr.read_arch_table(tmp_path / "missing.csv", space, "acc")


@needs_mbv3
def test_latency_features_on_mbv3() -> None:
    space = ss.get_space("mbv3_tiny")
    archs = [space.sample(seed=i) for i in range(30)]
    macs = np.array([space.cost(a)["macs"] for a in archs], dtype=float)
    y = 0.05 + macs / 2e7  # latency-like: linear in MACs
    p = pr.latency_predictor(space, "gp", n_restarts=0).fit(archs[:20], y[:20])
    assert pr.within_pct(p.predict(archs[20:]).mean, y[20:], 10) >= 0.8
