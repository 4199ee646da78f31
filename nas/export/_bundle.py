"""The export bundle on disk: file names, hashing, the manifest, verification and loading.

A bundle is a directory a user deploys::

    model.safetensors        the standalone subnet's state dict (always)
    arch.json                space name, overrides, arch, arch_id: enough to rebuild the module
    model.onnx               float32 ONNX, dynamic batch axis (format "onnx")
    model.torchscript.pt     traced TorchScript (format "torchscript"; never read by load_exported)
    model.int8.onnx          statically quantised ONNX (QDQ), with int8=True
    manifest.json            what the bundle is and how it measured, plus sha256 + size of every file

Every reader here checks the files against the manifest before using them, so a tampered or
truncated file is refused with an error naming it. Nothing is unpickled: tensors come from
safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from nas.train._checkpoint import sha256_file

__all__ = [
    "ARCH_FILE",
    "BUNDLE_FORMAT",
    "BundleError",
    "INT8_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "ONNX_FILE",
    "TORCHSCRIPT_FILE",
    "file_entry",
    "load_exported",
    "read_arch",
    "read_manifest",
    "sha256_file",
    "verify_bundle",
    "verified_path",
    "write_json",
]

BUNDLE_FORMAT = "hwnas.export-bundle/1"
MANIFEST_FILE = "manifest.json"
ARCH_FILE = "arch.json"
MODEL_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
INT8_FILE = "model.int8.onnx"


class BundleError(ValueError):
    """A bundle file is missing from the manifest, altered, truncated or malformed (the message
    names the file)."""


def file_entry(path: str | Path) -> dict[str, Any]:
    """``{"sha256": ..., "size": ...}`` of one file, as the manifest lists it."""
    p = Path(path)
    return {"sha256": sha256_file(p), "size": p.stat().st_size}


def write_json(path: str | Path, payload: Any) -> None:
    """Write `payload` as indented JSON and fsync it (the bundle is renamed into place afterwards)."""
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=False, allow_nan=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """The bundle's manifest, checked for format and a file list.

    Raises:
        FileNotFoundError: no bundle directory or no manifest.json in it.
        BundleError: manifest.json is not valid JSON or not a bundle manifest.
    """
    root = Path(bundle)
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise FileNotFoundError(f"No export bundle at {str(root)!r} (not a directory).")
    if not path.is_file():
        raise FileNotFoundError(
            f"{MANIFEST_FILE} is missing from the export bundle {str(root)!r}; re-export the subnet."
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(
            f"{MANIFEST_FILE} of the export bundle {str(root)!r} is not valid JSON ({exc}); "
            "it is corrupt: re-export the subnet."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(
            f"{MANIFEST_FILE} of {str(root)!r} has format {found!r}; expected {BUNDLE_FORMAT!r}."
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
        for v in files.values()
    ):
        raise BundleError(
            f"{MANIFEST_FILE} of {str(root)!r} has no valid 'files' list (name -> sha256, size); "
            "it is corrupt: re-export the subnet."
        )
    return manifest


def _check_file(root: Path, name: str, entry: Mapping[str, Any]) -> Path:
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} is listed in {MANIFEST_FILE} but missing from the export bundle {str(root)!r}."
        )
    size = path.stat().st_size
    if size != entry["size"]:
        what = "truncated" if size < entry["size"] else "altered"
        raise BundleError(
            f"{name} in {str(root)!r} is {what}: {size} bytes, but {MANIFEST_FILE} records "
            f"{entry['size']}; re-export the subnet."
        )
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise BundleError(
            f"{name} in {str(root)!r} was altered: its sha256 {digest[:16]}... does not match "
            f"{MANIFEST_FILE} ({str(entry['sha256'])[:16]}...); re-export the subnet."
        )
    return path


def verify_bundle(bundle: str | Path, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Check bundle files (all listed ones, or just `names`) against the manifest's sha256 and size.

    Returns:
        The manifest.

    Raises:
        FileNotFoundError: the manifest or a listed file is missing.
        BundleError: a file is altered or truncated, or `names` holds a file the manifest does not
            list (naming it).
    """
    root = Path(bundle)
    manifest = read_manifest(root)
    files: dict[str, Any] = manifest["files"]
    wanted = list(files) if names is None else list(names)
    for name in wanted:
        if name not in files:
            raise BundleError(
                f"{name} is not listed in {MANIFEST_FILE} of {str(root)!r} (listed: "
                f"{', '.join(sorted(files)) or 'none'}); export with the format that writes it."
            )
        _check_file(root, name, files[name])
    return manifest


def verified_path(bundle: str | Path, name: str) -> Path:
    """The path of bundle file `name`, after checking it against the manifest (see `verify_bundle`)."""
    verify_bundle(bundle, [name])
    return Path(bundle) / name


def read_arch(bundle: str | Path, verify: bool = True) -> dict[str, Any]:
    """``arch.json``: ``{"space", "overrides", "arch", "arch_id"}`` (verified against the manifest)."""
    root = Path(bundle)
    if verify:
        verify_bundle(root, [ARCH_FILE])
    try:
        info = json.loads((root / ARCH_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{ARCH_FILE} of {str(root)!r} cannot be read as JSON ({exc}).") from None
    missing = [k for k in ("space", "overrides", "arch") if not isinstance(info, dict) or k not in info]
    if missing:
        raise BundleError(f"{ARCH_FILE} of {str(root)!r} lacks {', '.join(missing)}; re-export the subnet.")
    return cast(dict[str, Any], info)


def load_exported(bundle: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild an exported subnet as a torch module (eval mode) from its bundle, without pickle.

    The space is rebuilt from ``arch.json`` (name + overrides), the standalone subnet extracted
    from a freshly built supernet (the global RNG is left untouched), and its weights replaced by
    ``model.safetensors``. The manifest, ``arch.json`` and ``model.safetensors`` are checked
    against the manifest's hashes first.

    Raises:
        FileNotFoundError: the bundle, its manifest or a needed file is missing.
        BundleError: a file is altered, truncated or malformed (the message names it).
    """
    from safetensors.torch import load_file

    import search_spaces as ss

    root = Path(bundle)
    verify_bundle(root, [ARCH_FILE, MODEL_FILE])
    info = read_arch(root, verify=False)
    space = ss.get_space(str(info["space"]), **dict(info["overrides"]))
    arch = space.validate(info["arch"])
    with torch.random.fork_rng(devices=[]):
        net = cast(nn.Module, space.build_supernet().extract(arch))
    try:
        state = load_file(str(root / MODEL_FILE))
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise BundleError(f"{MODEL_FILE} of {str(root)!r} cannot be read: {exc}.") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise BundleError(
            f"{MODEL_FILE} of {str(root)!r} does not fit the architecture in {ARCH_FILE} ({first})."
        ) from None
    return net.to(device).eval()
