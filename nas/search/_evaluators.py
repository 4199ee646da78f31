"""Evaluators: where a search's expensive metrics come from (one small class per kind).

An evaluator is built from its spec on whichever process evaluates (the driver for
``parallelism: 1``, each Ray actor otherwise) and loads its heavy state (a supernet, a CSV, a
predictor) once. `fingerprint` identifies what it would return (checkpoint hash plus data split,
table hash, predictor hash) and keys the evaluation cache.
"""

from __future__ import annotations

import abc
import csv
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.search._spec import EvaluatorSpec, SpaceRef
from nas.train._checkpoint import sha256_file
from search_spaces import Registry, SearchSpace, get_space

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "PredictorEvaluator",
    "SupernetEvaluatorKind",
    "TableEvaluator",
    "build_evaluator",
    "evaluator_metrics",
]


class Evaluator(abc.ABC):
    """Computes expensive metrics of architectures of one space."""

    metrics: tuple[str, ...] = ()
    """Metric names `evaluate` returns."""

    def __init__(self, spec: EvaluatorSpec, space: SearchSpace) -> None:
        self.spec, self.space = spec, space

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A stable id of what this evaluator returns for a given architecture."""

    @abc.abstractmethod
    def evaluate(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """The metrics of one architecture (``{name: value}`` over `metrics`)."""

    def evaluate_many(self, archs: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        return [self.evaluate(a) for a in archs]


EVALUATORS: Registry[Evaluator] = Registry("evaluator")


@EVALUATORS.register("table")
class TableEvaluator(Evaluator):
    """Tabular benchmark mode: metrics read from a CSV keyed by architecture string.

    The CSV has a `spec.key` column (e.g. NAS-Bench-201 cell strings) and numeric columns; a
    metric is read from ``spec.columns[name]`` or from a column with the metric's own name.
    """

    def __init__(self, spec: EvaluatorSpec, space: SearchSpace) -> None:
        super().__init__(spec, space)
        assert spec.path is not None
        self.path = Path(spec.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"Evaluator table {str(self.path)!r} not found.")
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            if spec.key not in header:
                raise ValueError(
                    f"{self.path}: no key column {spec.key!r}; columns: {', '.join(header)} "
                    "(set evaluator.key)."
                )
            for metric, column in spec.columns.items():
                if column not in header:
                    raise ValueError(
                        f"{self.path}: evaluator.columns.{metric} names column {column!r}, which is "
                        f"not in the file; columns: {', '.join(header)}."
                    )
            mapped = dict(spec.columns)
            if not mapped:  # no mapping given: every other column is a metric of its own name
                mapped = {col: col for col in header if col != spec.key and col.isidentifier()}
            self.columns = mapped
            self.metrics = tuple(mapped)
            self.rows: dict[str, dict[str, float]] = {}
            for line, row in enumerate(reader, start=2):
                try:
                    arch = space.from_str(row[spec.key])
                except ValueError as exc:
                    raise ValueError(f"{self.path}: line {line}: {exc}") from None
                values: dict[str, float] = {}
                for metric, col in mapped.items():
                    try:
                        values[metric] = float(row[col])
                    except (TypeError, ValueError):
                        if metric in spec.columns:
                            raise ValueError(
                                f"{self.path}: line {line}: column {col!r} must be a number, got {row[col]!r}."
                            ) from None
                self.rows[space.arch_id(arch)] = values
        self.metrics = tuple(m for m in self.metrics if all(m in v for v in self.rows.values()))
        self._fp = f"table:{sha256_file(self.path)[:32]}:{spec.key}"

    def fingerprint(self) -> str:
        return self._fp

    def evaluate(self, arch: Mapping[str, Any]) -> dict[str, float]:
        aid = self.space.arch_id(arch)
        if aid not in self.rows:
            raise KeyError(f"{self.path} has no row for architecture {self.space.arch_str(arch)!r}.")
        return dict(self.rows[aid])


@EVALUATORS.register("supernet")
class SupernetEvaluatorKind(Evaluator):
    """Accuracy and loss of subnets with inherited weights, after BN recalibration, on the
    checkpoint's own data (validation split by default)."""

    metrics = ("accuracy", "loss")

    def __init__(self, spec: EvaluatorSpec, space: SearchSpace) -> None:
        super().__init__(spec, space)
        import torch

        from nas.train import SubnetEvaluator, load_dataset, load_model
        from nas.train._spec import DataSpec

        step = resolve_checkpoint(spec)
        torch.set_num_threads(1)
        net, ckpt = load_model(step)
        trained = dict(ckpt.meta["space"])
        if get_space(**trained).spec() != space.spec():
            raise ValueError(
                f"The checkpoint was trained for space {trained}, but the search names "
                f"{space.spec()}; use the same space name and overrides."
            )
        data_spec = DataSpec(**ckpt.meta["spec"]["data"])
        data = load_dataset(data_spec)
        if spec.split == "train":
            data = type(data)(data.train_x, data.train_y, data.train_x, data.train_y, data.calib_x,
                              data.classes, data.mean, data.std, data.sha256, data.source)
        if spec.max_eval_samples is not None:
            n = spec.max_eval_samples
            data = type(data)(data.train_x, data.train_y, data.val_x[:n], data.val_y[:n], data.calib_x,
                              data.classes, data.mean, data.std, data.sha256, data.source)
        self.checkpoint = step
        self._inner = SubnetEvaluator(net, space, data, max(1, spec.bn_calib_batches), spec.batch_size)
        self._fp = supernet_fingerprint(spec)

    def fingerprint(self) -> str:
        return self._fp

    def evaluate(self, arch: Mapping[str, Any]) -> dict[str, float]:
        return self._inner.evaluate(arch)


@EVALUATORS.register("predictor")
class PredictorEvaluator(Evaluator):
    """Accuracy predicted by a saved `predictors` model (``nas predictor fit``)."""

    metrics = ("accuracy",)

    def __init__(self, spec: EvaluatorSpec, space: SearchSpace) -> None:
        super().__init__(spec, space)
        import predictors as pr

        assert spec.path is not None
        path = Path(spec.path)
        if not path.exists():
            raise FileNotFoundError(f"Predictor {str(path)!r} not found (save one with `nas predictor fit`).")
        self.model = pr.load_predictor(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + sha256_file(f).encode())
        self._fp = f"predictor:{h.hexdigest()[:32]}"

    def fingerprint(self) -> str:
        return self._fp

    def evaluate(self, arch: Mapping[str, Any]) -> dict[str, float]:
        mean, _ = self.model.predict(self.space.encode(arch)[None, :])
        return {"accuracy": float(mean[0])}


def resolve_checkpoint(spec: EvaluatorSpec) -> Path:
    """The newest checkpoint step directory a supernet evaluator spec points at.

    Raises:
        FileNotFoundError: no such path, or no checkpoint under it.
    """
    from nas.train import latest_checkpoint

    assert spec.checkpoint is not None
    root = Path(spec.checkpoint)
    if not root.exists():
        raise FileNotFoundError(f"Checkpoint {str(root)!r} not found (a `nas train` run directory).")
    if (root / "checkpoint.json").is_file():
        return root
    step = latest_checkpoint(root / "checkpoints") or latest_checkpoint(root)
    if step is None:
        raise FileNotFoundError(f"No checkpoint under {str(root)!r}; train one with `nas train SPEC.yaml`.")
    return step


def supernet_fingerprint(spec: EvaluatorSpec) -> str:
    """Checkpoint content hash + data hash + split: the evaluation cache's key for a supernet
    evaluator (computed without loading the model)."""
    from nas.train._checkpoint import checkpoint_hash

    step = resolve_checkpoint(spec)
    digest, _ = checkpoint_hash(step)
    meta = json.loads((step / "checkpoint.json").read_text())
    data_hash = str((meta.get("data") or {}).get("sha256", ""))[:16]
    return f"supernet:{digest[:32]}:{data_hash}:{spec.split}:{spec.max_eval_samples}"


def build_space(ref: SpaceRef) -> SearchSpace:
    return get_space(ref.name, **ref.overrides)


def build_evaluator(spec: EvaluatorSpec, space_ref: SpaceRef) -> Evaluator:
    """Build the evaluator a spec names (loads its state)."""
    return EVALUATORS.get_factory(spec.kind)(spec, build_space(space_ref))


def evaluator_metrics(spec: EvaluatorSpec, space_ref: SpaceRef) -> tuple[str, ...]:
    """Metric names an evaluator yields, without loading a supernet (tables are read)."""
    cls = EVALUATORS.get_factory(spec.kind)
    if spec.kind == "table":
        return build_evaluator(spec, space_ref).metrics
    return cls.metrics


def cache_key(fingerprint: str, arch_id: str) -> str:
    return hashlib.sha256(json.dumps([fingerprint, arch_id]).encode()).hexdigest()


EvaluateFn = Callable[[Mapping[str, Any]], dict[str, float]]
