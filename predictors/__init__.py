"""Cheap estimates of expensive objectives: accuracy and latency predictors, zero-cost proxies, rank metrics.

>>> import predictors as pr
>>> pr.list_predictors()
['gbdt', 'gp', 'gp_ard', 'mlp_ensemble', 'random_forest']
>>> p = pr.create_predictor("gp", seed=0).fit(X_train, y_train)   # X: space encodings
>>> mean, std = p.predict(X_test)
>>> pr.kendall_tau(mean, y_test)
>>> X = pr.arch_features(space, archs, "features")   # structural features where the space has them
>>> acc = pr.accuracy_predictor(space, seed=0).fit(archs, y)   # on those features; .predict(archs)
>>> p.save("gp_dir"); q = pr.load_predictor("gp_dir")               # safetensors + JSON, no pickle
>>> pr.compute_proxy("synflow", net, (x, y), seed=0)
"""

from __future__ import annotations

from predictors._arch import (
    DEFAULT_FEATURES_PREDICTOR,
    DEFAULT_LATENCY_PREDICTOR,
    FEATURE_SETS,
    ArchPredictor,
    accuracy_predictor,
    arch_features,
    latency_predictor,
    read_arch_table,
    space_features,
)
from predictors._base import (
    DEFAULT_PREDICTOR,
    PREDICTORS,
    TARGET_TRANSFORMS,
    BasePredictor,
    MeanStd,
    NotFittedError,
    TargetMap,
    check_x,
    check_xy,
    create_predictor,
    list_predictors,
    load_predictor,
    register_predictor,
)
from predictors._gp import GPARDPredictor, GPPredictor
from predictors._metrics import kendall_tau, mape, rank_metrics, spearman, within_pct
from predictors._mlp import MLPEnsemblePredictor
from predictors._proxies import (
    PROXIES,
    check_batch,
    compute_proxies,
    compute_proxy,
    list_proxies,
    register_proxy,
    synthetic_batch,
)
from predictors._trees import GradientBoostingPredictor, RandomForestPredictor

__all__ = [
    "DEFAULT_FEATURES_PREDICTOR",
    "DEFAULT_LATENCY_PREDICTOR",
    "DEFAULT_PREDICTOR",
    "FEATURE_SETS",
    "ArchPredictor",
    "accuracy_predictor",
    "arch_features",
    "latency_predictor",
    "read_arch_table",
    "PREDICTORS",
    "PROXIES",
    "TARGET_TRANSFORMS",
    "BasePredictor",
    "GPARDPredictor",
    "GPPredictor",
    "GradientBoostingPredictor",
    "MLPEnsemblePredictor",
    "MeanStd",
    "NotFittedError",
    "RandomForestPredictor",
    "TargetMap",
    "check_batch",
    "check_x",
    "check_xy",
    "compute_proxies",
    "compute_proxy",
    "create_predictor",
    "kendall_tau",
    "list_predictors",
    "list_proxies",
    "load_predictor",
    "mape",
    "rank_metrics",
    "register_predictor",
    "register_proxy",
    "space_features",
    "spearman",
    "synthetic_batch",
    "within_pct",
]
