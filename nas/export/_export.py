"""Exporting one subnet of a trained supernet as a standalone, verifiable bundle.

The steps, in order (every check on user input comes before anything is written):

1. validate formats, devices, the output directory, the checkpoint and the architecture;
2. load the supernet and its training data (the data's sha256 must match the checkpoint's);
3. recalibrate BatchNorm for the subnet on the training calibration images (as the search
   evaluates it) and measure the supernet-at-arch validation accuracy;
4. extract the standalone subnet and write the requested formats into a temporary directory
   beside the output;
5. parity: the extracted torch module, the ONNX file (ONNX Runtime) and the TorchScript trace
   must reproduce the supernet-at-arch outputs within `parity_atol`, else nothing is kept;
6. accuracy of every format on the validation split, INT8 quantisation (optional), latency
   estimates from device tables and re-measurement of the files on this machine;
7. the manifest (with sha256 and size of every file), then one rename into place.

A search job exports a trial by calling `export_subnet` with the trial's architecture, its
objectives as searched and an `origin` naming the job and trial.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

import latency_tables as lt
from nas.export._bundle import (
    ARCH_FILE,
    BUNDLE_FORMAT,
    INT8_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    ONNX_FILE,
    TORCHSCRIPT_FILE,
    file_entry,
    write_json,
)
from nas.export._int8 import quantize_int8
from nas.export._latency import check_devices, estimate_latency, measure_calls
from nas.export._onnx import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    export_onnx,
    export_torchscript,
    load_torchscript,
    ort_predict,
    ort_session,
    require_onnxruntime,
)
from search_spaces import Arch, SearchSpace

__all__ = [
    "FORMATS",
    "ExportParityError",
    "ExportResult",
    "export_subnet",
    "parse_arch",
    "parse_formats",
    "resolve_checkpoint",
]

FORMATS: tuple[str, ...] = ("torch", "onnx", "torchscript")
"""Bundle formats: ``torch`` (model.safetensors + arch.json, always written), ``onnx``,
``torchscript``. INT8 is a flag on top of ``onnx``."""

PARITY_ATOL = 1e-4
PROBE_BATCH = 8


class ExportParityError(RuntimeError):
    """An exported format does not reproduce the supernet-at-arch outputs (nothing was written)."""


@dataclass(frozen=True)
class ExportResult:
    """A written bundle.

    Attributes:
        path: The bundle directory.
        manifest: Its manifest (also in ``path / "manifest.json"``).
    """

    path: Path
    manifest: dict[str, Any]

    @property
    def arch_id(self) -> str:
        return str(self.manifest["arch_id"])

    @property
    def files(self) -> list[str]:
        """Bundle files besides the manifest."""
        return list(self.manifest["files"])

    @property
    def accuracy(self) -> dict[str, Any]:
        return dict(self.manifest["accuracy"])

    @property
    def latency(self) -> dict[str, Any]:
        return dict(self.manifest["latency"])


# ----- input checks ------------------------------------------------------------------------------
def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Normalise ``"torch,onnx"`` or a sequence; ``torch`` is always included (load_exported reads it).

    Raises:
        ValueError: an unknown format (naming it and the allowed ones).
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [str(f).strip().lower() for f in items if str(f).strip()]
    bad = [f for f in names if f not in FORMATS]
    if bad:
        raise ValueError(f"Unknown export format {bad[0]!r}; allowed: {', '.join(FORMATS)}.")
    return tuple(f for f in FORMATS if f == "torch" or f in names)


def resolve_checkpoint(source: str | Path) -> Path:
    """The checkpoint directory for a step directory, a run's ``checkpoints`` directory or a run
    directory (its newest complete checkpoint, see `nas.train.latest_checkpoint`).

    Raises:
        FileNotFoundError: no such path, or no checkpoint in it.
    """
    from nas.train import latest_checkpoint

    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"Checkpoint {str(p)!r} not found.")
    if p.is_file() and p.name == "checkpoint.json":
        p = p.parent
    if (p / "checkpoint.json").is_file() and (p / "model.safetensors").is_file():
        return p
    for root in (p / "checkpoints", p):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"No supernet checkpoint in {str(p)!r}: expected a step directory (checkpoint.json + "
        "model.safetensors) or a training run directory holding checkpoints/step-*."
    )


def parse_arch(space: SearchSpace, arch: Mapping[str, Any] | str) -> Arch:
    """An architecture from a mapping, a JSON object, the space's arch string (e.g. NAS-Bench-201's)
    or ``@FILE`` holding either.

    Raises:
        FileNotFoundError: ``@FILE`` does not exist.
        InvalidArch: not an architecture of `space` (naming the bad field and allowed values).
    """
    if not isinstance(arch, str):
        return space.validate(arch)
    text = arch.strip()
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise FileNotFoundError(f"Architecture file {str(path)!r} not found.")
        text = path.read_text().strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, Mapping):
        return space.validate(obj)
    return space.from_str(text)


def _check_out(out: Path, overwrite: bool, checkpoint: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"Output {str(out)!r} exists and is a file; choose a directory path.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"Output directory {str(out)!r} exists and is not empty; pass overwrite=True (--overwrite) "
            "or choose another directory."
        )
    o, c = out.resolve(), checkpoint.resolve()
    if o == c or o in c.parents:
        raise ValueError(f"Output directory {str(out)!r} would replace the checkpoint {str(checkpoint)!r}.")


def _check_objectives(objectives: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if objectives is None:
        return None
    if not isinstance(objectives, Mapping):
        raise ValueError(
            f"objectives must be a mapping of name -> value, but got {type(objectives).__name__}."
        )
    out = {str(k): v for k, v in objectives.items()}
    try:
        json.dumps(out)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"objectives must be JSON-serialisable ({exc}).") from None
    return out


def _load_data(ckpt: Any, data: Any) -> Any:
    from nas.train import DataSpec, load_dataset

    spec = data if data is not None else (ckpt.meta.get("spec") or {}).get("data")
    if spec is None:
        raise ValueError(
            f"Checkpoint {str(ckpt.path)!r} records no training data spec; pass data=DataSpec(...) "
            "for BatchNorm recalibration and accuracy."
        )
    ds = load_dataset(spec if isinstance(spec, DataSpec) else DataSpec.model_validate(spec))
    recorded = (ckpt.meta.get("data") or {}).get("sha256")
    if recorded and recorded != ds.sha256:
        raise ValueError(
            f"The data now at {ds.source.get('path') or ds.source.get('kind')!r} differs from the data "
            f"checkpoint {str(ckpt.path)!r} was trained on (sha256 {ds.sha256[:12]}... vs "
            f"{str(recorded)[:12]}...); pass the original data."
        )
    return ds


# ----- helpers -----------------------------------------------------------------------------------
def _make_parents(path: Path, created: list[Path]) -> None:
    """Create `path`'s missing parents, recording each in `created` (removed again on failure)."""
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir()
            created.append(parent)


def _state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for k, v in module.state_dict().items()
    }


@torch.no_grad()
def _torch_logits(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 256
) -> np.ndarray:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def _accuracy(logits: np.ndarray, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels.numpy()).mean())


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _versions() -> dict[str, str]:
    from nas.train._checkpoint import library_versions

    return library_versions(extra=("onnx", "onnxruntime"))


# ----- the export --------------------------------------------------------------------------------
def export_subnet(
    checkpoint_dir: str | Path,
    arch: Mapping[str, Any] | str,
    out_dir: str | Path,
    *,
    formats: str | Sequence[str] = ("torch", "onnx"),
    int8: bool = False,
    devices: Sequence[str] | None = None,
    objectives: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    measure: bool = True,
    protocol: lt.Protocol | None = None,
    data: Any | None = None,
    origin: Mapping[str, Any] | None = None,
    int8_max_drop_points: float = 1.0,
    parity_atol: float = PARITY_ATOL,
) -> ExportResult:
    """Export subnet `arch` of a supernet checkpoint as a standalone bundle in `out_dir`.

    Args:
        checkpoint_dir: A checkpoint step directory or a training run directory (newest checkpoint).
        arch: The architecture: a mapping, JSON text, the space's arch string, or ``@FILE``.
        out_dir: The bundle directory (created; written atomically).
        formats: Subset of `FORMATS` (``"torch,onnx"`` or a sequence); ``torch`` is always written.
        int8: Also write ``model.int8.onnx`` (needs ``onnx``), with accuracy and latency measured.
        devices: Devices to estimate latency for from their tables (default: every registered
            device; those without a table are skipped and listed in the manifest).
        objectives: The trial's objectives as searched (stored verbatim in the manifest).
        overwrite: Replace a non-empty `out_dir`.
        measure: Re-measure the exported files' latency on this machine (local-cpu settings).
        protocol: Timing protocol (default: the ``local-cpu`` device's).
        data: A `nas.train.DataSpec` replacing the checkpoint's (e.g. data that moved).
        origin: Where the subnet came from, e.g. ``{"job": ..., "trial": 12}`` (stored verbatim).
        int8_max_drop_points: Accuracy drop (percentage points) INT8 recipes are tried against.
        parity_atol: Largest allowed difference between any format's logits and the supernet's,
            times ``max(1, max |logit|)`` (float32 rounding grows with the logits).

    Raises:
        ValueError: an unknown format or device, int8 without onnx, a non-empty `out_dir` without
            `overwrite`, a bad checkpoint or data (search_spaces.InvalidArch for a bad arch).
        FileNotFoundError: no checkpoint (or arch file) there.
        ExportParityError: a format does not reproduce the supernet's outputs.
        Nothing is left behind when any of these is raised.
    """
    from nas.train import SubnetEvaluator, checkpoint_hash, load_model, to_input

    fmts = parse_formats(formats)
    if int8 and "onnx" not in fmts:
        raise ValueError(
            f"INT8 export quantises the ONNX model; add 'onnx' to formats (got {', '.join(fmts)})."
        )
    if "onnx" in fmts:
        require_onnxruntime()
    devs = check_devices(devices)
    objs = _check_objectives(objectives)
    if not parity_atol > 0:
        raise ValueError(f"`parity_atol > 0` must hold, but got {parity_atol=}.")
    out = Path(out_dir)
    ckpt_path = resolve_checkpoint(checkpoint_dir)
    _check_out(out, overwrite, ckpt_path)
    net, ckpt = load_model(ckpt_path)
    space = cast(SearchSpace, net.space)
    a = parse_arch(space, arch)
    arch_id = space.arch_id(a)
    ds = _load_data(ckpt, data)
    timing = protocol or lt.get_device("local-cpu").protocol or lt.Protocol()

    # BatchNorm recalibration + supernet-at-arch accuracy, exactly as the search evaluates a subnet.
    training = (ckpt.meta.get("spec") or {}).get("training") or {}
    calib_batches = int(training.get("bn_calib_batches", 4))
    evaluator = SubnetEvaluator(net, space, ds, calib_batches=calib_batches)
    supernet_acc = evaluator.evaluate(a)["accuracy"]  # leaves `a` active, eval mode
    sub = cast(nn.Module, cast(Any, net).extract(a)).eval()
    shape = space.input_shape(a)
    val_x = to_input(ds.val_x, shape)
    probe = val_x[:PROBE_BATCH]
    example = probe[:2]
    with torch.no_grad():
        ref = net(probe).numpy()
    logits = _torch_logits(sub, val_x)
    # float32 rounding grows with the logits' size, so the bound scales with it above 1.
    scale = max(1.0, float(np.abs(ref).max()))
    parity: dict[str, Any] = {
        "atol": parity_atol,
        "logit_scale": scale,
        "bound": parity_atol * scale,
        "probe_images": int(len(probe)),
        "torch_max_abs_diff": _max_diff(_torch_logits(sub, probe), ref),
    }
    accuracy: dict[str, Any] = {
        "split": "validation",
        "images": int(len(val_x)),
        "supernet": supernet_acc,
        "torch": _accuracy(logits, ds.val_y),
    }

    created: list[Path] = []
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        _make_parents(out, created)
        tmp.mkdir()
        save_file(_state_tensors(sub), str(tmp / MODEL_FILE), metadata={"format": BUNDLE_FORMAT})
        write_json(
            tmp / ARCH_FILE,
            {
                "format": BUNDLE_FORMAT,
                "space": space.name,
                "overrides": space.overrides,
                "arch": a,
                "arch_id": arch_id,
            },
        )
        sessions: dict[str, Any] = {}
        int8_info: dict[str, Any] | None = None
        if "torchscript" in fmts:
            export_torchscript(sub, example, tmp / TORCHSCRIPT_FILE)
            traced = load_torchscript(tmp / TORCHSCRIPT_FILE)
            parity["torchscript_max_abs_diff"] = _max_diff(_torch_logits(traced, probe), ref)
        if "onnx" in fmts:
            export_onnx(sub, example, tmp / ONNX_FILE)
            sessions["onnx"] = ort_session(tmp / ONNX_FILE)
            parity["onnx_max_abs_diff"] = _max_diff(ort_predict(sessions["onnx"], probe), ref)
            accuracy["onnx"] = _accuracy(ort_predict(sessions["onnx"], val_x), ds.val_y)
        bound = parity["bound"]
        bad = {k: v for k, v in parity.items() if k.endswith("_max_abs_diff") and not v <= bound}
        if bad:
            name, diff = next(iter(bad.items()))
            raise ExportParityError(
                f"Exported {name.removesuffix('_max_abs_diff')} model of {arch_id} differs from the "
                f"supernet-at-arch by {diff:.3g} (> {parity_atol:g} x logit scale {scale:.3g}); "
                "nothing was written."
            )
        if int8:
            ref_acc = float(accuracy["onnx"])
            calib = to_input(ds.calib_x, shape).numpy()

            def evaluate(path: Path) -> float:
                return _accuracy(ort_predict(ort_session(path), val_x), ds.val_y)

            res = quantize_int8(
                tmp / ONNX_FILE,
                tmp / INT8_FILE,
                calib,
                evaluate,
                ref_acc,
                max_drop_points=int8_max_drop_points,
            )
            sessions["int8"] = ort_session(tmp / INT8_FILE)
            drop = (ref_acc - res.accuracy) * 100.0
            accuracy["int8"] = res.accuracy
            int8_info = {
                "file": INT8_FILE,
                "method": "onnxruntime.quantization.quantize_static",
                "quant_format": "QDQ",
                "activations": "uint8 (per tensor)",
                "weights": "int8 (per output channel)",
                "recipe": res.recipe,
                "recipes_tried": res.tried,
                "calibration": {"split": "train", "images": res.calib_images},
                "accuracy": res.accuracy,
                "reference_accuracy": ref_acc,
                "accuracy_drop_points": drop,
                "max_drop_points": int8_max_drop_points,
                "within_target": drop <= int8_max_drop_points,
            }

        estimated, skipped = estimate_latency(space, a, devs)
        latency: dict[str, Any] = {"estimated_ms": estimated, "skipped_devices": skipped, "measured": None}
        if measure:
            x1 = probe[:1].contiguous()
            cpu = lt.get_device("local-cpu")
            calls: dict[str, Callable[[], Any]] = {"torch": lt.get_runtime(cpu).prepare(sub, (x1,), cpu)}
            feeds = {INPUT_NAME: x1.numpy()}
            for key, sess in sessions.items():
                calls[key] = functools.partial(sess.run, [OUTPUT_NAME], feeds)
            stats = measure_calls(calls, timing)
            stat = timing.statistic
            where = {"torch": "local-cpu", "onnx": "local-cpu-ort", "int8": "local-cpu-ort"}
            files = {"torch": MODEL_FILE, "onnx": ONNX_FILE, "int8": INT8_FILE}
            latency["measured"] = {
                "statistic": stat,
                "protocol": timing.to_dict(),
                "batch_size": 1,
                "results": {
                    k: {"device": where[k], "file": files[k], "ms": s[stat], **s} for k, s in stats.items()
                },
            }
            if "int8" in stats:
                ratio = stats["int8"][stat] / stats["onnx"][stat]
                latency["int8_vs_fp32_onnx_ratio"] = ratio
            if "int8" in stats and int8_info is not None:
                int8_info["latency_ms"] = stats["int8"][stat]
                int8_info["fp32_onnx_latency_ms"] = stats["onnx"][stat]
                int8_info["latency_ratio"] = latency["int8_vs_fp32_onnx_ratio"]
        ck_sha, ck_size = checkpoint_hash(ckpt_path)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "space": {"name": space.name, "overrides": space.overrides},
            "arch": a,
            "arch_id": arch_id,
            "origin": dict(origin) if origin is not None else {"kind": "checkpoint"},
            "objectives": objs,
            "formats": [*fmts, *(["int8"] if int8 else [])],
            "costs": dict(space.cost(a)),
            "input": {
                "name": INPUT_NAME,
                "output": OUTPUT_NAME,
                "shape": list(shape),
                "batch_axis": "dynamic",
                "dtype": "float32",
                "preprocess": "scale to [0, 1] (uint8 / 255), normalise per channel with mean/std, "
                "resize bilinearly to shape",
                "mean": list(ds.mean),
                "std": list(ds.std),
                "classes": list(ds.classes),
                "onnx_opset": OPSET,
            },
            "accuracy": accuracy,
            "parity": parity,
            "int8": int8_info,
            "latency": latency,
            "bn_recalibration": {"split": "train", "images": int(len(ds.calib_x)), "batches": calib_batches},
            "checkpoint": {
                "path": str(ckpt_path.resolve()),
                "sha256": ck_sha,
                "size": ck_size,
                "step": ckpt.step,
                "complete": ckpt.complete,
            },
            "data": {
                "sha256": ds.sha256,
                "kind": ds.source.get("kind"),
                "path": ds.source.get("path"),
                "train_images": int(len(ds.train_x)),
                "val_images": int(len(ds.val_x)),
            },
            "versions": _versions(),
            "files": {p.name: file_entry(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        write_json(tmp / MANIFEST_FILE, manifest)
        if out.exists():
            trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, trash)
            os.rename(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    return ExportResult(out, manifest)
