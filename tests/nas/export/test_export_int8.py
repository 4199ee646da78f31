"""INT8 export of a digits-trained mbv3_tiny subnet: accuracy drop <= 1 point, latency change in
the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import latency_tables as lt
import search_spaces as ss
from nas.export import INT8_FILE, export_subnet, load_exported, ort_predict, ort_session, verified_path
from nas.train import DataSpec, load_dataset, parse_spec, to_input, train

OVERRIDES = {"in_channels": 1, "resolutions": [12]}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mbv3_tiny on all 1,797 digits (359 validation images: one image is 0.28 points), 2 epochs."""
    out = tmp_path_factory.mktemp("digits") / "run"
    spec = parse_spec(
        {
            "name": "int8",
            "space": {"name": "mbv3_tiny", "overrides": OVERRIDES},
            "data": {"kind": "digits", "calib_size": 128},
            "training": {"epochs": 2, "batch_size": 64, "sandwich_n": 0, "warmup_epochs": 0},
            "workers": 1,
            "output": str(out),
            "seed": 0,
            "register_checkpoint": False,
        }
    )
    return train(spec).run_dir


@pytest.mark.slow
@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_int8_keeps_accuracy_within_one_point(trained_run: Path, tmp_path: Path, which: str) -> None:
    space = ss.get_space("mbv3_tiny", **OVERRIDES)
    arch = getattr(space, which)()
    result = export_subnet(trained_run, arch, tmp_path / "b", int8=True, protocol=lt.QUICK_PROTOCOL)
    m = result.manifest
    acc = m["accuracy"]
    assert acc["onnx"] > 0.6  # trained, not chance
    assert m["int8"]["accuracy_drop_points"] <= 1.0 and m["int8"]["within_target"]
    assert m["int8"]["accuracy_drop_points"] == pytest.approx((acc["onnx"] - acc["int8"]) * 100)
    ratio = m["latency"]["int8_vs_fp32_onnx_ratio"]
    assert ratio > 0 and m["int8"]["latency_ratio"] == ratio
    assert m["int8"]["calibration"]["split"] == "train"

    # Recompute the INT8 accuracy from the bundle file itself.
    data = load_dataset(DataSpec(kind="digits"))
    x = to_input(data.val_x, space.input_shape(arch))
    logits = ort_predict(ort_session(verified_path(result.path, INT8_FILE)), x)
    assert float((logits.argmax(1) == data.val_y.numpy()).mean()) == acc["int8"]
    with torch.no_grad():
        torch_acc = float((load_exported(result.path)(x).argmax(1) == data.val_y).float().mean())
    assert torch_acc == pytest.approx(acc["torch"])
