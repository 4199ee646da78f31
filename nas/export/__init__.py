"""Export: a chosen subnet as a standalone, verifiable bundle (PyTorch safetensors, ONNX, optional
TorchScript and INT8 ONNX) whose outputs match the supernet-at-arch, with a manifest of hashes,
costs, accuracy and latency.

>>> from nas.export import export_subnet, load_exported
>>> result = export_subnet("runs/mbv3_tiny_digits", space.largest(), "bundle", int8=True)
>>> model = load_exported("bundle")        # verified against the manifest; no pickle
"""

from __future__ import annotations

from nas.export._bundle import (
    ARCH_FILE,
    BUNDLE_FORMAT,
    INT8_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    ONNX_FILE,
    TORCHSCRIPT_FILE,
    BundleError,
    load_exported,
    read_arch,
    read_manifest,
    verified_path,
    verify_bundle,
)
from nas.export._export import (
    FORMATS,
    ExportParityError,
    ExportResult,
    export_subnet,
    parse_arch,
    parse_formats,
    resolve_checkpoint,
)
from nas.export._int8 import INT8_RECIPES, Int8Result, quantize_int8
from nas.export._onnx import INPUT_NAME, OUTPUT_NAME, export_onnx, ort_predict, ort_session

__all__ = [
    "ARCH_FILE",
    "BUNDLE_FORMAT",
    "FORMATS",
    "INPUT_NAME",
    "INT8_FILE",
    "INT8_RECIPES",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "ONNX_FILE",
    "OUTPUT_NAME",
    "TORCHSCRIPT_FILE",
    "BundleError",
    "ExportParityError",
    "ExportResult",
    "Int8Result",
    "export_onnx",
    "export_subnet",
    "load_exported",
    "ort_predict",
    "ort_session",
    "parse_arch",
    "parse_formats",
    "quantize_int8",
    "read_arch",
    "read_manifest",
    "resolve_checkpoint",
    "verified_path",
    "verify_bundle",
]
