"""Supernet checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a directory ``<run>/checkpoints/step-00000123/`` holding

* ``model.safetensors``: the supernet's state dict (contiguous copies, so shared or sliced
  tensors save cleanly);
* ``optimizer.safetensors``: the optimiser's per-parameter tensors, keyed ``state.<i>.<name>``;
* ``checkpoint.json``: format tag, space spec (name and overrides), the training spec, progress
  (global step, epoch, complete), the optimiser's scalar state and parameter groups, sampler
  state, per-epoch metrics, data metadata with its sha256, library versions.

A checkpoint is written into a hidden temporary directory and renamed into place, so a reader (or
a resumed run) only ever sees complete checkpoints; the newest by step wins. Loading uses
`safetensors.torch.load_file` and `json`; nothing is unpickled.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "checkpoint_hash",
    "latest_checkpoint",
    "library_versions",
    "load_checkpoint",
    "load_model",
    "optimizer_from_safetensors",
    "optimizer_to_safetensors",
    "save_checkpoint",
    "sha256_file",
]

CHECKPOINT_FORMAT = "hwnas.supernet-checkpoint/1"
MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optimizer.safetensors"
META_FILE = "checkpoint.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the libraries that shape a checkpoint's content, plus `extra` distributions
    (those not installed are left out)."""
    out = {"python": platform.python_version()}
    for dist in ("hwnas", "torch", "numpy", "safetensors", "scikit-learn", "pydantic", "ray", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for k, v in state.items()
        if isinstance(v, torch.Tensor)
    }


def optimizer_to_safetensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser's state dict into tensors (for safetensors) and JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = (
                    value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
                )
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_safetensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Rebuild an optimiser state dict from `optimizer_to_safetensors`' two halves."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    root: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Atomically write checkpoint ``root/step-<step>`` and prune all but the newest `keep`.

    Args:
        root: The run's ``checkpoints`` directory (created if missing).
        step: Global step the checkpoint resumes from (the next step to run).
        model: The supernet.
        optimizer: Its optimiser (None: weights only).
        meta: JSON-serialisable metadata stored in ``checkpoint.json``.
        keep: How many checkpoints to keep.

    Returns:
        The checkpoint directory.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(_tensors(model.state_dict()), str(tmp / MODEL_FILE), metadata={"format": CHECKPOINT_FORMAT})
        payload = {
            "format": CHECKPOINT_FORMAT,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "versions": library_versions(),
            **meta,
        }
        if optimizer is not None:
            tensors, opt_meta = optimizer_to_safetensors(optimizer)
            save_file(tensors, str(tmp / OPTIM_FILE), metadata={"format": CHECKPOINT_FORMAT})
            payload["optimizer"] = {"class": type(optimizer).__name__, **opt_meta}
        with open(tmp / META_FILE, "w") as f:
            json.dump(payload, f, indent=1, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, keep, protect=final)
    return final


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot store {type(value).__name__} in checkpoint.json.")


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / META_FILE).is_file() and (p / MODEL_FILE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def _prune(root: Path, keep: int, protect: Path) -> None:
    dirs = _step_dirs(root)
    for _, p in dirs[: max(len(dirs) - keep, 0)]:
        if p != protect:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.iterdir():  # temporaries of killed writers
        if p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint directory under `root` (a run's ``checkpoints``), or None."""
    dirs = _step_dirs(Path(root))
    return dirs[-1][1] if dirs else None


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: its directory, metadata and tensors (CPU)."""

    path: Path
    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None

    @property
    def step(self) -> int:
        return int(self.meta["progress"]["step"])

    @property
    def complete(self) -> bool:
        return bool(self.meta["progress"].get("complete", False))


def load_checkpoint(path: str | Path, with_optimizer: bool = True) -> Checkpoint:
    """Read a checkpoint directory (or its ``checkpoint.json``) without unpickling anything.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: a file is malformed or of another format.
    """
    p = Path(path)
    if p.is_file() and p.name == META_FILE:
        p = p.parent
    if not (p / META_FILE).is_file() or not (p / MODEL_FILE).is_file():
        raise FileNotFoundError(f"No checkpoint at {str(p)!r} (expected {META_FILE} and {MODEL_FILE}).")
    try:
        meta = json.loads((p / META_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"Checkpoint {str(p)!r}: {META_FILE} is not valid JSON ({exc}).") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"Checkpoint {str(p)!r} has format {meta.get('format')!r}; expected {CHECKPOINT_FORMAT!r}."
        )
    try:
        model_state = load_file(str(p / MODEL_FILE))
        opt_state = None
        if with_optimizer and (p / OPTIM_FILE).is_file() and "optimizer" in meta:
            opt_state = optimizer_from_safetensors(load_file(str(p / OPTIM_FILE)), meta["optimizer"])
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"Checkpoint {str(p)!r} has a corrupt tensor file: {exc}.") from None
    return Checkpoint(p, meta, model_state, opt_state)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Rebuild the supernet of a checkpoint with its weights (eval mode).

    Returns:
        ``(supernet, checkpoint)``; the space is ``supernet.space``.
    """
    import search_spaces as ss

    ckpt = load_checkpoint(path, with_optimizer=False)
    space_spec = dict(ckpt.meta["space"])
    space = ss.get_space(space_spec.pop("name"), **space_spec)
    net = cast(nn.Module, space.build_supernet())
    net.load_state_dict(ckpt.model_state, strict=True)
    return net.to(device).eval(), ckpt


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_hash(path: str | Path) -> tuple[str, int]:
    """Content hash of a checkpoint directory and its size in bytes.

    The hash is the sha256 of the sorted ``"<file name> <sha256 of file>\\n"`` lines of its files,
    so it changes when any file does and does not depend on the directory's location.
    """
    p = Path(path)
    lines, size = [], 0
    for f in sorted(q for q in p.iterdir() if q.is_file()):
        lines.append(f"{f.name} {sha256_file(f)}\n")
        size += f.stat().st_size
    return hashlib.sha256("".join(lines).encode()).hexdigest(), size
