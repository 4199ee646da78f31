"""Predictors over architectures of a space: features (encoding, analytic costs) + a `BasePredictor`.

`ArchPredictor` is what the CLI fits and what a search's ``predictor`` evaluator loads. With
``features="encoding+cost"`` and ``log_target=True`` it is a HAT-style whole-network latency
predictor for devices without per-block tables (`latency_predictor`).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictors._base import (
    DEFAULT_PREDICTOR,
    BasePredictor,
    MeanStd,
    NotFittedError,
    _atomic_write,
    create_predictor,
    load_predictor,
)

FEATURE_SETS = ("encoding", "cost", "encoding+cost", "features", "features+cost")
COST_KEYS = ("macs", "params", "activation_bytes")
ARCH_FORMAT = "hwnas-arch-predictor"
ARCH_CONFIG_FILE = "arch_predictor.json"
MODEL_DIR = "model"


def space_features(space: Any, arch: Mapping[str, Any]) -> np.ndarray:
    """``space.features(arch)`` where the space defines structural features, else ``space.encode(arch)``.

    This is the feature function accuracy predictors should use: on NAS-Bench-201 the structural
    features of the live cell rank far better than the one-hot encoding
    (benchmarks/predictor_quality.py); spaces without them fall back to their encoding.
    """
    fn = getattr(space, "features", None)
    return np.asarray(fn(arch) if callable(fn) else space.encode(arch), dtype=np.float64)


def _base_length(space: Any, features: str) -> int:
    """Columns before the cost columns: encoding or structural-feature length (0 for ``cost``)."""
    if features.startswith("encoding"):
        return int(space.encoding_length())
    if features.startswith("features"):
        names = getattr(space, "feature_names", None)
        return len(names()) if callable(names) else int(space.encoding_length())
    return 0


def arch_features(space: Any, archs: Sequence[Mapping[str, Any]], features: str = "encoding") -> np.ndarray:
    """Raw feature matrix (N, D) for `archs`.

    ``encoding`` is ``space.encode(arch)``; ``features`` is `space_features` (the space's
    structural features, or its encoding when it has none); ``cost`` is ``log(1 + x)`` of the
    analytic MACs, parameters and activation bytes (``space.cost(arch)``); ``X+cost``
    concatenates both.

    Raises:
        ValueError: unknown feature set; search_spaces.InvalidArch for an architecture not in `space`.
    """
    if features not in FEATURE_SETS:
        raise ValueError(f"Unknown feature set {features!r}; allowed: {', '.join(FEATURE_SETS)}.")
    rows = []
    for arch in archs:
        parts = []
        if features.startswith("encoding"):
            parts.append(np.asarray(space.encode(arch), dtype=np.float64))
        elif features.startswith("features"):
            parts.append(space_features(space, arch))
        if features.endswith("cost"):
            cost = space.cost(arch)
            parts.append(np.log1p(np.array([float(cost[k]) for k in COST_KEYS])))
        rows.append(np.concatenate(parts))
    if not rows:
        n_cost = len(COST_KEYS) if features.endswith("cost") else 0
        return np.zeros((0, _base_length(space, features) + n_cost))
    return np.stack(rows)


class ArchPredictor:
    """A `BasePredictor` on a space's architectures, with feature building and target transform.

    Args:
        space: A search space (``search_spaces.get_space(...)``).
        predictor: A registered predictor name or an unfitted `BasePredictor`.
        features: One of `FEATURE_SETS` (see `arch_features`).
        log_target: Fit on ``log(y)`` (positive targets such as latency); predictions are then
            ``exp`` of the predicted log (the median) with std by the delta method.
        seed: Seed passed to the predictor when `predictor` is a name.
        **predictor_kw: Hyper-parameters passed to the predictor when `predictor` is a name.

    Cost features are standardised with the training set's mean and std, stored with the model.
    """

    def __init__(
        self,
        space: Any,
        predictor: str | BasePredictor = DEFAULT_PREDICTOR,
        *,
        features: str = "encoding",
        log_target: bool = False,
        seed: int = 0,
        **predictor_kw: Any,
    ) -> None:
        if features not in FEATURE_SETS:
            raise ValueError(f"Unknown feature set {features!r}; allowed: {', '.join(FEATURE_SETS)}.")
        self.space = space
        self.features = features
        self.log_target = bool(log_target)
        self.predictor = (
            predictor
            if isinstance(predictor, BasePredictor)
            else create_predictor(predictor, seed=seed, **predictor_kw)
        )
        self._shift: np.ndarray | None = None
        self._scale: np.ndarray | None = None

    def featurize(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Scaled features of `archs`, as fed to the predictor (needs a fitted or loaded model)."""
        if self._shift is None or self._scale is None:
            raise NotFittedError("This ArchPredictor is not fitted yet; call fit(archs, y) first.")
        return (arch_features(self.space, archs, self.features) - self._shift) / self._scale

    def fit(self, archs: Sequence[Mapping[str, Any]], y: Any) -> ArchPredictor:
        """Fit on architectures and their targets.

        Raises:
            ValueError: empty or mismatched data, non-finite targets, or a non-positive target with
                ``log_target``; search_spaces.InvalidArch for an architecture not in the space.
        """
        archs = list(archs)
        if not archs:
            raise ValueError(
                "Cannot fit on an empty training set; pass at least 1 (architecture, target) pair."
            )
        y_ = np.asarray(y, dtype=np.float64).reshape(-1)
        if y_.shape[0] != len(archs):
            raise ValueError(
                f"Got {len(archs)} architectures but {y_.shape[0]} targets; they must match one to one."
            )
        if self.log_target:
            bad = ~(y_ > 0)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"y[{i}] = {y_[i]}; log_target=True needs positive targets (e.g. latency in ms)."
                )
            y_ = np.log(y_)
        raw = arch_features(self.space, archs, self.features)
        n_enc = _base_length(self.space, self.features)
        shift, scale = np.zeros(raw.shape[1]), np.ones(raw.shape[1])
        # Only the analytic cost columns are standardised; one-hot and structural columns are in [0, 1].
        shift[n_enc:] = raw[:, n_enc:].mean(0)
        sd = raw[:, n_enc:].std(0)
        scale[n_enc:] = np.where(sd > 1e-12, sd, 1.0)
        self._shift, self._scale = shift, scale
        self.predictor.fit((raw - shift) / scale, y_)
        return self

    def predict(self, archs: Sequence[Mapping[str, Any]]) -> MeanStd:
        """Predicted target (mean, std) for each architecture, in the target's units."""
        mean, std = self.predictor.predict(self.featurize(list(archs)))
        if self.log_target:
            mean = np.exp(mean)
            std = mean * std
        return MeanStd(mean, std)

    def config(self) -> dict[str, Any]:
        if self._shift is None or self._scale is None:
            raise NotFittedError("This ArchPredictor is not fitted yet; nothing to save.")
        return {
            "format": ARCH_FORMAT,
            "format_version": 1,
            "space": self.space.spec(),
            "features": self.features,
            "log_target": self.log_target,
            "feature_shift": self._shift.tolist(),
            "feature_scale": self._scale.tolist(),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``arch_predictor.json`` and the inner predictor (``model/``) into directory `path`."""
        config = self.config()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.predictor.save(out / MODEL_DIR)
        text = json.dumps(config, indent=2, sort_keys=True)
        _atomic_write(out / ARCH_CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], space: Any = None) -> ArchPredictor:
        """Load a saved ArchPredictor; the space is rebuilt from its stored spec unless given.

        Raises:
            FileNotFoundError: `path` is not a directory written by `save`.
            ValueError: the stored files are malformed or of an unknown format.
        """
        src = Path(path)
        if not (src / ARCH_CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"{src / ARCH_CONFIG_FILE} not found; expected a directory written by ArchPredictor.save()."
            )
        try:
            config = json.loads((src / ARCH_CONFIG_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{src / ARCH_CONFIG_FILE} is not valid JSON: {exc}.") from None
        if config.get("format") != ARCH_FORMAT or config.get("format_version") != 1:
            raise ValueError(f"{src / ARCH_CONFIG_FILE} is not an {ARCH_FORMAT} file of version 1.")
        if space is None:
            import search_spaces as ss

            spec = dict(config["space"])
            space = ss.get_space(spec.pop("name"), **spec)
        inner = load_predictor(src / MODEL_DIR)
        obj = cls(space, inner, features=config["features"], log_target=config["log_target"])
        obj._shift = np.asarray(config["feature_shift"], dtype=np.float64)
        obj._scale = np.asarray(config["feature_scale"], dtype=np.float64)
        return obj

    def __repr__(self) -> str:
        return (
            f"ArchPredictor(space={self.space.name!r}, predictor={self.predictor!r}, "
            f"features={self.features!r}, log_target={self.log_target})"
        )


DEFAULT_LATENCY_PREDICTOR = "gp"
"""Chosen by `benchmarks/latency_predictor.py` (see its docstring for the measured comparison)."""


def latency_predictor(space: Any, predictor: str = DEFAULT_LATENCY_PREDICTOR, **kw: Any) -> ArchPredictor:
    """Whole-network latency predictor: encoding + analytic cost features, fitted on log latency.

    Args:
        space: The search space the measured networks come from.
        predictor: Registered predictor name (default: `DEFAULT_LATENCY_PREDICTOR`).
        **kw: `ArchPredictor` options and predictor hyper-parameters; defaults here are
            ``features="encoding+cost"``, ``log_target=True`` and ``target_transform="standard"``
            (log latency is close to normal, and the linear scale keeps relative errors smooth).
    """
    kw.setdefault("features", "encoding+cost")
    kw.setdefault("log_target", True)
    kw.setdefault("target_transform", "standard")
    return ArchPredictor(space, predictor, **kw)


DEFAULT_FEATURES_PREDICTOR = "gp_ard"
"""The accuracy predictor for spaces with structural features (``space.features``), chosen by
`benchmarks/predictor_quality.py` (NAS-Bench-201 CIFAR-10 12-epoch validation accuracy, median
Kendall tau over 5 seeds on all held-out cells, at 50/100/200 training cells): gp_ard 0.737/0.777/
0.822, mlp_ensemble 0.723/0.763/0.820, gp 0.703/0.777/0.811, gbdt 0.702/0.771/0.805,
random_forest 0.667/0.760/0.798; on one-hot encodings the best is 0.554 (mlp_ensemble) at 200.
gp_ard is best at every size and fits in ~3 s (the MLP ensemble ~30 s)."""


def accuracy_predictor(space: Any, predictor: str | None = None, **kw: Any) -> ArchPredictor:
    """Accuracy predictor on the space's structural features (`space_features`).

    Args:
        space: The search space the trained networks come from.
        predictor: Registered predictor name (default: `DEFAULT_FEATURES_PREDICTOR` when the space
            defines ``features``, else `DEFAULT_PREDICTOR`: ARD on long one-hot encodings overfits
            and fits slowly).
        **kw: `ArchPredictor` options and predictor hyper-parameters (``features`` defaults to
            ``"features"``).
    """
    if predictor is None:
        has_features = callable(getattr(space, "features", None))
        predictor = DEFAULT_FEATURES_PREDICTOR if has_features else DEFAULT_PREDICTOR
    kw.setdefault("features", "features")
    return ArchPredictor(space, predictor, **kw)


def read_arch_table(
    path: str | os.PathLike[str], space: Any, target: str, *, arch_column: str = "arch"
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Architectures (parsed with ``space.from_str``) and float targets from a CSV file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column (the message lists the columns), an unparsable architecture or
            target (naming the row), or no data rows.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"No such CSV file: {str(p)!r}.")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for col in (arch_column, target):
            if col not in columns:
                raise ValueError(f"{p}: no column {col!r}; columns: {', '.join(columns) or '(none)'}.")
        archs, ys = [], []
        for i, row in enumerate(reader, start=2):
            try:
                archs.append(space.from_str(row[arch_column]))
            except ValueError as exc:
                raise ValueError(f"{p} line {i}: bad architecture {row[arch_column]!r}: {exc}") from None
            try:
                value = float(row[target])
            except (TypeError, ValueError):
                raise ValueError(f"{p} line {i}: {target} = {row[target]!r} is not a number.") from None
            if not math.isfinite(value):
                raise ValueError(f"{p} line {i}: {target} = {row[target]!r}; targets must be finite.")
            ys.append(value)
    if not archs:
        raise ValueError(f"{p} has no data rows.")
    return archs, np.asarray(ys, dtype=np.float64)
