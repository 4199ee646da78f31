"""Data-parallel training on Ray Train (``TorchTrainer``; gloo on CPU, NCCL on GPU).

Ray only dispatches: every worker runs the same `train_worker` loop on its shard of each batch,
gradients are averaged with one ``torch.distributed`` all-reduce per step, and rank 0 writes the
checkpoints into the run directory (which every worker must reach: local disk for the embedded
Ray, a shared mount on a cluster) and reports them with ``ray.train.report``.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import torch

from nas.train._progress import FileSink, tail_into
from nas.train._spec import TrainSpec
from nas.train._trainer import ProgressSink, train_worker

__all__ = ["RayContext", "run_on_ray"]

PROGRESS_FILE = ".progress.jsonl"


def _require_ray() -> Any:
    try:
        import ray
        import ray.train  # noqa: F401
        import ray.train.torch  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'Training with workers > 1 needs Ray Train: `pip install "ray[train]>=2.40"` '
            "(or set workers: 1 to train in-process)."
        ) from None
    return ray


class RayContext:
    """A Ray Train worker: rank and world size from the train context, torch.distributed collectives."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    def all_reduce_mean(self, tensor: torch.Tensor) -> None:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(self.world_size)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        import ray.train

        ckpt = (
            ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        )
        ray.train.report(
            metrics, checkpoint=ckpt, checkpoint_dir_name=checkpoint_dir.name if checkpoint_dir else None
        )


def _worker_entry(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs."""
    torch.set_num_threads(int(config.get("threads", 1)))
    spec = TrainSpec.model_validate(config["spec"])
    ctx = RayContext()
    sink = FileSink(Path(config["run_dir"]) / PROGRESS_FILE) if ctx.rank == 0 else None
    train_worker(spec, config["run_dir"], ctx, sink)


def run_on_ray(spec: TrainSpec, run_dir: Path, sink: ProgressSink | None = None) -> dict[str, Any]:
    """Run `spec` with ``spec.workers`` Ray Train workers; start (and stop) a local Ray if needed.

    A local Ray gets exactly ``workers`` CPUs; with ``RAY_ADDRESS`` set the driver joins that
    cluster instead. A GPU per worker is used when the cluster (or this machine) has enough.

    Returns:
        The final metrics reported by rank 0.
    """
    ray = _require_ray()
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(
                num_cpus=spec.workers,
                num_gpus=torch.cuda.device_count(),
                include_dashboard=False,
                logging_level=logging.WARNING,
                # Progress and metrics reach the driver through the run directory; worker logs
                # (and Ray Train's own chatter) stay in Ray's session logs.
                log_to_driver=False,
            )
        started = True
    progress = run_dir / PROGRESS_FILE
    progress.unlink(missing_ok=True)
    stop = threading.Event()
    tail = tail_into(progress, sink, stop) if sink is not None else None
    try:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= spec.workers
        trainer = TorchTrainer(
            _worker_entry,
            train_loop_config={"spec": spec.model_dump(mode="json"), "run_dir": str(run_dir), "threads": 1},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ScalingConfig(
                num_workers=spec.workers, use_gpu=use_gpu, resources_per_worker={"CPU": 1}
            ),
            run_config=RunConfig(
                name=f"{spec.name or 'train'}-{uuid.uuid4().hex[:8]}",
                storage_path=str((run_dir / "ray").resolve()),
                failure_config=FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=1),
            ),
        )
        try:
            result = trainer.fit()
        except Exception as exc:  # Ray wraps worker errors in its own types; keep one clear line
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise RuntimeError(
                f"Training on Ray failed: {first} (run directory {run_dir}; rerunning resumes from "
                "the last checkpoint)."
            ) from exc
        return dict(result.metrics or {})
    finally:
        stop.set()
        if tail is not None:
            tail.join(timeout=5)
        if started:
            ray.shutdown()
