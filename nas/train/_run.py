"""The driver of a training job: validate everything, resume or start, dispatch, register.

Validation (spec, space and overrides, shrinking groups, data, batch size per worker, a resumed
run's spec and data) happens before anything is written, so a bad spec leaves nothing behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.train._checkpoint import checkpoint_hash, latest_checkpoint, load_checkpoint
from nas.train._data import load_dataset
from nas.train._sampling import restrict_groups
from nas.train._spec import SpecError, TrainSpec
from nas.train._trainer import LocalContext, ProgressSink, build_space, steps_per_epoch, train_worker

__all__ = ["TrainResult", "check_spec", "run_dir_for", "train"]

ARTIFACT_KIND = "supernet_checkpoint"


@dataclass(frozen=True)
class TrainResult:
    """What a finished training job produced.

    Attributes:
        run_dir: The run directory.
        checkpoint: The final checkpoint directory.
        metrics: The last epoch's metrics (largest/smallest accuracy and loss, ...).
        sha256: Content hash of the final checkpoint (see `checkpoint_hash`).
        size_bytes: Its size.
        resumed_from: Global step the run resumed from (0: fresh start).
        artifact_id: The DB artifact's id (None when registration was off or failed).
    """

    run_dir: Path
    checkpoint: Path
    metrics: dict[str, Any]
    sha256: str
    size_bytes: int
    resumed_from: int
    artifact_id: int | None


def run_dir_for(spec: TrainSpec) -> Path:
    """``spec.output``, or ``$NAS_HOME/runs/<name>`` (NAS_HOME defaults to ``./.nas``)."""
    if spec.output:
        return Path(spec.output)
    return Path(os.environ.get("NAS_HOME", ".nas")) / "runs" / (spec.name or "train")


def check_spec(spec: TrainSpec) -> int:
    """Check what pydantic cannot: the space, its overrides, shrinking groups, data and batch sizes.

    Returns:
        The global step a rerun would resume from (0 for a fresh run).

    Raises:
        SpecError: one line naming the field and the rule.
    """
    try:
        space = build_space(spec)
    except (KeyError, ValueError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise SpecError(f"Bad training spec: space: {text}") from None
    for i, phase in enumerate(spec.training.phases()):
        try:
            restrict_groups(space, phase.elastic)
        except ValueError as exc:
            raise SpecError(f"Bad training spec: training.progressive_shrinking.{i}.elastic: {exc}") from None
    per_worker = spec.training.batch_size // spec.workers
    if per_worker < 2:
        raise SpecError(
            f"Bad training spec: training.batch_size={spec.training.batch_size} gives {per_worker} "
            f"image(s) per worker "
            f"with workers={spec.workers}; BatchNorm needs at least 2 (batch_size >= {2 * spec.workers})."
        )
    try:
        data = load_dataset(spec.data)
    except (FileNotFoundError, ValueError) as exc:
        raise SpecError(f"Bad training spec: data: {exc}") from None
    if steps_per_epoch(len(data.train_y), spec.training.batch_size) < 1:
        raise SpecError(
            f"Bad training spec: training.batch_size={spec.training.batch_size} exceeds the "
            f"{len(data.train_y)} training images; use a smaller batch."
        )
    c = space.input_shape(space.largest())[0]
    if data.channels != c and data.channels != 1:
        raise SpecError(
            f"Bad training spec: the data has {data.channels} channels but space {space.name!r} expects {c}; "
            f"set space.overrides.in_channels: {data.channels}."
        )
    run_dir = run_dir_for(spec)
    latest = latest_checkpoint(run_dir / "checkpoints")
    if latest is None:
        return 0
    meta = load_checkpoint(latest, with_optimizer=False).meta
    if meta.get("spec_fingerprint") != spec.fingerprint():
        old = meta.get("spec_fingerprint") or {}
        new = spec.fingerprint()
        diff = next((k for k in new if old.get(k) != new.get(k)), "?")
        raise SpecError(
            f"Output {str(run_dir)!r} holds a run of a different spec (its {diff!r} section differs); "
            "use another output directory or delete that one to start over."
        )
    if meta.get("data", {}).get("sha256") != data.sha256:
        raise SpecError(
            f"Output {str(run_dir)!r} was trained on different data "
            f"(sha256 {meta['data'].get('sha256', '?')[:12]}..., "
            f"now {data.sha256[:12]}...); use another output directory."
        )
    return int(meta["progress"]["step"])


def _register(spec: TrainSpec, ckpt: Path, sha: str, size: int, metrics: dict[str, Any]) -> int:
    from nas.db import register_artifact

    meta = load_checkpoint(ckpt, with_optimizer=False).meta
    art = register_artifact(
        kind=ARTIFACT_KIND,
        name=spec.name or ckpt.parent.parent.name,
        path=str(ckpt.resolve()),
        sha256=sha,
        size_bytes=size,
        meta={
            "space": meta["space"],
            "data_sha256": meta["data"]["sha256"],
            "step": meta["progress"]["step"],
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
            "versions": meta.get("versions", {}),
        },
    )
    return art.id


def train(
    spec: TrainSpec,
    sink: ProgressSink | None = None,
    *,
    register: bool | None = None,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train the supernet of `spec` (resuming its run directory's last checkpoint) and register it.

    Args:
        spec: A validated spec (see `load_spec`).
        sink: Progress receiver (e.g. `RichSink`).
        register: Register the final checkpoint in the DB (default: ``spec.register_checkpoint``).
        stop_after_steps: In-process only: stop after this many steps (tests, benchmarks).

    Raises:
        SpecError: the spec is invalid for its space or data, or the run directory holds another run.
        RuntimeError: the DB registration failed (the checkpoint stays in place; rerunning registers it).
    """
    resumed_from = check_spec(spec)
    if spec.data.path:  # workers may run elsewhere (Ray changes their working directory)
        spec = spec.model_copy(
            update={"data": spec.data.model_copy(update={"path": str(Path(spec.data.path).resolve())})}
        )
    run_dir = run_dir_for(spec).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if sink is not None:
        where = "in-process" if spec.workers == 1 else f"on {spec.workers} Ray workers"
        sink.message(f"Training the {spec.space.name} supernet {where} -> {run_dir}")
    latest = latest_checkpoint(run_dir / "checkpoints")
    if latest is not None and load_checkpoint(latest, with_optimizer=False).complete:
        if sink is not None:
            sink.message(f"Already complete: {latest}")
    elif spec.workers > 1:
        if stop_after_steps is not None:
            raise ValueError("stop_after_steps is only supported in-process (workers: 1).")
        from nas.train._ray import run_on_ray

        run_on_ray(spec, run_dir, sink)
    else:
        train_worker(spec, run_dir, LocalContext(), sink, stop_after_steps=stop_after_steps)
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:  # pragma: no cover - a finished run always leaves one
        raise RuntimeError(f"Training finished without a checkpoint in {run_dir}.")
    loaded = load_checkpoint(ckpt, with_optimizer=False)
    history = loaded.meta.get("metrics") or [{}]
    metrics = dict(history[-1])
    sha, size = checkpoint_hash(ckpt)
    artifact_id = None
    if (spec.register_checkpoint if register is None else register) and loaded.complete:
        try:
            artifact_id = _register(spec, ckpt, sha, size, metrics)
        except Exception as exc:  # the DB is a separate concern: keep the checkpoint, say what failed
            raise RuntimeError(
                f"Training finished ({ckpt}) but registering the checkpoint in the database failed: {exc}. "
                "Fix the database (see `nas db upgrade`) and rerun the same command to register it."
            ) from exc
    return TrainResult(run_dir, ckpt, metrics, sha, size, resumed_from, artifact_id)
