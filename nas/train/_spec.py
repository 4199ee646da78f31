"""The training job spec: a pydantic model read from YAML or JSON, with one-line errors.

Example (``examples/train_mbv3_tiny_digits.yaml``)::

    space: {name: mbv3_tiny, overrides: {in_channels: 1, resolutions: [12, 16]}}
    data: {kind: digits, val_fraction: 0.2, seed: 0, calib_size: 256}
    training:
      epochs: 16
      batch_size: 64
      lr: 0.1
      sandwich_n: 2
      distill: true
      sampling: uniform            # or complexity_aware
      deps_start_fraction: 0.25    # or progressive_shrinking: ofa
    workers: 2
    output: runs/mbv3_tiny_digits
    seed: 0
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "DataSpec",
    "ShrinkPhase",
    "SpaceSpec",
    "SpecError",
    "TrainSpec",
    "TrainingSpec",
    "load_spec",
    "parse_spec",
]


class SpecError(ValueError):
    """A training spec is malformed; the message is one line naming the field and the rule."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpaceSpec(_Model):
    """Which search space to train: a registered name plus keyword overrides of its preset."""

    name: str = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)


class DataSpec(_Model):
    """Where the images come from and how they are split.

    ``digits`` is scikit-learn's bundled 8x8 digits (no download); ``npz`` reads arrays ``X``
    (N,H,W / N,H,W,C / N,C,H,W) and ``y`` (N,) from `path`; ``imagefolder`` reads one sub-folder
    per class of images under `path`.
    """

    kind: Literal["digits", "npz", "imagefolder"] = "digits"
    path: str | None = None
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 0
    calib_size: int = Field(256, ge=1, description="Training images used to recalibrate BatchNorm.")
    max_samples: int | None = Field(None, ge=10, description="Use at most this many images (smoke tests).")
    image_size: int | None = Field(
        None, ge=4, description="imagefolder only: resize every image to this square side."
    )

    @model_validator(mode="after")
    def _path_rules(self) -> DataSpec:
        if self.kind == "digits" and self.path is not None:
            raise ValueError("`path` must be empty for kind 'digits' (the data set is bundled)")
        if self.kind != "digits" and not self.path:
            raise ValueError(f"`path` is required for kind {self.kind!r}")
        return self


class ShrinkPhase(_Model):
    """One progressive-shrinking phase: which choice groups are elastic, for how many epochs.

    Groups are choice-name prefixes (``ks``, ``e``, ``d``, ``r`` for the MobileNetV3 spaces;
    ``embed_dim``, ``depth``, ``heads``, ``mlp_ratio`` for vit_tiny; ``edge`` for nb201). Groups
    not listed stay at their largest option.
    """

    name: str = "phase"
    elastic: list[str] = Field(min_length=1)
    epochs: int = Field(ge=1)
    reorder_channels: bool = Field(
        False, description="Sort middle channels by importance (OFA) before this phase starts."
    )


# OFA's schedule for the MobileNetV3 spaces: kernel -> depth -> expand (resolution elastic throughout).
OFA_PHASES: tuple[tuple[str, tuple[str, ...], float, bool], ...] = (
    ("kernel", ("r", "ks"), 0.25, False),
    ("depth", ("r", "ks", "d"), 0.25, False),
    ("expand", ("r", "ks", "d", "e"), 0.5, True),
)


class TrainingSpec(_Model):
    """How to train: optimisation, the sandwich rule, distillation and the shrinking schedule."""

    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(64, ge=2, description="Global batch size (split across workers).")
    lr: float = Field(0.1, gt=0.0, le=10.0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-5, ge=0.0, le=1.0)
    warmup_epochs: float = Field(1.0, ge=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    grad_clip: float | None = Field(None, gt=0.0)
    augment: bool = Field(True, description="Random 1-pixel shifts of the native images.")
    sandwich_n: int = Field(
        2, ge=0, le=16, description="Random subnets per step besides largest and smallest."
    )
    distill: bool = True
    distill_alpha: float = Field(1.0, ge=0.0, le=1.0, description="Weight of the KD term (rest: labels).")
    kd_temperature: float = Field(1.0, gt=0.0, le=100.0)
    sampling: Literal["uniform", "complexity_aware"] = "uniform"
    complexity_bins: int = Field(8, ge=2, le=64)
    progressive_shrinking: Literal["ofa"] | list[ShrinkPhase] | None = None
    deps_start_fraction: float | None = Field(None, ge=0.0, lt=1.0)
    deps_ramp_fraction: float = Field(0.25, ge=0.0, le=1.0)
    bn_calib_batches: int = Field(4, ge=1, le=1000)
    eval_batch_size: int = Field(256, ge=1)
    checkpoint_every_steps: int = Field(
        0, ge=0, description="Extra mid-epoch checkpoints (0: per epoch only)."
    )
    keep_checkpoints: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _schedule_rules(self) -> TrainingSpec:
        if self.progressive_shrinking is not None and self.deps_start_fraction is not None:
            raise ValueError(
                "progressive_shrinking and deps_start_fraction are alternatives; set at most one"
            )
        if isinstance(self.progressive_shrinking, list):
            total = sum(p.epochs for p in self.progressive_shrinking)
            if total != self.epochs:
                raise ValueError(
                    f"the phases' epochs must add up to training.epochs ({self.epochs}), "
                    f"but they add up to {total}"
                )
        if self.progressive_shrinking == "ofa" and self.epochs < 3:
            raise ValueError("progressive_shrinking 'ofa' has 3 phases and needs epochs >= 3")
        return self

    def phases(self) -> list[ShrinkPhase]:
        """The progressive-shrinking phases with epochs resolved (empty: no progressive shrinking)."""
        if self.progressive_shrinking is None:
            return []
        if isinstance(self.progressive_shrinking, list):
            return list(self.progressive_shrinking)
        n = len(OFA_PHASES)
        epochs = [max(1, round(self.epochs * frac)) for _, _, frac, _ in OFA_PHASES[:-1]]
        epochs = [min(e, self.epochs - sum(epochs[:i]) - (n - 1 - i)) for i, e in enumerate(epochs)]
        epochs.append(self.epochs - sum(epochs))
        return [
            ShrinkPhase(name=name, elastic=list(groups), epochs=e, reorder_channels=reorder)
            for (name, groups, _, reorder), e in zip(OFA_PHASES, epochs, strict=True)
        ]


class TrainSpec(_Model):
    """A supernet training job."""

    name: str | None = Field(None, description="Run name (default: the spec file's stem).")
    space: SpaceSpec
    data: DataSpec = Field(default_factory=lambda: DataSpec.model_validate({}))
    training: TrainingSpec = Field(default_factory=lambda: TrainingSpec.model_validate({}))
    workers: int = Field(1, ge=1, le=1024, description="Data-parallel workers; 1 runs in-process.")
    max_failures: int = Field(0, ge=0, description="Ray Train worker-group restarts on failure.")
    output: str | None = Field(None, description="Run directory (default: $NAS_HOME/runs/<name>).")
    seed: int = 0
    register_checkpoint: bool = Field(True, description="Register the final checkpoint as a DB artifact.")

    @field_validator("name")
    @classmethod
    def _name_chars(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "/\\\0")):
            raise ValueError(f"must be a non-empty name without path separators, but got {v!r}")
        return v

    def fingerprint(self) -> dict[str, Any]:
        """The parts that define the trained weights (a resumed run must match them).

        The data's location is left out (the data's sha256 is checked instead), so a run may be
        resumed after the data or the spec moved.
        """
        out = self.model_dump(mode="json", include={"space", "data", "training", "seed"})
        out["data"].pop("path", None)
        for key in ("checkpoint_every_steps", "keep_checkpoints", "eval_batch_size"):  # bookkeeping only
            out["training"].pop(key, None)
        return out


def _pick_error(exc: ValidationError) -> tuple[dict[str, Any], int]:
    """The error to show and how many others there are; union members are merged into one."""
    errs = exc.errors()
    first = errs[0]
    tag_at = next((i for i, p in enumerate(first["loc"]) if isinstance(p, str) and "[" in p), None)
    if tag_at is None:
        return dict(first), len(errs) - 1
    prefix = first["loc"][:tag_at]
    group = [e for e in errs if e["loc"][:tag_at] == prefix]
    rest = len(errs) - len(group)
    value: Any = first["input"]
    if isinstance(value, list):
        inner = [e for e in group if str(e["loc"][tag_at]).startswith("list[") and len(e["loc"]) > tag_at + 1]
        if inner:
            err: dict[str, Any] = dict(max(inner, key=lambda e: len(e["loc"])))
            err["loc"] = prefix + err["loc"][tag_at + 1 :]
            return err, rest
    options = [e["msg"].removeprefix("Input should be ") for e in group if e["type"] == "literal_error"]
    if any(str(e["loc"][tag_at]).startswith("list[") for e in group):
        options.append("a list of phases ({name, elastic, epochs})")
    err = {
        "loc": prefix,
        "type": "union",
        "input": value,
        "msg": f"Input should be {' or '.join(options) or 'valid'}",
    }
    return err, rest


def _format_error(exc: ValidationError, source: str) -> str:
    err, others = _pick_error(exc)
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        parent = _model_at(TrainSpec, err["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent is not None else "see the docs"
        msg = f"unknown key; allowed keys: {allowed}"
    elif err["type"] == "missing":
        msg = "required but missing"
    got = err.get("input")
    got_txt = (
        "" if err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
    )
    more = f" (+{others} more)" if others else ""
    return f"Bad training spec {source}: {loc}: {msg}{got_txt}{more}."


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = None
        for c in candidates:
            for cc in [c, *getattr(c, "__args__", ())]:
                if isinstance(cc, type) and issubclass(cc, BaseModel):
                    nxt = cc
        if nxt is None:
            return None
        model = nxt
    return model


def parse_spec(data: Any, source: str = "<spec>") -> TrainSpec:
    """Validate a spec mapping.

    Raises:
        SpecError: one line naming the bad field, the rule or allowed values, and what was given.
    """
    if not isinstance(data, dict):
        raise SpecError(
            f"Bad training spec {source}: expected a mapping at the top level, but got {type(data).__name__}."
        )
    try:
        return TrainSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_error(exc, source)) from None


def load_spec(path: str | Path) -> TrainSpec:
    """Read and validate a YAML or JSON training spec.

    Raises:
        FileNotFoundError: no such file.
        SpecError: unparsable file or invalid content (one line).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Training spec {str(p)!r} not found.")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(
            f"Bad training spec {p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'} ({first})."
        ) from None
    spec = parse_spec(data, str(p))
    if spec.name is None:
        spec = spec.model_copy(update={"name": p.stem})
    return spec
