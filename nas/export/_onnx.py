"""ONNX export and ONNX Runtime sessions for exported subnets.

The TorchScript-based exporter (``dynamo=False``, opset 17) is used, as in
`latency_tables.OrtRuntime`: it needs no extra packages and every space's ops map to plain ONNX
operators. The batch axis is dynamic, so one file serves any batch size.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "export_onnx",
    "export_torchscript",
    "load_torchscript",
    "ort_predict",
    "ort_session",
    "require_onnxruntime",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def require_onnxruntime() -> Any:
    """The onnxruntime module, or an ImportError with the install hint."""
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError:
        raise ImportError("ONNX export checks need ONNX Runtime: `pip install onnx onnxruntime`.") from None
    return onnxruntime


def export_onnx(module: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Write `module` (eval mode) as ONNX with input ``input`` and output ``logits``, batch axis dynamic."""
    p = Path(path)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(p),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return p


def export_torchscript(module: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Trace `module` (eval mode) and save it as TorchScript (optional format; not read back here)."""
    p = Path(path)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), (example,), check_trace=False)
        traced.save(str(p))  # type: ignore[no-untyped-call]
    return p


def load_torchscript(path: str | Path) -> Any:
    """Load a TorchScript file (only to check the traced module's outputs right after tracing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path))


def ort_session(path: str | Path | bytes, threads: int = 1) -> Any:
    """A CPU ONNX Runtime session with `threads` intra-op threads, sequential, all optimisations
    (the settings `latency_tables.OrtRuntime` times with)."""
    ort = require_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def ort_predict(session: Any, x: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run `session` on `x` in batches; returns the stacked outputs (float32)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    outs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: arr[i : i + batch_size]})[0]
        for i in range(0, len(arr), batch_size)
    ]
    return np.concatenate(outs, axis=0)
