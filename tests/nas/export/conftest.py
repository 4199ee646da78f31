"""Randomly initialised supernet checkpoints (every space, small inputs) for export tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import search_spaces as ss
from nas.train import load_dataset, parse_spec, save_checkpoint

# Small inputs and few classes, so a supernet builds, exports and runs in well under a second;
# the OFA presets at 32 px keep their full layer layout (5 stages, 960/1280 or 1152/1536 heads).
SPACES: dict[str, dict[str, Any]] = {
    "mbv3_tiny": {"in_channels": 1, "resolutions": [8, 12]},
    "ofa_mbv3_w10": {"in_channels": 1, "num_classes": 10, "resolutions": [32, 40]},
    "ofa_mbv3_w12": {"in_channels": 1, "num_classes": 10, "resolutions": [32]},
    "vit_tiny": {"in_channels": 1, "resolution": 8, "patch_size": 4},
    "nb201": {"in_channels": 1, "resolution": 8, "C": 8, "N": 1},
}


def spec_dict(
    name: str, overrides: dict[str, Any], out: Path, max_samples: int | None = 200
) -> dict[str, Any]:
    return {
        "name": f"export-{name}",
        "space": {"name": name, "overrides": overrides},
        "data": {"kind": "digits", "max_samples": max_samples, "calib_size": 32},
        "training": {"epochs": 1, "batch_size": 16, "bn_calib_batches": 2},
        "workers": 1,
        "output": str(out),
        "seed": 0,
        "register_checkpoint": False,
    }


def write_random_checkpoint(root: Path, name: str, overrides: dict[str, Any], seed: int = 0) -> Path:
    """A complete-looking checkpoint of a randomly initialised supernet (no training)."""
    spec = parse_spec(spec_dict(name, overrides, root))
    space = ss.get_space(name, **overrides)
    torch.manual_seed(seed)
    net = space.build_supernet()
    data = load_dataset(spec.data)
    meta = {
        "space": space.spec(),
        "spec": spec.model_dump(mode="json"),
        "data": data.describe(),
        "progress": {"step": 1, "epoch": 1, "complete": True},
    }
    return save_checkpoint(root / "checkpoints", 1, net, None, meta)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def space_overrides() -> dict[str, dict[str, Any]]:
    """Small-input overrides per space (`SPACES`)."""
    return SPACES


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``random_checkpoint(space_name)``: one checkpoint per space, shared by the session."""
    cache: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in cache:
            root = tmp_path_factory.mktemp(f"ckpt-{name}")
            cache[name] = write_random_checkpoint(root, name, SPACES.get(name, {}))
        return cache[name]

    return make
