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
