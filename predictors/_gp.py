"""A Gaussian process (scikit-learn) with a stationary kernel on the encodings.

On one-hot encodings an RBF kernel is a kernel of the Hamming distance between architectures.
The fitted model cannot be stored without pickle, so the predictor persists its training data
and hyper-parameters and re-fits on load; the optimiser's restarts are seeded, so the loaded
predictor gives the same predictions.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from predictors._base import BasePredictor, MeanStd, register_predictor

KERNELS = ("rbf", "matern52")


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """A square root L (L @ L.T ~ cov) of a covariance that rounding may leave slightly indefinite."""
    cov = (cov + cov.T) / 2.0
    jitter = 1e-10 * max(1.0, float(np.mean(np.diag(cov))))
    for _ in range(6):
        try:
            return np.linalg.cholesky(cov + jitter * np.eye(len(cov)))
        except np.linalg.LinAlgError:
            jitter *= 100.0
    values, vectors = np.linalg.eigh(cov)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


@register_predictor("gp")
class GPPredictor(BasePredictor):
    """Gaussian-process regression; std is the posterior standard deviation (noise included).

    Kernel: ``C * k(length_scale) + White(noise)``, hyper-parameters by maximum marginal
    likelihood with seeded restarts. Re-fits from the stored training data on load (no pickle).

    Args:
        kernel: ``"rbf"`` or ``"matern52"``.
        ard: One length scale per feature (True) or a shared one (False).
        n_restarts: Optimiser restarts from random initial hyper-parameters.
        target_transform: ``"rank_gauss"`` or ``"standard"`` (see `TargetMap`).
        seed: ``random_state`` of the restarts.
    """

    def __init__(
        self,
        *,
        kernel: str = "rbf",
        ard: bool = False,
        n_restarts: int = 2,
        target_transform: str = "rank_gauss",
        seed: int = 0,
    ) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"Unknown kernel {kernel!r}; allowed: {', '.join(KERNELS)}.")
        if n_restarts < 0:
            raise ValueError(f"`n_restarts >= 0` must hold, but got {n_restarts=}.")
        super().__init__(
            seed=seed,
            target_transform=target_transform,
            kernel=kernel,
            ard=bool(ard),
            n_restarts=int(n_restarts),
        )
        self._model: GaussianProcessRegressor | None = None

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        hp = self.hparams
        ls = np.ones(X.shape[1]) if hp["ard"] else 1.0
        base = (
            RBF(length_scale=ls, length_scale_bounds=(1e-2, 1e3))
            if hp["kernel"] == "rbf"
            else Matern(length_scale=ls, length_scale_bounds=(1e-2, 1e3), nu=2.5)
        )
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * base + WhiteKernel(0.1, (1e-6, 1e1))
        self._model = GaussianProcessRegressor(
            kernel=kernel, normalize_y=False, n_restarts_optimizer=hp["n_restarts"], random_state=self.seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._model.fit(X, z)

    def _predict(self, X: np.ndarray) -> MeanStd:
        assert self._model is not None
        mean, std = self._model.predict(X, return_std=True)
        return MeanStd(mean, std)

    def _sample(self, X: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Joint draws: one latent function over the distinct rows (equal rows share its value),
        plus the fitted observation noise drawn for each row on its own, since two architectures
        with equal features are still two trainings (NB201's equivalent cells differ by ~0.2%)."""
        assert self._model is not None
        rows, inverse = np.unique(X, axis=0, return_inverse=True)
        mean, cov = self._model.predict(rows, return_cov=True)
        noise = float(self._model.kernel_.k2.noise_level)  # the WhiteKernel term
        cov = cov - noise * np.eye(len(rows))  # latent covariance; the noise is drawn per row below
        latent = mean[None, :] + (_psd_sqrt(cov) @ rng.standard_normal((len(rows), n_samples))).T
        return latent[:, inverse.reshape(-1)] + np.sqrt(noise) * rng.standard_normal((n_samples, X.shape[0]))


@register_predictor("gp_ard")
class GPARDPredictor(GPPredictor):
    """`GPPredictor` with one length scale per feature (ARD) by default.

    Suited to a few informative, differently scaled features (such as NB201's structural
    ``space.features``), where ARD learns which matter; on long one-hot encodings with few
    samples the shared length scale of ``gp`` overfits less.
    """

    def __init__(
        self,
        *,
        kernel: str = "rbf",
        ard: bool = True,
        n_restarts: int = 2,
        target_transform: str = "rank_gauss",
        seed: int = 0,
    ) -> None:
        super().__init__(
            kernel=kernel, ard=ard, n_restarts=n_restarts, target_transform=target_transform, seed=seed
        )
