"""Data for supernet training: whole data sets as in-memory tensors, a seeded split, BN calibration.

The data sets this project trains on in minutes are small (scikit-learn's digits: 1,797 images of
8x8), so everything is held as one normalised float tensor; batches are index slices, which is
far cheaper than a DataLoader with worker processes. Images keep their native size; `to_input`
resizes a batch (bilinear) and adapts channels to what a subnet expects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nas.train._spec import DataSpec

__all__ = ["Dataset", "load_dataset", "shift_augment", "to_input"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")


@dataclass(frozen=True)
class Dataset:
    """A split, normalised data set.

    Attributes:
        train_x, val_x, calib_x: float32 (N, C, H, W), normalised per channel with the training
            split's mean and std.
        train_y, val_y: int64 class indices.
        classes: Class names, index-aligned with the labels.
        mean, std: Per-channel normalisation (apply the same to new images).
        sha256: Content hash of the raw images and labels (before splitting).
        source: Where the data came from (kind, path, sizes) for the checkpoint's metadata.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    calib_x: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sha256: str
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    def describe(self) -> dict[str, Any]:
        """JSON metadata stored in checkpoints."""
        return {
            **self.source,
            "sha256": self.sha256,
            "n_train": int(self.train_x.shape[0]),
            "n_val": int(self.val_x.shape[0]),
            "n_calib": int(self.calib_x.shape[0]),
            "image_shape": list(self.train_x.shape[1:]),
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
        }


def _hash_arrays(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _load_digits() -> tuple[np.ndarray, np.ndarray, tuple[str, ...], float]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None]  # (N, 1, 8, 8), values 0..16
    return x, d.target.astype(np.int64), tuple(str(c) for c in d.target_names), 16.0


def _to_nchw(x: np.ndarray, source: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise ValueError(
            f"{source}: X must have 3 (N,H,W) or 4 (N,H,W,C / N,C,H,W) dimensions, but has shape {x.shape}."
        )
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return np.transpose(x, (0, 3, 1, 2))
    return x


def _labels(y_raw: np.ndarray, source: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if y_raw.ndim != 1:
        raise ValueError(f"{source}: y must be 1-D (one label per image), but has shape {y_raw.shape}.")
    classes, y = np.unique(y_raw, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{source}: needs at least 2 classes, but y holds {len(classes)}.")
    return y.astype(np.int64), tuple(str(c) for c in classes)


def _scale(x: np.ndarray) -> float:
    return 255.0 if x.dtype == np.uint8 else 1.0


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], float]:
    if not path.is_file():
        raise FileNotFoundError(f"npz data file {str(path)!r} not found.")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            if "X" not in keys or "y" not in keys:
                raise ValueError(
                    f"npz data file {str(path)!r} must hold arrays 'X' and 'y'; "
                    f"found: {', '.join(keys) or 'none'}."
                )
            x, y_raw = f["X"], f["y"]
    except (OSError, EOFError) as exc:
        raise ValueError(f"npz data file {str(path)!r} cannot be read: {exc}.") from None
    if len(x) != len(y_raw):
        raise ValueError(f"npz data file {str(path)!r}: X has {len(x)} images but y has {len(y_raw)} labels.")
    x = _to_nchw(x, str(path))
    y, classes = _labels(y_raw, str(path))
    return x, y, classes, _scale(x)


def _load_imagefolder(path: Path, size: int | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], float]:
    from PIL import Image

    if not path.is_dir():
        raise FileNotFoundError(f"imagefolder {str(path)!r} not found (expected one sub-folder per class).")
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise ValueError(
            f"imagefolder {str(path)!r} needs at least 2 class sub-folders, found {len(class_dirs)}."
        )
    files = [
        (f, k)
        for k, d in enumerate(class_dirs)
        for f in sorted(d.rglob("*"))
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise ValueError(f"imagefolder {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    images = [Image.open(f) for f, _ in files]
    mode = "L" if all(im.mode in ("L", "1", "I;16", "I") for im in images) else "RGB"
    arrays, shape0 = [], None
    for raw, (f, _) in zip(images, files, strict=True):
        im = raw.convert(mode)
        if size is not None:
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        if shape0 is None:
            shape0 = a.shape
        elif a.shape != shape0:
            raise ValueError(
                f"imagefolder {str(path)!r}: {f.name} is {a.shape[1]}x{a.shape[0]} but the first image is "
                f"{shape0[1]}x{shape0[0]}; set data.image_size to resize all images."
            )
        arrays.append(a)
    x = _to_nchw(np.stack(arrays), str(path))
    y = np.array([k for _, k in files], dtype=np.int64)
    return x, y, tuple(d.name for d in class_dirs), 255.0


def _split(y: np.ndarray, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y)
    n_val = int(round(spec.val_fraction * len(y)))
    stratify = y if counts[counts > 0].min() >= 2 and len(counts) <= n_val <= len(y) - len(counts) else None
    if n_val < 1 or n_val >= len(y):
        raise ValueError(f"data.val_fraction={spec.val_fraction} leaves an empty split of {len(y)} images.")
    tr, va = train_test_split(idx, test_size=n_val, random_state=spec.seed, stratify=stratify)
    return np.sort(tr), np.sort(va)


def load_dataset(spec: DataSpec) -> Dataset:
    """Load, hash, subsample (``max_samples``), split (seeded, stratified) and normalise a data set.

    Raises:
        FileNotFoundError: `spec.path` does not exist.
        ValueError: unreadable or malformed data, naming the file and what is wrong.
    """
    if spec.kind == "digits":
        x, y, classes, scale = _load_digits()
        src: dict[str, Any] = {"kind": "digits", "path": None}
    elif spec.kind == "npz":
        x, y, classes, scale = _load_npz(Path(str(spec.path)))
        src = {"kind": "npz", "path": str(Path(str(spec.path)).resolve())}
    else:
        x, y, classes, scale = _load_imagefolder(Path(str(spec.path)), spec.image_size)
        src = {"kind": "imagefolder", "path": str(Path(str(spec.path)).resolve())}
    digest = _hash_arrays(x, y)
    if spec.max_samples is not None and spec.max_samples < len(y):
        keep = np.sort(np.random.default_rng(spec.seed).permutation(len(y))[: spec.max_samples])
        x, y = x[keep], y[keep]
    tr, va = _split(y, spec)
    xf = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) / scale
    mean = xf[torch.from_numpy(tr)].mean(dim=(0, 2, 3))
    std = xf[torch.from_numpy(tr)].std(dim=(0, 2, 3)).clamp_min(1e-6)
    xf = (xf - mean[None, :, None, None]) / std[None, :, None, None]
    yt = torch.from_numpy(y)
    train_x, train_y = xf[torch.from_numpy(tr)].contiguous(), yt[torch.from_numpy(tr)].contiguous()
    rng = np.random.default_rng(spec.seed + 1)
    calib = np.sort(rng.permutation(len(tr))[: min(spec.calib_size, len(tr))])
    return Dataset(
        train_x=train_x,
        train_y=train_y,
        val_x=xf[torch.from_numpy(va)].contiguous(),
        val_y=yt[torch.from_numpy(va)].contiguous(),
        calib_x=train_x[torch.from_numpy(calib)].contiguous(),
        classes=classes,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        sha256=digest,
        source={**src, "max_samples": spec.max_samples, "val_fraction": spec.val_fraction, "seed": spec.seed},
    )


def to_input(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Adapt a batch to a subnet's (C, H, W): repeat a single channel, resize bilinearly.

    Raises:
        ValueError: the channel counts cannot be reconciled (e.g. 3-channel data, 1-channel net).
    """
    c, h, w = shape
    if x.shape[1] != c:
        if x.shape[1] != 1:
            raise ValueError(
                f"The data has {x.shape[1]} channels but the network expects {c}; set the space "
                f"override in_channels: {x.shape[1]}."
            )
        x = x.expand(-1, c, -1, -1)
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.contiguous()


def shift_augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Shift each image by up to `max_shift` pixels in each direction (border pixels replicated)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offs = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    out = torch.empty_like(x)
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            sel = ((offs[:, 0] == dy) & (offs[:, 1] == dx)).nonzero().flatten()
            if len(sel):
                out[sel] = padded[sel, :, dy : dy + h, dx : dx + w]
    return out
