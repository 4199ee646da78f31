"""The search job spec: a pydantic model read from YAML or JSON, with one-line errors.

Example (``examples/search_nb201_table.yaml``)::

    space: {name: nb201}
    evaluator: {kind: table, path: ../shared/data/nb201_12epoch/nb201_12epoch_acc.csv,
                columns: {accuracy: cifar10-val}}
    objectives:
      - {name: accuracy, direction: maximize}
      - {name: latency_ms, device: local-cpu, direction: minimize}   # cheap: from the table
    constraints:
      - {name: latency_ms, device: local-cpu, max: 5.0}
    sampler: {name: predictor}
    budget: {trials: 300, parallelism: 1, seed: 0}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ANALYTIC_METRICS",
    "BudgetSpec",
    "ConstraintSpec",
    "EvaluatorSpec",
    "ObjectiveSpec",
    "SamplerSpec",
    "SearchSpec",
    "SearchSpecError",
    "load_search_spec",
    "parse_search_spec",
]

ANALYTIC_METRICS = ("macs", "params", "activation_bytes")
"""Metrics the space computes itself (free)."""
TABLE_METRICS = ("latency_ms",)
"""Metrics read from a device's latency table (free; need `device`)."""
EXPENSIVE_METRICS = ("accuracy", "loss")
"""Metrics the evaluator computes (a supernet evaluator gives both; a table or predictor evaluator
gives what its columns or predictor give)."""


class SearchSpecError(ValueError):
    """A search spec is malformed; the message is one line naming the field and the rule."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpaceRef(_Model):
    """A registered space plus keyword overrides of its preset."""

    name: str = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)


class EvaluatorSpec(_Model):
    """Where expensive metrics come from.

    ``supernet``: a checkpoint (run or step directory) of `nas train`; accuracy and loss on the
    validation split after BN recalibration. ``table``: a CSV with an architecture-string column
    (`key`) and one column per metric (`columns` maps metric names to CSV columns; a metric
    whose column is named like itself needs no entry). ``predictor``: a saved predictor
    directory (`path`) whose prediction is the `accuracy` metric.
    """

    kind: Literal["supernet", "table", "predictor"]
    checkpoint: str | None = None
    path: str | None = None
    key: str = "arch"
    columns: dict[str, str] = Field(default_factory=dict)
    split: Literal["val", "train"] = "val"
    bn_calib_batches: int = Field(4, ge=0)
    batch_size: int = Field(256, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _sources(self) -> EvaluatorSpec:
        if self.kind == "supernet" and not self.checkpoint:
            raise ValueError("`checkpoint` is required for kind 'supernet' (a `nas train` run directory)")
        if self.kind in ("table", "predictor") and not self.path:
            raise ValueError(f"`path` is required for kind {self.kind!r}")
        return self


class ObjectiveSpec(_Model):
    """One objective. `device` is required for ``latency_ms``; `cheap` defaults to true for table
    and analytic metrics and to false for evaluator metrics (the budget counts expensive ones)."""

    name: str = Field(min_length=1)
    direction: Literal["minimize", "maximize"]
    device: str | None = None
    cheap: bool | None = None

    @model_validator(mode="after")
    def _device(self) -> ObjectiveSpec:
        _check_device(self.name, self.device)
        return self

    @property
    def key(self) -> str:
        return metric_key(self.name, self.device)


class ConstraintSpec(_Model):
    """A bound on a metric, applied during search and stored as a value so that any other bound
    can be applied at query time."""

    name: str = Field(min_length=1)
    device: str | None = None
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> ConstraintSpec:
        if self.max is None and self.min is None:
            raise ValueError("a constraint needs `max` or `min`")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min}) exceeds `max` ({self.max}); no value can satisfy it")
        _check_device(self.name, self.device)
        return self

    @property
    def key(self) -> str:
        return metric_key(self.name, self.device)


class SamplerSpec(_Model):
    """Which strategy proposes architectures (see `nas.search.list_samplers`)."""

    name: str = "predictor"
    params: dict[str, Any] = Field(default_factory=dict)


class BudgetSpec(_Model):
    """`trials`: expensive evaluations (distinct architectures evaluated); `parallelism`: Ray
    evaluators (1: in-process)."""

    trials: int = Field(100, ge=1)
    parallelism: int = Field(1, ge=1, le=64)
    seed: int = 0
    timeout_s: float | None = Field(None, gt=0)


class SearchSpec(_Model):
    """A whole search job."""

    name: str | None = None
    space: SpaceRef
    evaluator: EvaluatorSpec
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    metrics: list[ObjectiveSpec] = Field(
        default_factory=list, description="Extra metrics stored with every trial (direction for display)."
    )
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)

    @model_validator(mode="after")
    def _names(self) -> SearchSpec:
        keys = [o.key for o in self.objectives]
        if len(set(keys)) != len(keys):
            raise ValueError(f"objectives repeat a metric: {keys}")
        return self


def _check_device(name: str, device: str | None) -> None:
    """Only table metrics depend on a device (and need one): a `device` on any other metric would
    store it under a key (``accuracy@cpu``) that nothing computes, silently dropping the bound."""
    if name in TABLE_METRICS and not device:
        raise ValueError(f"metric {name!r} needs a `device` (see `nas latency devices`)")
    if device and name not in TABLE_METRICS:
        raise ValueError(f"metric {name!r} does not depend on a device; remove `device`")


def metric_key(name: str, device: str | None) -> str:
    """The stored name of a metric: ``latency_ms@local-cpu`` for device metrics, else the name."""
    return f"{name}@{device}" if device else name


def _format(exc: ValidationError, source: str) -> str:
    errors = exc.errors()
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    got = err.get("input")
    got_txt = "" if err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"Bad search spec {source}: {loc}: {msg}{got_txt}{more}."


def parse_search_spec(data: Any, source: str = "<spec>") -> SearchSpec:
    """Validate a spec mapping.

    Raises:
        SearchSpecError: one line naming the bad field, the rule and what was given.
    """
    if not isinstance(data, dict):
        raise SearchSpecError(f"Bad search spec {source}: expected a mapping, but got {type(data).__name__}.")
    try:
        return SearchSpec.model_validate(data)
    except ValidationError as exc:
        raise SearchSpecError(_format(exc, source)) from None


def load_search_spec(path: str | Path) -> SearchSpec:
    """Read and validate a YAML or JSON search spec; relative evaluator paths resolve against the
    spec's directory.

    Raises:
        FileNotFoundError: no such file. SearchSpecError: unparsable or invalid content.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Search spec {str(p)!r} not found.")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SearchSpecError(f"Bad search spec {p}: not valid YAML/JSON ({first}).") from None
    spec = parse_search_spec(data, str(p))
    ev = spec.evaluator
    updates: dict[str, Any] = {}
    for field in ("checkpoint", "path"):
        value = getattr(ev, field)
        if value and not Path(value).is_absolute() and (p.parent / value).exists():
            updates[field] = str((p.parent / value).resolve())
    if updates:
        spec = spec.model_copy(update={"evaluator": ev.model_copy(update=updates)})
    if spec.name is None:
        spec = spec.model_copy(update={"name": p.stem})
    return spec
