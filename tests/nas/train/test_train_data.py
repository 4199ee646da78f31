"""Data: digits split and normalisation, npz and imagefolder readers, input adaptation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nas.train import DataSpec, load_dataset, shift_augment, to_input


def test_digits_split_is_seeded_stratified_and_normalised() -> None:
    d = load_dataset(DataSpec(kind="digits", val_fraction=0.2, seed=0, calib_size=100))
    assert d.train_x.shape[1:] == (1, 8, 8) and len(d.train_y) + len(d.val_y) == 1797
    assert len(d.val_y) == 359 and d.calib_x.shape == (100, 1, 8, 8) and d.num_classes == 10
    assert abs(float(d.train_x.mean())) < 1e-4 and abs(float(d.train_x.std()) - 1) < 1e-2
    counts = np.bincount(d.val_y.numpy())
    assert counts.min() >= 35 and counts.max() <= 37  # stratified
    again = load_dataset(DataSpec(kind="digits", seed=0, calib_size=100))
    assert torch.equal(again.val_y, d.val_y) and again.sha256 == d.sha256
    other = load_dataset(DataSpec(kind="digits", seed=1))
    assert not torch.equal(other.val_y, d.val_y) and other.sha256 == d.sha256


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_npz_layouts(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 6, 6, 3), dtype=np.uint8)
    arr = {"nhw": x[..., 0], "nhwc": x, "nchw": x.transpose(0, 3, 1, 2)}[layout]
    y = np.array(["cat", "dog"] * 20)
    np.savez(tmp_path / "d.npz", X=arr, y=y)
    d = load_dataset(DataSpec(kind="npz", path=str(tmp_path / "d.npz"), val_fraction=0.25))
    assert d.train_x.shape[1:] == ((1, 6, 6) if layout == "nhw" else (3, 6, 6))
    assert d.classes == ("cat", "dog") and len(d.val_y) == 10


def test_npz_errors_name_the_problem(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", images=np.zeros((4, 2, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match="'X' and 'y'; found: images, y"):
        load_dataset(DataSpec(kind="npz", path=str(tmp_path / "bad.npz")))
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_dataset(DataSpec(kind="npz", path=str(tmp_path / "nope.npz")))


def test_imagefolder(tmp_path: Path) -> None:
    from PIL import Image

    for k, cls in enumerate(("a", "b")):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.fromarray(np.full((5, 5), 40 * k + i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_dataset(DataSpec(kind="imagefolder", path=str(tmp_path), val_fraction=0.34))
    assert d.classes == ("a", "b") and d.train_x.shape[1:] == (1, 5, 5) and len(d.val_y) == 4
    Image.fromarray(np.zeros((7, 7), dtype=np.uint8)).save(tmp_path / "a" / "odd.png")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset(DataSpec(kind="imagefolder", path=str(tmp_path)))
    d2 = load_dataset(DataSpec(kind="imagefolder", path=str(tmp_path), image_size=4))
    assert d2.train_x.shape[1:] == (1, 4, 4)


def test_to_input_resizes_and_repeats_channels() -> None:
    x = torch.randn(3, 1, 8, 8)
    y = to_input(x, (3, 16, 16))
    assert y.shape == (3, 3, 16, 16) and torch.equal(y[:, 0], y[:, 2])
    assert to_input(x, (1, 8, 8)) is not None and torch.equal(to_input(x, (1, 8, 8)), x)
    with pytest.raises(ValueError, match="in_channels: 3"):
        to_input(torch.randn(2, 3, 8, 8), (1, 8, 8))


def test_shift_augment_is_seeded_and_moves_by_at_most_one_pixel() -> None:
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 4, 4] = 1.0
    a = shift_augment(x, torch.Generator().manual_seed(0))
    b = shift_augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    pos = a[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 8, pos % 8
    assert set(rows.tolist()) <= {3, 4, 5} and set(cols.tolist()) <= {3, 4, 5} and len(set(pos.tolist())) > 3
