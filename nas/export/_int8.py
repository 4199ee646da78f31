"""INT8 export: ONNX Runtime static quantisation (QDQ) calibrated on training images.

Static quantisation needs activation ranges, measured by running the float model on a
calibration set of training images (never validation images, so the accuracy reported for the
INT8 model stays an honest held-out figure). Recipes are tried in order, cheapest first, until
one keeps the validation accuracy within `max_drop_points` of the float model; if none does, the
most accurate is kept and the manifest says the target was missed.

Recipes (activations uint8, weights int8 per output channel, ONNX Runtime's CPU recommendation):

* ``minmax``: MinMax calibration;
* ``minmax_reduce_range``: the same with 7-bit weights (avoids saturation on CPUs without VNNI);
* ``percentile``: 99.999th-percentile activation ranges (outliers clipped).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.export._onnx import INPUT_NAME, require_onnxruntime

__all__ = ["INT8_RECIPES", "Int8Result", "quantize_int8"]

INT8_RECIPES: tuple[str, ...] = ("minmax", "minmax_reduce_range", "percentile")


@dataclass(frozen=True)
class Int8Result:
    """The quantised model kept and how it was chosen.

    Attributes:
        recipe: The recipe of the kept model (see the module docstring).
        accuracy: Its validation accuracy (fraction).
        tried: ``{recipe: accuracy}`` for every recipe tried, in order.
        calib_images: Training images the activation ranges were measured on.
    """

    recipe: str
    accuracy: float
    tried: dict[str, float]
    calib_images: int


class _Reader:
    """A `CalibrationDataReader` over pre-shaped float32 batches (ONNX Runtime duck-types it)."""

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._batches = list(batches)
        self._it = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def _quantization() -> Any:
    require_onnxruntime()
    import onnxruntime.quantization as q  # noqa: PLC0415

    return q


def _quantize(src: Path, dst: Path, batches: Sequence[np.ndarray], recipe: str) -> None:
    q = _quantization()
    method = q.CalibrationMethod.Percentile if recipe == "percentile" else q.CalibrationMethod.MinMax
    extra: dict[str, Any] = {"CalibPercentile": 99.999} if recipe == "percentile" else {}
    q.quantize_static(
        str(src),
        str(dst),
        _Reader(batches),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        reduce_range=recipe == "minmax_reduce_range",
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=method,
        extra_options=extra,
    )


def quantize_int8(
    fp32_onnx: str | Path,
    out: str | Path,
    calib: np.ndarray,
    evaluate: Callable[[Path], float],
    reference_accuracy: float,
    *,
    max_drop_points: float = 1.0,
    batch_size: int = 32,
    recipes: Sequence[str] = INT8_RECIPES,
) -> Int8Result:
    """Quantise `fp32_onnx` into `out`, trying `recipes` until the accuracy drop is small enough.

    Args:
        calib: Calibration inputs (N, C, H, W), already shaped for the model (training images).
        evaluate: Validation accuracy (fraction) of an ONNX file.
        reference_accuracy: The float model's validation accuracy.
        max_drop_points: Stop at the first recipe whose drop (percentage points) is at most this.

    Raises:
        ValueError: an unknown recipe or an empty calibration set.
    """
    unknown = [r for r in recipes if r not in INT8_RECIPES]
    if unknown or not recipes:
        raise ValueError(f"Unknown INT8 recipe(s) {unknown!r}; allowed: {', '.join(INT8_RECIPES)}.")
    if len(calib) == 0:
        raise ValueError("INT8 calibration needs at least one training image, but got none.")
    src, dst = Path(fp32_onnx), Path(out)
    arr = np.ascontiguousarray(calib, dtype=np.float32)
    batches = [arr[i : i + batch_size] for i in range(0, len(arr), batch_size)]
    tried: dict[str, float] = {}
    best: tuple[float, str, bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="nas-int8-", dir=dst.parent) as tmp:
        # Pre-processing (shape inference + graph optimisation) as ONNX Runtime recommends.
        prep = Path(tmp) / "prep.onnx"
        try:
            _quantization().quant_pre_process(str(src), str(prep), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation; quantise the plain export instead
            prep = src
        for recipe in recipes:
            cand = Path(tmp) / f"{recipe}.onnx"
            _quantize(prep, cand, batches, recipe)
            acc = float(evaluate(cand))
            tried[recipe] = acc
            if best is None or acc > best[0]:
                best = (acc, recipe, cand.read_bytes())
            if (reference_accuracy - acc) * 100.0 <= max_drop_points:
                break
    assert best is not None  # recipes is non-empty
    dst.write_bytes(best[2])
    return Int8Result(best[1], best[0], tried, int(len(arr)))
