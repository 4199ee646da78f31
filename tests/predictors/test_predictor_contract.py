"""Contract suite run against every registered predictor (fit/predict/save/load/errors)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import predictors as pr

# Small hyper-parameters so the whole suite stays fast; unknown (new) predictors use defaults.
FAST: dict[str, dict[str, Any]] = {
    "mlp_ensemble": {"n_members": 3, "epochs": 60, "hidden": [32, 32]},
    "gp": {"n_restarts": 0},
    "gp_ard": {"n_restarts": 0},
    "gbdt": {"n_members": 2, "n_estimators": 60},
    "random_forest": {"n_estimators": 60},
}


def make(name: str, seed: int = 0, **kw: Any) -> pr.BasePredictor:
    return pr.create_predictor(name, seed=seed, **{**FAST.get(name, {}), **kw})


def toy_data(n: int, seed: int, n_choices: int = 6, n_options: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """One-hot encodings of a toy space and an additive objective with one interaction, plus noise."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(n_options, size=(n, n_choices))
    X = np.zeros((n, n_choices * n_options))
    for j in range(n_choices):
        X[np.arange(n), j * n_options + idx[:, j]] = 1.0
    y = idx.sum(1) + 1.5 * (idx[:, 0] == idx[:, 1]) + 0.1 * np.random.default_rng(seed + 1).normal(size=n)
    return X, 50.0 + y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = toy_data(80, seed=0)
    Xt, yt = toy_data(200, seed=1)
    return X, y, Xt, yt


NAMES = pr.list_predictors()


def test_registry_lists_the_implementations() -> None:
    assert {"mlp_ensemble", "gp", "gp_ard", "gbdt", "random_forest"} <= set(NAMES)
    assert pr.list_predictors("g*") == ["gbdt", "gp", "gp_ard"]
    assert pr.DEFAULT_PREDICTOR in NAMES


@pytest.mark.parametrize("name", NAMES)
class TestPredictorContract:
    def test_fit_predict_shapes(self, name: str, data) -> None:
        X, y, Xt, _ = data
        p = make(name)
        assert p.fit(X, y) is p
        assert p.is_fitted and p.n_features == X.shape[1]
        out = p.predict(Xt)
        assert isinstance(out, pr.MeanStd)
        assert out.mean.shape == (len(Xt),) and out.std.shape == (len(Xt),)
        assert np.isfinite(out.mean).all() and np.isfinite(out.std).all()
        assert (out.std >= 0).all()
        assert p.predict(Xt[:0]).mean.shape == (0,)

    def test_better_than_chance(self, name: str, data) -> None:
        X, y, Xt, yt = data
        tau = pr.kendall_tau(make(name).fit(X, y).predict(Xt).mean, yt)
        assert tau > 0.4, f"{name}: tau {tau:.3f} on an easy synthetic function"

    def test_deterministic_for_a_seed(self, name: str, data) -> None:
        X, y, Xt, _ = data
        a = make(name, seed=3).fit(X, y).predict(Xt)
        b = make(name, seed=3).fit(X, y).predict(Xt)
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.std, b.std)

    def test_save_load_round_trip(self, name: str, data, tmp_path) -> None:
        X, y, Xt, _ = data
        p = make(name, seed=1).fit(X, y)
        p.save(tmp_path / "p")
        assert sorted(f.name for f in (tmp_path / "p").iterdir()) == ["predictor.json", "state.safetensors"]
        q = pr.load_predictor(tmp_path / "p")
        assert type(q) is type(p) and q.hparams == p.hparams and q.seed == 1
        np.testing.assert_allclose(q.predict(Xt).mean, p.predict(Xt).mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(q.predict(Xt).std, p.predict(Xt).std, rtol=1e-12, atol=1e-12)
        r = pr.BasePredictor.from_state(p.config(), p.state_dict())
        np.testing.assert_allclose(r.predict(Xt).mean, p.predict(Xt).mean, rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize("transform", pr.TARGET_TRANSFORMS)
    def test_target_transforms(self, name: str, transform: str, data) -> None:
        X, y, Xt, yt = data
        out = make(name, target_transform=transform).fit(X, y).predict(Xt)
        assert np.isfinite(out.mean).all() and (out.std >= 0).all()
        assert abs(np.median(out.mean) - np.median(yt)) < 3.0  # predictions come back in target units

    def test_tiny_and_constant_training_sets(self, name: str, data) -> None:
        X, y, Xt, _ = data
        one = make(name).fit(X[:1], y[:1]).predict(Xt[:5])
        np.testing.assert_allclose(one.mean, y[0], atol=0.25)
        const = make(name).fit(X[:10], np.full(10, 7.0)).predict(Xt[:5])
        np.testing.assert_allclose(const.mean, 7.0, atol=0.25)

    def test_sample_draws_around_the_prediction(self, name: str, data) -> None:
        X, y, Xt, _ = data
        p = make(name, target_transform="standard").fit(X, y)  # linear, so moments carry over exactly
        out = p.predict(Xt)
        draws = p.sample(Xt, 400, rng=0)
        assert draws.shape == (400, len(Xt)) and np.isfinite(draws).all()
        np.testing.assert_array_equal(draws, p.sample(Xt, 400, rng=0))  # seeded
        # In target units, centred on the mean, spread like the predictive std (noise included).
        assert np.median(np.abs(draws.mean(axis=0) - out.mean) / (out.std + 1e-9)) < 0.3
        assert np.median(draws.std(axis=0) / (out.std + 1e-9)) == pytest.approx(1.0, abs=0.2)
        assert p.sample(Xt[:0], 3).shape == (3, 0)
        ranked = make(name).fit(X, y)  # rank-Gauss: draws come back through its monotone inverse
        ranked_median = np.median(ranked.sample(Xt, 400, rng=0), axis=0)
        assert np.median(np.abs(ranked_median - ranked.predict(Xt).mean)) < 0.5
        with pytest.raises(ValueError, match=r"n_samples >= 1. must hold, but got n_samples=0"):
            p.sample(Xt, 0)
        with pytest.raises(pr.NotFittedError, match="not fitted"):
            make(name).sample(Xt, 2)

    def test_wrong_encoding_length(self, name: str, data) -> None:
        X, y, Xt, _ = data
        p = make(name).fit(X, y)
        with pytest.raises(ValueError, match=r"has 23 features per row, but this predictor was fitted on 24"):
            p.predict(Xt[:, :23])

    def test_empty_training_set(self, name: str) -> None:
        with pytest.raises(ValueError, match="empty training set"):
            make(name).fit(np.zeros((0, 5)), np.zeros(0))

    def test_mismatched_x_y(self, name: str, data) -> None:
        X, y, _, _ = data
        with pytest.raises(ValueError, match=r"X has 80 rows but y has 79 values"):
            make(name).fit(X, y[:-1])

    def test_non_finite_inputs(self, name: str, data) -> None:
        X, y, Xt, _ = data
        Xn = X.copy()
        Xn[3, 7] = np.nan
        with pytest.raises(ValueError, match=r"X\[3, 7\] = nan"):
            make(name).fit(Xn, y)
        yn = y.copy()
        yn[5] = np.inf
        with pytest.raises(ValueError, match=r"y\[5\] = inf"):
            make(name).fit(X, yn)
        p = make(name).fit(X, y)
        with pytest.raises(ValueError, match=r"X\[3, 7\] = nan"):
            p.predict(Xn)

    def test_bad_shapes(self, name: str, data) -> None:
        X, y, _, _ = data
        with pytest.raises(ValueError, match="must be 2-D"):
            make(name).fit(X[0], y[:1])
        with pytest.raises(ValueError, match="y must be 1-D"):
            make(name).fit(X, np.stack([y, y], 1))
        with pytest.raises(ValueError, match="numeric"):
            make(name).fit([["a", "b"]], [1.0])

    def test_predict_before_fit(self, name: str, data, tmp_path) -> None:
        p = make(name)
        with pytest.raises(pr.NotFittedError, match="not fitted"):
            p.predict(data[2])
        with pytest.raises(pr.NotFittedError):
            p.save(tmp_path / "x")


def test_unknown_predictor_and_bad_hparams() -> None:
    with pytest.raises(KeyError, match=r"Unknown predictor 'nope'; known: gbdt, gp"):
        pr.create_predictor("nope")
    with pytest.raises(ValueError, match="Bad hyper-parameters for predictor 'gp'"):
        pr.create_predictor("gp", n_layers=3)
    with pytest.raises(ValueError, match="Unknown kernel 'linear'; allowed: rbf, matern52"):
        pr.create_predictor("gp", kernel="linear")
    with pytest.raises(ValueError, match="Unknown target_transform 'log'"):
        pr.create_predictor("random_forest", target_transform="log")
    with pytest.raises(ValueError, match="n_members >= 1"):
        pr.create_predictor("mlp_ensemble", n_members=0)


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        pr.register_predictor("gp")(pr.GPPredictor)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="predictor.json"):
        pr.load_predictor(tmp_path)
    X, y = toy_data(20, seed=0)
    make("random_forest").fit(X, y).save(tmp_path / "p")
    (tmp_path / "p" / "predictor.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="Not a saved predictor"):
        pr.load_predictor(tmp_path / "p")


def test_target_map_round_trip_and_monotone() -> None:
    y = np.array([9.7, 60.0, 70.0, 70.0, 72.5, 80.0, 84.9])
    m = pr.TargetMap("rank_gauss", y)
    np.testing.assert_allclose(m.inverse(m.forward(y)), y)
    z = np.linspace(-5, 5, 101)
    assert (np.diff(m.inverse(z)) > 0).all()  # strictly increasing, also beyond the training range
    s = pr.TargetMap("standard", y)
    np.testing.assert_allclose(s.forward(y), (y - y.mean()) / y.std())


def test_gp_std_grows_away_from_data() -> None:
    X, y = toy_data(60, seed=0)
    p = make("gp").fit(X, y)
    far = np.full((1, X.shape[1]), 3.0)
    assert p.predict(far).std[0] > np.median(p.predict(X).std)


def test_gp_draws_are_joint_and_equal_rows_share_the_latent_value() -> None:
    """Thompson sampling needs coherent draws: two nearby rows move together, and two equal rows
    (equivalent architectures) share the latent function but not the observation noise."""
    X, y = toy_data(60, seed=0)
    p = make("gp", target_transform="standard").fit(X, y)
    Xt, _ = toy_data(5, seed=4)
    twin = np.vstack([Xt[0], Xt[0], Xt[1:]])
    draws = p.sample(twin, 4000, rng=1)
    noise = float(p._model.kernel_.k2.noise_level) * p._tmap.scale**2
    diff = draws[:, 0] - draws[:, 1]
    assert np.var(diff) == pytest.approx(2 * noise, rel=0.15)  # only the noise differs
    assert np.corrcoef(draws[:, 0], draws[:, 1])[0, 1] > 0.5
    indep = super(type(p), p)._sample(twin, 4000, np.random.default_rng(1))  # the base class's draws
    assert abs(np.corrcoef(indep[:, 0], indep[:, 1])[0, 1]) < 0.1
