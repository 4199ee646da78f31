"""Tree ensembles from scikit-learn: a random forest and a small ensemble of boosted-tree models.

scikit-learn models cannot be stored without pickle, so these predictors persist their training
data and hyper-parameters and re-fit on load; every fit is seeded, so the loaded predictor gives
the same predictions as the saved one.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

from predictors._base import BasePredictor, MeanStd, register_predictor


@register_predictor("random_forest")
class RandomForestPredictor(BasePredictor):
    """Random forest; std is the spread of the individual trees' predictions.

    Re-fits from the stored training data on load (no pickle).

    Args:
        n_estimators: Number of trees.
        max_features: Share of features tried per split (scikit-learn's ``max_features``).
        min_samples_leaf: Minimum samples per leaf.
        target_transform: ``"rank_gauss"`` or ``"standard"`` (see `TargetMap`).
        seed: ``random_state`` of the forest.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        max_features: float = 0.5,
        min_samples_leaf: int = 1,
        target_transform: str = "rank_gauss",
        seed: int = 0,
    ) -> None:
        if n_estimators < 1 or min_samples_leaf < 1:
            raise ValueError(
                f"n_estimators and min_samples_leaf must be >= 1; got {n_estimators=}, {min_samples_leaf=}."
            )
        if not 0 < max_features <= 1:
            raise ValueError(f"`0 < max_features <= 1` must hold, but got {max_features=}.")
        super().__init__(
            seed=seed,
            target_transform=target_transform,
            n_estimators=int(n_estimators),
            max_features=float(max_features),
            min_samples_leaf=int(min_samples_leaf),
        )
        self._model: RandomForestRegressor | None = None

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        hp = self.hparams
        self._model = RandomForestRegressor(
            n_estimators=hp["n_estimators"],
            max_features=hp["max_features"],
            min_samples_leaf=hp["min_samples_leaf"],
            random_state=self.seed,
            n_jobs=1,
        ).fit(X, z)

    def _predict(self, X: np.ndarray) -> MeanStd:
        assert self._model is not None
        per_tree = np.stack([t.predict(X) for t in self._model.estimators_])
        return MeanStd(per_tree.mean(0), per_tree.std(0))


@register_predictor("gbdt")
class GradientBoostingPredictor(BasePredictor):
    """Gradient-boosted trees: `n_members` stochastic (subsampled) boosting runs from different seeds.

    The mean is the members' average and the std their spread. Re-fits from the stored training
    data on load (no pickle).

    Args:
        n_members: Number of boosting runs.
        n_estimators: Boosting stages per run.
        learning_rate: Shrinkage.
        max_depth: Depth of each tree.
        subsample: Row share drawn for each stage (< 1 makes runs differ).
        target_transform: ``"rank_gauss"`` or ``"standard"`` (see `TargetMap`).
        seed: Member k uses ``random_state = seed * 1000 + k``.
    """

    def __init__(
        self,
        *,
        n_members: int = 5,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        max_depth: int = 3,
        subsample: float = 0.8,
        target_transform: str = "rank_gauss",
        seed: int = 0,
    ) -> None:
        if n_members < 1 or n_estimators < 1 or max_depth < 1:
            raise ValueError(
                "n_members, n_estimators, max_depth must be >= 1; "
                f"got {n_members=}, {n_estimators=}, {max_depth=}."
            )
        if not 0 < subsample <= 1 or not learning_rate > 0:
            raise ValueError(
                f"`0 < subsample <= 1` and `learning_rate > 0` must hold; got {subsample=}, {learning_rate=}."
            )
        super().__init__(
            seed=seed,
            target_transform=target_transform,
            n_members=int(n_members),
            n_estimators=int(n_estimators),
            learning_rate=float(learning_rate),
            max_depth=int(max_depth),
            subsample=float(subsample),
        )
        self._models: list[GradientBoostingRegressor] = []

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        hp = self.hparams
        self._models = [
            GradientBoostingRegressor(
                n_estimators=hp["n_estimators"],
                learning_rate=hp["learning_rate"],
                max_depth=hp["max_depth"],
                subsample=hp["subsample"] if X.shape[0] > 1 else 1.0,
                random_state=self.seed * 1000 + k,
            ).fit(X, z)
            for k in range(hp["n_members"])
        ]

    def _predict(self, X: np.ndarray) -> MeanStd:
        preds = np.stack([m.predict(X) for m in self._models])
        return MeanStd(preds.mean(0), preds.std(0))
