"""Every space: the exported torch module and ONNX file reproduce the supernet-at-arch, and a
reloaded bundle gives identical outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import search_spaces as ss
from nas.export import ONNX_FILE, export_subnet, load_exported, ort_predict, ort_session, verified_path
from nas.train import DataSpec, SubnetEvaluator, load_dataset, load_model, to_input

ATOL = 1e-4
ARCHS_PER_SPACE = 5
CASES = [(name, seed) for name in ss.list_spaces() for seed in range(ARCHS_PER_SPACE)]


def _supernet_at_arch(ckpt: Path, arch: dict) -> tuple[torch.nn.Module, torch.Tensor, np.ndarray]:
    """The checkpoint's supernet with BN recalibrated for `arch` (as the search evaluates it), a
    probe batch of validation images and the supernet's logits on it."""
    net, c = load_model(ckpt)
    data = load_dataset(DataSpec.model_validate(c.meta["spec"]["data"]))
    SubnetEvaluator(
        net, net.space, data, calib_batches=c.meta["spec"]["training"]["bn_calib_batches"]
    ).evaluate(arch)
    x = to_input(data.val_x, net.space.input_shape(arch))[:16]
    with torch.no_grad():
        ref = net(x).numpy()
    return net, x, ref


@pytest.mark.parametrize(("name", "seed"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_exported_formats_match_supernet_at_arch(
    name: str,
    seed: int,
    random_checkpoint: Callable[[str], Path],
    space_overrides: dict[str, dict],
    tmp_path: Path,
) -> None:
    ckpt = random_checkpoint(name)
    space = ss.get_space(name, **space_overrides[name])
    arch = space.sample(seed=1000 + seed)
    result = export_subnet(ckpt, arch, tmp_path / "bundle", measure=False)
    assert sorted(result.files) == ["arch.json", "model.onnx", "model.safetensors"]
    assert result.arch_id == space.arch_id(arch) and result.manifest["costs"] == space.cost(arch)

    net, x, ref = _supernet_at_arch(ckpt, arch)
    with torch.no_grad():
        extracted = net.extract(arch).eval()(x).numpy()
    assert np.abs(extracted - ref).max() <= ATOL

    # ONNX Runtime: float32 rounding grows with the logits, so 1e-4 is relative above |logit| 1.
    scale = max(1.0, float(np.abs(ref).max()))
    onnx_out = ort_predict(ort_session(verified_path(result.path, ONNX_FILE)), x)
    assert onnx_out.shape == ref.shape  # dynamic batch axis: exported with 2 images, run with 16
    assert np.abs(onnx_out - ref).max() <= ATOL * scale

    model = load_exported(result.path)
    with torch.no_grad():
        reloaded = model(x).numpy()
    np.testing.assert_array_equal(reloaded, extracted)
    assert result.manifest["accuracy"]["torch"] == result.manifest["accuracy"]["supernet"]
    assert result.manifest["accuracy"]["onnx"] == result.manifest["accuracy"]["torch"]


def test_nb201_exports_from_its_arch_string(
    random_checkpoint: Callable[[str], Path], space_overrides: dict[str, dict], tmp_path: Path
) -> None:
    space = ss.get_space("nb201", **space_overrides["nb201"])
    arch = space.sample(seed=7)
    text = space.arch_str(arch)
    assert text.startswith("|")  # NAS-Bench-201's own string, not JSON
    result = export_subnet(random_checkpoint("nb201"), text, tmp_path / "b", formats="torch", measure=False)
    assert result.manifest["arch"] == space.validate(arch) and result.files == [
        "arch.json",
        "model.safetensors",
    ]
