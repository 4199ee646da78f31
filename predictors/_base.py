"""The predictor plugin point: `BasePredictor`, its `MeanStd` result, input checks and persistence.

A predictor maps fixed-length feature vectors (normally ``space.encode(arch)``) to a scalar
objective with an uncertainty. Persistence never uses pickle: a saved predictor is a directory
with ``predictor.json`` (name, hyper-parameters, target scaling) and ``state.safetensors`` (the
training data, plus weights for models that have tensors, such as the MLP ensemble). Models
that cannot be stored without pickle (scikit-learn's) are re-fitted from the stored training
data on load; their fits are seeded, so the loaded predictor gives the same predictions.
"""

from __future__ import annotations

import abc
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
from safetensors.numpy import load_file, save_file

from search_spaces import Registry

FORMAT = "hwnas-predictor"
FORMAT_VERSION = 1
CONFIG_FILE = "predictor.json"
STATE_FILE = "state.safetensors"


class MeanStd(NamedTuple):
    """Predictions for N inputs: `mean` and `std` are float64 arrays of shape (N,), std >= 0."""

    mean: np.ndarray
    std: np.ndarray


class NotFittedError(RuntimeError):
    """`predict` or `save` was called before `fit`."""


TARGET_TRANSFORMS = ("rank_gauss", "standard")


class TargetMap:
    """Monotone map between targets y and the standardised scale z that models are fitted on.

    ``standard``: ``z = (y - mean) / std``. ``rank_gauss``: z is the normal score of y's rank in
    the training set (robust to skewed targets such as accuracies with a tail of broken
    networks); the inverse interpolates linearly between training targets and extrapolates with
    slope ``std(y)`` beyond them, so it is strictly increasing and rankings survive the round trip.
    """

    def __init__(self, kind: str, y: np.ndarray) -> None:
        if kind not in TARGET_TRANSFORMS:
            raise ValueError(f"Unknown target_transform {kind!r}; allowed: {', '.join(TARGET_TRANSFORMS)}.")
        self.kind = kind
        self.mean = float(y.mean())
        sd = float(y.std())
        self.scale = sd if sd > 1e-12 * max(1.0, abs(self.mean)) else 1.0
        if kind == "rank_gauss":
            from scipy.stats import norm, rankdata

            q = norm.ppf((rankdata(y) - 0.5) / y.size)
            self.knots_y, inverse = np.unique(y, return_inverse=True)
            self.knots_z = np.bincount(inverse, weights=q) / np.bincount(inverse)

    def forward(self, y: np.ndarray) -> np.ndarray:
        if self.kind == "standard":
            return (y - self.mean) / self.scale
        return self._interp(y, self.knots_y, self.knots_z, 1.0 / self.scale)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        if self.kind == "standard":
            return z * self.scale + self.mean
        return self._interp(z, self.knots_z, self.knots_y, self.scale)

    def inverse_std(self, z: np.ndarray, std: np.ndarray) -> np.ndarray:
        """A std on the z scale carried to target units (local slope of the inverse map)."""
        if self.kind == "standard":
            return std * self.scale
        return (self.inverse(z + std) - self.inverse(z - std)) / 2.0

    @staticmethod
    def _interp(v: np.ndarray, xp: np.ndarray, fp: np.ndarray, slope: float) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if xp.size == 1:
            return fp[0] + (v - xp[0]) * slope
        out = np.interp(v, xp, fp)
        lo, hi = v < xp[0], v > xp[-1]
        out[lo] = fp[0] + (v[lo] - xp[0]) * slope
        out[hi] = fp[-1] + (v[hi] - xp[-1]) * slope
        return out


class BasePredictor(abc.ABC):
    """Regression from feature vectors to one objective, with an uncertainty.

    Subclasses implement `_fit` and `_predict` on standardised targets (see `TargetMap`; the
    ``target_transform`` hyper-parameter of every predictor picks ``rank_gauss``, the default, or
    ``standard``); this class checks inputs, transforms targets, and saves/loads. A subclass whose model
    holds tensors may override `_state_tensors` / `_load_state` to store weights instead of
    re-fitting on load.

    Example:
        >>> p = create_predictor("gp", seed=0).fit(X_train, y_train)
        >>> mean, std = p.predict(X_test)

    Thread-safety: `fit` mutates the predictor; `predict` on a fitted predictor only reads it
    and may be called from several threads.
    """

    registry_name: ClassVar[str] = ""
    """Name under which the class is registered (set by `register_predictor`)."""

    refits_on_load: ClassVar[bool] = True
    """True when `load` re-fits from the stored training data (sklearn models)."""

    def __init__(self, *, seed: int = 0, target_transform: str = "rank_gauss", **hparams: Any) -> None:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValueError(f"`seed` must be an int, but got {seed!r}.")
        if target_transform not in TARGET_TRANSFORMS:
            raise ValueError(
                f"Unknown target_transform {target_transform!r}; allowed: {', '.join(TARGET_TRANSFORMS)}."
            )
        self.seed = int(seed)
        self.hparams: dict[str, Any] = {"target_transform": target_transform, **hparams}
        self._tmap: TargetMap | None = None
        self.n_features: int | None = None
        self._X: np.ndarray | None = None
        self._y: np.ndarray | None = None

    # ----- what an implementation says ---------------------------------------------------------
    @abc.abstractmethod
    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        """Fit on checked features X (N, D) float64 and standardised targets z (N,)."""

    @abc.abstractmethod
    def _predict(self, X: np.ndarray) -> MeanStd:
        """Mean and std of the standardised target for checked X (N, D)."""

    def _sample(self, X: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Draws of the standardised target at the rows of checked X, shape (n_samples, N).

        Default: each row drawn on its own from N(mean, std) of `_predict`. A model with a joint
        posterior (the GP) overrides this so that a draw is one plausible function over all rows.
        """
        mean, std = self._predict(X)
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        std = np.maximum(np.asarray(std, dtype=np.float64).reshape(-1), 0.0)
        return mean[None, :] + std[None, :] * rng.standard_normal((n_samples, X.shape[0]))

    def _state_tensors(self) -> dict[str, np.ndarray]:
        """Model tensors to store besides the training data (default: none; re-fit on load)."""
        return {}

    def _load_state(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Restore the model from `_state_tensors` output (default: re-fit on the training data)."""
        assert self._X is not None and self._y is not None and self._tmap is not None
        self._fit(self._X, self._tmap.forward(self._y))

    # ----- public API --------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.n_features is not None

    def fit(self, X: Any, y: Any) -> BasePredictor:
        """Fit on features `X` (N, D) and targets `y` (N,); returns self.

        Raises:
            ValueError: X is not 2-D, empty, has NaN/inf, or does not match y one to one.
        """
        X_, y_ = check_xy(X, y)
        self._X, self._y = X_, y_
        self._tmap = TargetMap(self.hparams["target_transform"], y_)
        self.n_features = X_.shape[1]
        self._fit(X_, self._tmap.forward(y_))
        return self

    def predict(self, X: Any) -> MeanStd:
        """Predicted mean and std (in target units) for each row of `X`.

        Raises:
            NotFittedError: `fit` has not been called.
            ValueError: X is not 2-D, has NaN/inf, or its row length differs from the fitted one.
        """
        if self.n_features is None or self._tmap is None:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit(X, y) first.")
        X_ = check_x(X, self.n_features)
        if X_.shape[0] == 0:
            return MeanStd(np.zeros(0), np.zeros(0))
        z, zstd = self._predict(X_)
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        zstd = np.maximum(np.asarray(zstd, dtype=np.float64).reshape(-1), 0.0)
        return MeanStd(self._tmap.inverse(z), np.maximum(self._tmap.inverse_std(z, zstd), 0.0))

    def sample(self, X: Any, n_samples: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """`n_samples` draws of the target (in target units) at the rows of `X`, shape
        (n_samples, N): what Thompson sampling acts on. Where the model has a joint posterior
        (the GP), each draw is one coherent function over all rows.

        Raises:
            NotFittedError: `fit` has not been called.
            ValueError: `n_samples` < 1, or X is malformed (as for `predict`).
        """
        if self.n_features is None or self._tmap is None:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit(X, y) first.")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"`n_samples >= 1` must hold, but got {n_samples=!r}.")
        X_ = check_x(X, self.n_features)
        if X_.shape[0] == 0:
            return np.zeros((int(n_samples), 0))
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        z = np.asarray(self._sample(X_, int(n_samples), gen), dtype=np.float64)
        return self._tmap.inverse(z.reshape(int(n_samples), X_.shape[0]))

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description: enough, with the state tensors, to rebuild this predictor."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "predictor": self.registry_name,
            "seed": self.seed,
            "hparams": self.hparams,
            "n_features": self.n_features,
            "refits_on_load": self.refits_on_load,
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """Training data (``X_train``, ``y_train``) and any model tensors, as numpy arrays."""
        if self._X is None or self._y is None:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; nothing to save.")
        state = {"X_train": self._X, "y_train": self._y}
        for key, value in self._state_tensors().items():
            state[f"model.{key}"] = np.ascontiguousarray(value)
        return state

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``predictor.json`` and ``state.safetensors`` into directory `path` (created).

        Files are written to temporaries and renamed, so a failed save leaves no half-written file.
        """
        state = self.state_dict()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / STATE_FILE, lambda tmp: save_file(state, tmp))
        text = json.dumps(self.config(), indent=2, sort_keys=True)
        _atomic_write(out / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))
        return out

    @classmethod
    def from_state(cls, config: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> BasePredictor:
        """Rebuild a fitted predictor from `config()` and `state_dict()` output."""
        _check_config(config)
        pred = create_predictor(config["predictor"], seed=int(config["seed"]), **config["hparams"])
        if cls is not BasePredictor and not isinstance(pred, cls):
            raise TypeError(
                f"Stored predictor {config['predictor']!r} is a {type(pred).__name__}, not a {cls.__name__}."
            )
        for key in ("X_train", "y_train"):
            if key not in state:
                raise ValueError(f"Predictor state lacks {key!r}; it holds {sorted(state)}.")
        pred._X = np.asarray(state["X_train"], dtype=np.float64)
        pred._y = np.asarray(state["y_train"], dtype=np.float64)
        pred.n_features = int(config["n_features"])
        if pred._X.ndim != 2 or pred._X.shape[1] != pred.n_features or pred._y.shape != (pred._X.shape[0],):
            raise ValueError(
                f"Stored training data have shapes {pred._X.shape} and {pred._y.shape}; "
                f"expected (N, {pred.n_features}) and (N,)."
            )
        pred._tmap = TargetMap(pred.hparams["target_transform"], pred._y)
        model = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        pred._load_state(model)
        return pred

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BasePredictor:
        """Load a predictor saved with `save` (no pickle involved).

        Raises:
            FileNotFoundError: `path` lacks ``predictor.json`` or ``state.safetensors``.
            ValueError: the files are not a predictor of a known format version.
        """
        src = Path(path)
        for name in (CONFIG_FILE, STATE_FILE):
            if not (src / name).is_file():
                raise FileNotFoundError(
                    f"{src / name} not found; expected a directory written by predictor.save()."
                )
        try:
            config = json.loads((src / CONFIG_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{src / CONFIG_FILE} is not valid JSON: {exc}.") from None
        return cls.from_state(config, load_file(str(src / STATE_FILE)))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}(seed={self.seed}{', ' if args else ''}{args})"


# ----- registry ----------------------------------------------------------------------------------
DEFAULT_PREDICTOR = "gp"
"""The default accuracy predictor, chosen by measurement (benchmarks/predictor_quality.py, NAS-Bench-201
CIFAR-10 12-epoch validation accuracy, one-hot encodings, median Kendall tau over 5 seeds on all
held-out cells at 200 training cells): mlp_ensemble 0.554, gp 0.546, gbdt 0.543, random_forest
0.540, gp_ard 0.521. The GP is within 0.01 of the best while fitting in ~0.2 s instead of ~10 s, and
its std is a proper posterior (useful for acquisition functions), so it is the default. Where the
space has structural features, `predictors.accuracy_predictor` (``gp_ard`` on ``space.features``,
tau 0.822) ranks far better."""

PREDICTORS: Registry[BasePredictor] = Registry("predictor")

P = TypeVar("P", bound=type[BasePredictor])


def register_predictor(name: str) -> Callable[[P], P]:
    """Class decorator: register a `BasePredictor` subclass under `name`."""

    def deco(cls: P) -> P:
        cls.registry_name = name
        PREDICTORS.register(name)(cls)
        return cls

    return deco


def list_predictors(pattern: str = "*") -> list[str]:
    """Registered predictor names matching an fnmatch `pattern`, sorted."""
    return PREDICTORS.names(pattern)


def create_predictor(name: str, **kwargs: Any) -> BasePredictor:
    """A fresh (unfitted) predictor; `kwargs` are its hyper-parameters and ``seed``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        ValueError: a hyper-parameter the predictor does not have, or a bad value.
    """
    factory = PREDICTORS.get_factory(name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"Bad hyper-parameters for predictor {name!r}: {exc}.") from None


def load_predictor(path: str | os.PathLike[str]) -> BasePredictor:
    """`BasePredictor.load`: the predictor saved in directory `path`."""
    return BasePredictor.load(path)


# ----- input checks ------------------------------------------------------------------------------
def check_x(X: Any, n_features: int | None = None, *, name: str = "X") -> np.ndarray:
    """`X` as a finite float64 array (N, D); D must equal `n_features` when given."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array of shape (n_samples, n_features); {exc}.") from None
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D, shape (n_samples, n_features), but got shape {arr.shape}; "
            "stack one encoding per row, e.g. np.stack([space.encode(a) for a in archs])."
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features per row, but this predictor was fitted on {n_features}; "
            "encode with the same space and features used for fit."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}[{r}, {c}] = {arr[r, c]}; features must be finite numbers (no NaN or inf).")
    return arr


def check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checked training data: non-empty X (N, D) and y (N,), all finite."""
    X_ = check_x(X)
    if X_.shape[0] == 0:
        raise ValueError(
            "Cannot fit on an empty training set (X has 0 rows); pass at least 1 (features, target) pair."
        )
    if X_.shape[1] == 0:
        raise ValueError("X has 0 features per row; pass non-empty encodings.")
    try:
        y_ = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y must be a 1-D numeric array of targets; {exc}.") from None
    if y_.ndim == 2 and y_.shape[1] == 1:
        y_ = y_[:, 0]
    if y_.ndim != 1:
        raise ValueError(f"y must be 1-D (one target per row of X), but got shape {y_.shape}.")
    if y_.shape[0] != X_.shape[0]:
        raise ValueError(
            f"X has {X_.shape[0]} rows but y has {y_.shape[0]} values; they must match one to one."
        )
    bad = ~np.isfinite(y_)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"y[{i}] = {y_[i]}; targets must be finite numbers (no NaN or inf).")
    return X_, y_


def _check_config(config: Mapping[str, Any]) -> None:
    if not isinstance(config, Mapping) or config.get("format") != FORMAT:
        raise ValueError(
            f"Not a saved predictor: expected format {FORMAT!r}, got {dict(config).get('format')!r}."
        )
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"Unsupported predictor format_version {version!r}; this code reads {FORMAT_VERSION}."
        )
    for key in ("predictor", "seed", "hparams", "n_features"):
        if key not in config:
            raise ValueError(f"Saved predictor config lacks {key!r}.")


def _atomic_write(target: Path, write: Callable[[str], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
