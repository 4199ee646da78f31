"""Predictors on a space's structural features (`space_features`, feature set "features") and `gp_ard`."""

from __future__ import annotations

import numpy as np
import pytest

import predictors as pr

ss = pytest.importorskip("search_spaces")
needs_nb201 = pytest.mark.skipif("nb201" not in ss.list_spaces(), reason="nb201 space not available")
needs_mbv3 = pytest.mark.skipif("mbv3_tiny" not in ss.list_spaces(), reason="mbv3_tiny space not available")


def _live_cell_objective(space, archs) -> np.ndarray:
    """Synthetic accuracy that, like NB201's, depends on the live cell only: chance when the
    output is unreachable, else more live convs and a deeper conv path help."""
    out = []
    for a in archs:
        f = dict(zip(space.feature_names(), space.features(a)))
        live = space.canonical(a)["edges"]
        convs = sum(op.startswith("nor_conv") for op in live)
        score = 50 + 4 * convs + 6 * f["max_path_convs"] - 3 * f["skip_path"]
        out.append(10.0 if f["disconnected"] else score)
    return np.asarray(out)


@needs_nb201
def test_arch_features_use_space_features() -> None:
    space = ss.get_space("nb201")
    archs = [space.sample(seed=i) for i in range(20)]
    X = pr.arch_features(space, archs, "features")
    np.testing.assert_array_equal(X, np.stack([space.features(a) for a in archs]))
    assert pr.arch_features(space, archs, "features+cost").shape == (20, len(space.feature_names()) + 3)
    assert pr.arch_features(space, [], "features").shape == (0, len(space.feature_names()))
    assert pr.arch_features(space, [], "features+cost").shape == (0, len(space.feature_names()) + 3)


@needs_mbv3
def test_space_without_features_falls_back_to_encode() -> None:
    space = ss.get_space("mbv3_tiny")
    archs = [space.sample(seed=i) for i in range(5)]
    np.testing.assert_array_equal(
        pr.arch_features(space, archs, "features"), pr.arch_features(space, archs, "encoding")
    )
    assert pr.arch_features(space, [], "features").shape == (0, space.encoding_length())


@needs_nb201
def test_features_rank_live_cells_better_than_one_hot(tmp_path) -> None:
    space = ss.get_space("nb201")
    train = [space.sample(seed=i) for i in range(100)]
    test = [space.sample(seed=10_000 + i) for i in range(400)]
    y, yt = _live_cell_objective(space, train), _live_cell_objective(space, test)
    on_features = pr.ArchPredictor(space, "gp_ard", features="features", n_restarts=0).fit(train, y)
    on_encoding = pr.ArchPredictor(space, "gp", features="encoding", n_restarts=0).fit(train, y)
    tau_f = pr.kendall_tau(on_features.predict(test).mean, yt)
    tau_e = pr.kendall_tau(on_encoding.predict(test).mean, yt)
    assert tau_f > 0.85 and tau_f > tau_e + 0.1, (tau_f, tau_e)
    # Cells with the same live cell get the same prediction.
    canon = [space.canonical(a) for a in test[:50]]
    np.testing.assert_allclose(on_features.predict(canon).mean, on_features.predict(test[:50]).mean)
    on_features.save(tmp_path / "m")
    q = pr.ArchPredictor.load(tmp_path / "m")
    assert q.features == "features"
    np.testing.assert_allclose(q.predict(test).mean, on_features.predict(test).mean, rtol=1e-10)


def test_gp_ard_learns_one_length_scale_per_feature(tmp_path) -> None:
    rng = np.random.default_rng(0)
    X = rng.random((60, 3))
    y = 5 * X[:, 0] + 0.01 * rng.normal(size=60)  # only feature 0 matters
    p = pr.create_predictor("gp_ard", seed=0, n_restarts=0).fit(X, y)
    assert isinstance(p, pr.GPPredictor) and p.hparams["ard"] is True
    scales = p._model.kernel_.k1.k2.length_scale
    assert scales.shape == (3,) and scales[0] < scales[1] and scales[0] < scales[2]
    p.save(tmp_path / "p")
    q = pr.load_predictor(tmp_path / "p")
    assert type(q) is type(p) and q.config()["predictor"] == "gp_ard"


@needs_nb201
def test_accuracy_predictor_defaults_to_features() -> None:
    p = pr.accuracy_predictor(ss.get_space("nb201"), n_restarts=0)
    assert p.features == "features" and p.predictor.registry_name == pr.DEFAULT_FEATURES_PREDICTOR


@needs_mbv3
def test_accuracy_predictor_without_space_features_uses_the_default_predictor() -> None:
    space = ss.get_space("mbv3_tiny")
    p = pr.accuracy_predictor(space)
    assert p.predictor.registry_name == pr.DEFAULT_PREDICTOR
    archs = [space.sample(seed=i) for i in range(12)]
    p.fit(archs, np.arange(12.0))
    assert p.predict(archs[:3]).mean.shape == (3,)
