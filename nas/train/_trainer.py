"""The training loop every data-parallel worker runs (in-process for ``workers: 1``).

Per step: the schedule names the subnets (largest first); each runs forward and backward on the
worker's shard of the batch and the gradients accumulate; with several workers the accumulated
gradients are averaged in one all-reduce; then one optimiser step. The largest subnet learns
from the labels, the others from its detached soft targets (in-place distillation).

Randomness is a function of (seed, step[, rank]): the data order of an epoch, the subnets of a
step, augmentation and dropout. A run resumed from a checkpoint therefore continues exactly as the
interrupted run would have.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import search_spaces as ss
from nas.train._bn import recalibrate_bn
from nas.train._checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from nas.train._data import Dataset, load_dataset, shift_augment, to_input
from nas.train._distill import student_loss
from nas.train._sampling import Schedule
from nas.train._spec import TrainingSpec, TrainSpec
from search_spaces import SearchSpace

__all__ = [
    "Context",
    "LocalContext",
    "NullSink",
    "ProgressSink",
    "SubnetEvaluator",
    "build_optimizer",
    "build_space",
    "steps_per_epoch",
    "train_worker",
]

_DATA_TAG, _AUG_TAG, _TORCH_TAG = 0xDA7A, 0xA06, 0x70C4


class Context(Protocol):
    """Where a worker runs: its rank, the world size, its device and collective operations."""

    rank: int
    world_size: int
    device: torch.device

    def all_reduce_mean(self, tensor: torch.Tensor) -> None:
        """Average `tensor` in place across workers."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        """Called by every worker once per epoch (a barrier with several workers)."""


class LocalContext:
    """A single in-process worker."""

    rank = 0
    world_size = 1

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def all_reduce_mean(self, tensor: torch.Tensor) -> None:
        pass

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        pass


class ProgressSink(Protocol):
    """Receives progress from the rank-0 worker (a rich display, a file, a test recorder)."""

    def start(self, total_steps: int, start_step: int, steps_per_epoch: int) -> None: ...

    def step(self, step: int, loss: float, phase: str) -> None: ...

    def epoch(self, metrics: dict[str, Any]) -> None: ...

    def message(self, text: str) -> None: ...


class NullSink:
    """Discards progress."""

    def start(self, total_steps: int, start_step: int, steps_per_epoch: int) -> None:
        pass

    def step(self, step: int, loss: float, phase: str) -> None:
        pass

    def epoch(self, metrics: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


def build_space(spec: TrainSpec) -> SearchSpace:
    """The spec's search space (raises KeyError / InvalidSpaceConfig for bad names or overrides)."""
    return ss.get_space(spec.space.name, **spec.space.overrides)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps per epoch (the last partial batch is dropped)."""
    return max(n_train // batch_size, 0)


def build_optimizer(net: nn.Module, t: TrainingSpec) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; no weight decay on biases, norms and kernel transforms (1-D or tiny)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in net.named_parameters():
        (no_decay if p.ndim <= 1 or "transforms" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr)
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=t.momentum > 0)


class SubnetEvaluator:
    """Validation loss and accuracy of any subnet with inherited weights, after BN recalibration.

    Args:
        net: The supernet (left with the last evaluated subnet active, in eval mode).
        space: Its space.
        data: The data set (validation split and calibration subset are used).
        calib_batches: How many batches the calibration subset is cut into.
        batch_size: Evaluation batch size.
        device: Where to run.
    """

    def __init__(
        self,
        net: nn.Module,
        space: SearchSpace,
        data: Dataset,
        calib_batches: int = 4,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
    ) -> None:
        self.net, self.space, self.data = net, space, data
        self.calib_batches, self.batch_size, self.device = calib_batches, batch_size, torch.device(device)
        self._cache: dict[tuple[int, int, int], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def _inputs(self, shape: tuple[int, int, int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if shape not in self._cache:
            calib = to_input(self.data.calib_x, shape).to(self.device)
            val = to_input(self.data.val_x, shape).to(self.device)
            per = math.ceil(len(calib) / self.calib_batches)
            self._cache[shape] = (list(calib.split(per)), list(val.split(self.batch_size)))
        return self._cache[shape]

    @torch.no_grad()
    def evaluate(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """``{"loss": mean cross-entropy, "accuracy": fraction correct}`` on the validation split."""
        calib, val = self._inputs(self.space.input_shape(arch))
        recalibrate_bn(self.net, calib, arch)
        labels = self.data.val_y.to(self.device)
        loss_sum, correct, seen = 0.0, 0, 0
        for xb in val:
            yb = labels[seen : seen + len(xb)]
            out = self.net(xb)
            loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
            seen += len(xb)
        return {"loss": loss_sum / seen, "accuracy": correct / seen}


@dataclass
class _State:
    step: int
    history: list[dict[str, Any]]
    elapsed: float


def _resume(
    run_dir: Path, net: nn.Module, opt: torch.optim.Optimizer, schedule: Schedule, spec: TrainSpec
) -> _State:
    path = latest_checkpoint(run_dir / "checkpoints")
    if path is None:
        return _State(0, [], 0.0)
    ckpt = load_checkpoint(path)
    if ckpt.meta.get("spec_fingerprint") != spec.fingerprint():
        raise ValueError(
            f"{run_dir} holds a checkpoint of a different training spec; use another output directory "
            "or delete it to start over."
        )
    net.load_state_dict(ckpt.model_state, strict=True)
    if ckpt.optimizer_state is not None:
        opt.load_state_dict(ckpt.optimizer_state)
    schedule.sampler.load_state_dict(ckpt.meta.get("sampler", {}))
    return _State(
        ckpt.step, list(ckpt.meta.get("metrics", [])), float(ckpt.meta["progress"].get("elapsed_s", 0.0))
    )


def _flat_grads(params: list[nn.Parameter]) -> Iterator[tuple[torch.Tensor, list[nn.Parameter]]]:
    with_grad = [p for p in params if p.grad is not None]
    if with_grad:
        yield torch.cat([p.grad.reshape(-1) for p in with_grad]), with_grad  # type: ignore[union-attr]


def train_worker(
    spec: TrainSpec,
    run_dir: str | Path,
    ctx: Context,
    sink: ProgressSink | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) the supernet of `spec`, writing checkpoints to ``run_dir/checkpoints``.

    Args:
        spec: The validated job spec.
        run_dir: The run directory (shared by all workers; rank 0 writes).
        ctx: Rank, world size, device and collectives.
        sink: Progress receiver (rank 0 only).
        stop_after_steps: Stop (with a checkpoint) after this many steps of this call (tests).

    Returns:
        The last epoch's metrics and the final checkpoint directory (rank 0; others get metrics only).
    """
    run_dir = Path(run_dir)
    sink = sink if (sink is not None and ctx.rank == 0) else NullSink()
    t, device = spec.training, ctx.device
    data = load_dataset(spec.data)
    space = build_space(spec)
    torch.manual_seed(spec.seed)
    net = cast(nn.Module, space.build_supernet()).to(device)
    opt = build_optimizer(net, t)
    spe = steps_per_epoch(len(data.train_y), t.batch_size)
    if spe < 1:
        raise ValueError(
            f"training.batch_size={t.batch_size} exceeds the {len(data.train_y)} training images; "
            "use a smaller batch."
        )
    schedule = Schedule(space, t, spe, seed=spec.seed)
    state = _resume(run_dir, net, opt, schedule, spec)
    total = schedule.total_steps
    evaluator = SubnetEvaluator(net, space, data, t.bn_calib_batches, t.eval_batch_size, device)
    params = list(net.parameters())
    per_worker = t.batch_size // ctx.world_size
    sink.start(total, state.step, spe)
    if state.step > 0:
        sink.message(f"Resuming from step {state.step} (epoch {state.step // spe + 1}/{t.epochs}).")
    last: dict[str, Any] = state.history[-1] if state.history else {}
    ckpt_dir: Path | None = None
    meta_base = {
        "space": space.spec(),
        "spec": spec.model_dump(mode="json"),
        "spec_fingerprint": spec.fingerprint(),
        "data": data.describe(),
        "steps_per_epoch": spe,
        "total_steps": total,
    }

    def checkpoint(step: int, complete: bool) -> Path | None:
        if ctx.rank != 0:
            return None
        meta = {
            **meta_base,
            "progress": {
                "step": step,
                "epoch": step // spe,
                "complete": complete,
                "elapsed_s": round(state.elapsed + time.perf_counter() - started, 3),
            },
            "sampler": schedule.sampler.state_dict(),
            "metrics": state.history,
        }
        return save_checkpoint(run_dir / "checkpoints", step, net, opt, meta, keep=t.keep_checkpoints)

    started = time.perf_counter()
    epoch_losses: list[float] = []
    steps_this_call = 0
    step = state.step
    if step >= total:  # already complete
        return {**last, "checkpoint": str(latest_checkpoint(run_dir / "checkpoints"))}
    perm_epoch, perm = -1, np.empty(0, dtype=np.int64)
    while step < total:
        epoch, i = divmod(step, spe)
        if epoch != perm_epoch:
            perm = np.random.default_rng([spec.seed, epoch, _DATA_TAG]).permutation(len(data.train_y))
            perm_epoch = epoch
            if i == 0 and schedule.reorder_before(epoch) and hasattr(net, "reorder_channels"):
                cast(Any, net).reorder_channels()
                opt.state.clear()  # momentum of permuted channels would point the wrong way
                sink.message(f"Epoch {epoch + 1}: reordered channels by importance before this phase.")
        net.train()
        for g in opt.param_groups:
            g["lr"] = schedule.lr(step)
        batch = perm[i * t.batch_size : (i + 1) * t.batch_size][ctx.rank :: ctx.world_size][:per_worker]
        idx = torch.from_numpy(batch)
        x, y = data.train_x[idx], data.train_y[idx].to(device)
        if t.augment:
            gen = torch.Generator().manual_seed(
                int(np.random.default_rng([spec.seed, step, ctx.rank, _AUG_TAG]).integers(2**62))
            )
            x = shift_augment(x, gen)
        x = x.to(device)
        torch.manual_seed(int(np.random.default_rng([spec.seed, step, ctx.rank, _TORCH_TAG]).integers(2**62)))
        plan = schedule.plan(step)
        opt.zero_grad(set_to_none=True)
        teacher: torch.Tensor | None = None
        step_loss = 0.0
        for j, arch in enumerate(plan.archs):
            cast(Any, net).set_active(arch)
            out = net(to_input(x, space.input_shape(arch)))
            if j == 0:
                loss = F.cross_entropy(out, y, label_smoothing=t.label_smoothing)
                teacher = out.detach() if t.distill else None
            else:
                loss = student_loss(
                    out,
                    y,
                    teacher,
                    alpha=t.distill_alpha,
                    temperature=t.kd_temperature,
                    label_smoothing=t.label_smoothing,
                )
            loss.backward()
            if j == 0:
                step_loss = float(loss.detach())
        if ctx.world_size > 1:
            for flat, with_grad in _flat_grads(params):
                ctx.all_reduce_mean(flat)
                offset = 0
                for p in with_grad:
                    n = p.numel()
                    p.grad.copy_(flat[offset : offset + n].view_as(p))  # type: ignore[union-attr]
                    offset += n
        if t.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        epoch_losses.append(step_loss)
        step += 1
        steps_this_call += 1
        sink.step(step, step_loss, plan.phase)
        end_of_epoch = step % spe == 0
        if end_of_epoch:
            m: dict[str, Any] = {
                "epoch": epoch,
                "epochs": t.epochs,
                "step": step,
                "phase": plan.phase,
                "lr": schedule.lr(step - 1),
                "train_loss": float(np.mean(epoch_losses)) if epoch_losses else float("nan"),
            }
            epoch_losses = []
            if ctx.rank == 0:
                for end, arch in (("largest", space.largest()), ("smallest", space.smallest())):
                    r = evaluator.evaluate(arch)
                    m[f"{end}_accuracy"], m[f"{end}_loss"] = r["accuracy"], r["loss"]
                m["elapsed_s"] = round(state.elapsed + time.perf_counter() - started, 2)
                state.history.append(m)
                last = m
                ckpt_dir = checkpoint(step, complete=step >= total)
                sink.epoch(m)
            ctx.report({k: v for k, v in m.items() if isinstance(v, (int, float, str))}, ckpt_dir)
        elif t.checkpoint_every_steps and step % t.checkpoint_every_steps == 0:
            checkpoint(step, complete=False)
        if stop_after_steps is not None and steps_this_call >= stop_after_steps and step < total:
            if not end_of_epoch and not (t.checkpoint_every_steps and step % t.checkpoint_every_steps == 0):
                checkpoint(step, complete=False)
            break
    out = dict(last)
    if ctx.rank == 0:
        out["checkpoint"] = str(latest_checkpoint(run_dir / "checkpoints"))
    return out
