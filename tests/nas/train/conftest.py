"""Tiny specs and data for fast supernet-training tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nas.train import TrainSpec, parse_spec


def tiny_spec_dict(out: Path, **training: Any) -> dict[str, Any]:
    """mbv3_tiny at 8 px on 200 digits: a step takes tens of milliseconds."""
    return {
        "name": "tiny",
        "space": {"name": "mbv3_tiny", "overrides": {"in_channels": 1, "resolutions": [8, 12]}},
        "data": {"kind": "digits", "max_samples": 200, "calib_size": 32},
        "training": {"epochs": 2, "batch_size": 16, "sandwich_n": 1, "warmup_epochs": 0, **training},
        "workers": 1,
        "output": str(out),
        "seed": 0,
        "register_checkpoint": False,
    }


@pytest.fixture
def tiny_dict() -> Callable[..., dict[str, Any]]:
    """`tiny_spec_dict`: ``tiny_dict(out_dir, **training_overrides)``."""
    return tiny_spec_dict


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Callable[..., TrainSpec]:
    def make(out: Path | None = None, **training: Any) -> TrainSpec:
        return parse_spec(tiny_spec_dict(out or tmp_path / "run", **training))

    return make


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    """A separable 3-class problem of 6x6 single-channel images (uint8, N,H,W)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = rng.integers(0, 60, size=(90, 6, 6)).astype(np.uint8)
    for k in range(3):
        x[y == k, k * 2 : k * 2 + 2, :] += 150
    path = tmp_path / "toy.npz"
    np.savez(path, X=x, y=y)
    return path
