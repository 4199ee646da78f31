"""The bundle: manifest contents, refusal of tampered or truncated files, no pickle, and input
errors that name the bad value and leave nothing behind."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import latency_tables as lt
import nas
import search_spaces as ss
from nas.export import (
    BUNDLE_FORMAT,
    BundleError,
    ExportParityError,
    export_subnet,
    load_exported,
    read_manifest,
    resolve_checkpoint,
    verified_path,
    verify_bundle,
)
from nas.export import _export as export_impl
from nas.export._bundle import sha256_file
from nas.train import checkpoint_hash

SPACE = "mbv3_tiny"
OBJECTIVES = {"accuracy": 0.5, "latency_ms": 1.25}
ALL_FILES = ["arch.json", "model.int8.onnx", "model.onnx", "model.safetensors", "model.torchscript.pt"]


@pytest.fixture(scope="module")
def space(space_overrides: dict[str, dict]) -> ss.SearchSpace:
    return ss.get_space(SPACE, **space_overrides[SPACE])


@pytest.fixture(scope="module")
def ckpt(random_checkpoint: Callable[[str], Path]) -> Path:
    return random_checkpoint(SPACE)


@pytest.fixture(scope="module")
def bundle(ckpt: Path, space: ss.SearchSpace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every format, INT8, objectives and a quick latency measurement."""
    out = tmp_path_factory.mktemp("bundle") / "b"
    export_subnet(
        ckpt,
        space.sample(seed=3),
        out,
        formats="torch,onnx,torchscript",
        int8=True,
        objectives=OBJECTIVES,
        origin={"job": "job-1", "trial": 4},
        protocol=lt.QUICK_PROTOCOL,
    )
    return out


@pytest.fixture
def copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def test_manifest_records_what_the_issue_asks_for(bundle: Path, ckpt: Path, space: ss.SearchSpace) -> None:
    m = read_manifest(bundle)
    arch = space.sample(seed=3)
    assert m["format"] == BUNDLE_FORMAT and m["arch_id"] == space.arch_id(arch) and m["arch"] == arch
    assert m["space"] == {"name": SPACE, "overrides": space.overrides}
    assert m["objectives"] == OBJECTIVES and m["origin"] == {"job": "job-1", "trial": 4}
    assert m["costs"] == space.cost(arch)
    assert m["formats"] == ["torch", "onnx", "torchscript", "int8"]
    assert sorted(m["files"]) == ALL_FILES
    for name, entry in m["files"].items():
        assert entry == {"sha256": sha256_file(bundle / name), "size": (bundle / name).stat().st_size}
    assert (m["checkpoint"]["sha256"], m["checkpoint"]["size"]) == checkpoint_hash(ckpt)
    assert m["data"]["sha256"] and m["data"]["val_images"] == m["accuracy"]["images"]
    assert {"torch", "onnx", "safetensors", "onnxruntime"} <= set(m["versions"])
    acc = m["accuracy"]
    assert acc["supernet"] == acc["torch"] == acc["onnx"] and 0 <= acc["int8"] <= 1
    assert m["int8"]["quant_format"] == "QDQ" and m["int8"]["recipe"] in m["int8"]["recipes_tried"]
    assert m["int8"]["accuracy_drop_points"] == pytest.approx((acc["onnx"] - acc["int8"]) * 100)
    lat = m["latency"]
    # Devices without a table (or whose table lacks this subnet's ops) are skipped with a reason.
    assert set(lat["estimated_ms"]) | set(lat["skipped_devices"]) == set(lt.list_devices())
    assert lat["skipped_devices"]["note10"] == "no latency table"
    results = lat["measured"]["results"]
    assert set(results) == {"torch", "onnx", "int8"} and all(r["ms"] > 0 for r in results.values())
    assert lat["int8_vs_fp32_onnx_ratio"] == pytest.approx(results["int8"]["ms"] / results["onnx"]["ms"])
    assert m["int8"]["latency_ratio"] == lat["int8_vs_fp32_onnx_ratio"]
    assert m["input"]["shape"] == list(space.input_shape(arch)) and m["input"]["batch_axis"] == "dynamic"
    assert max(m["parity"][k] for k in m["parity"] if k.endswith("_max_abs_diff")) <= m["parity"]["bound"]


def test_table_estimates_when_the_table_covers_the_subnet(tmp_path: Path) -> None:
    from nas.export._latency import estimate_latency

    space = ss.get_space("mbv3_tiny")  # the shipped local-cpu table covers the preset
    arch = space.sample(seed=0)
    estimated, skipped = estimate_latency(space, arch, ["local-cpu", "note10"])
    assert estimated["local-cpu"]["ms"] == pytest.approx(
        lt.estimate(lt.find_table("local-cpu", SPACE), space, arch)
    )
    assert skipped == {"note10": "no latency table"}


def test_load_exported_needs_no_pickle(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unpickling attempted")

    for mod, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(mod, name, refuse)
    assert isinstance(nas.load_exported(bundle), torch.nn.Module)


@pytest.mark.parametrize("name", ALL_FILES)
@pytest.mark.parametrize("damage", ["tamper", "truncate"])
def test_damaged_file_is_refused_naming_it(copy: Path, name: str, damage: str) -> None:
    path = copy / name
    data = bytearray(path.read_bytes())
    if damage == "tamper":
        data[len(data) // 2] ^= 0xFF  # same size, different content
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=name.replace(".", r"\.")) as info:
        verify_bundle(copy)
    assert ("truncated" if damage == "truncate" else "altered") in str(info.value)
    with pytest.raises(BundleError, match=name.replace(".", r"\.")):
        verified_path(copy, name)
    if name in ("arch.json", "model.safetensors"):
        with pytest.raises(BundleError, match=name.replace(".", r"\.")):
            load_exported(copy)
    else:  # load_exported reads only what it needs
        load_exported(copy)


def test_missing_listed_file_is_refused(copy: Path) -> None:
    (copy / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_exported(copy)


@pytest.mark.parametrize("damage", ["missing", "not json", "truncated", "other format", "no file list"])
def test_bad_manifest_is_refused_naming_it(copy: Path, damage: str) -> None:
    path = copy / "manifest.json"
    text = path.read_text()
    if damage == "missing":
        path.unlink()
    elif damage == "not json":
        path.write_text("{ this is not json")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 3])
    elif damage == "other format":
        path.write_text(json.dumps({**json.loads(text), "format": "something/9"}))
    else:
        path.write_text(json.dumps({**json.loads(text), "files": ["model.safetensors"]}))
    error = FileNotFoundError if damage == "missing" else BundleError
    with pytest.raises(error, match=r"manifest\.json"):
        load_exported(copy)


def test_loaded_bundle_matches_its_own_onnx(bundle: Path) -> None:
    from nas.export import ONNX_FILE, ort_predict, ort_session

    m = read_manifest(bundle)
    x = torch.randn(3, *m["input"]["shape"])
    with torch.no_grad():
        y = load_exported(bundle)(x).numpy()
    y_onnx = ort_predict(ort_session(verified_path(bundle, ONNX_FILE)), x)
    assert abs(y - y_onnx).max() <= 1e-4 * max(1.0, float(abs(y).max()))


# ----- bad input: clear errors, nothing left behind ---------------------------------------------
def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"formats": "torch,tflite"}, ValueError, ["'tflite'", "torch, onnx, torchscript"]),
        ({"formats": "torch", "int8": True}, ValueError, ["'onnx'"]),
        ({"devices": ["pixel9"]}, ValueError, ["'pixel9'", "local-cpu"]),
        ({"arch": {"ks": [3]}}, ss.InvalidArch, ["mbv3_tiny", "the keys ks, e, d, r"]),
        ({"arch": '{"nope": 1}'}, ss.InvalidArch, ["mbv3_tiny"]),
        ({"arch": "@missing-arch.json"}, FileNotFoundError, ["missing-arch.json"]),
        ({"checkpoint_dir": "no/such/run"}, FileNotFoundError, ["no/such/run"]),
        ({"objectives": {"accuracy": object()}}, ValueError, ["objectives"]),
    ],
    ids=[
        "format",
        "int8-without-onnx",
        "device",
        "arch",
        "arch-json",
        "arch-file",
        "checkpoint",
        "objectives",
    ],
)
def test_bad_input_names_the_value_and_leaves_nothing(
    ckpt: Path,
    space: ss.SearchSpace,
    tmp_path: Path,
    kwargs: dict[str, Any],
    error: type[Exception],
    words: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    args = {"checkpoint_dir": ckpt, "arch": space.smallest(), **kwargs}
    before = _listing(tmp_path)
    with pytest.raises(error) as info:
        export_subnet(
            args.pop("checkpoint_dir"), args.pop("arch"), tmp_path / "new" / "bundle", measure=False, **args
        )
    for w in words:
        assert w in str(info.value)
    assert _listing(tmp_path) == before


def test_non_empty_output_needs_overwrite(ckpt: Path, space: ss.SearchSpace, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="overwrite"):
        export_subnet(ckpt, space.smallest(), out, measure=False)
    assert _listing(tmp_path) == ["out", "out/keep.txt"]
    export_subnet(ckpt, space.smallest(), out, measure=False, formats="torch", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "manifest.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries beside it


def test_export_refuses_to_replace_its_checkpoint(ckpt: Path, space: ss.SearchSpace) -> None:
    with pytest.raises(ValueError, match="would replace the checkpoint"):
        export_subnet(ckpt, space.smallest(), ckpt.parent, measure=False, overwrite=True)
    assert resolve_checkpoint(ckpt) == ckpt


def test_parity_failure_leaves_nothing(
    ckpt: Path, space: ss.SearchSpace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_impl.export_onnx

    def broken(module: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
        with torch.no_grad():
            next(module.parameters()).add_(0.5)  # a wrong weight in the exported file only
        try:
            return real(module, example, path)
        finally:
            with torch.no_grad():
                next(module.parameters()).sub_(0.5)

    monkeypatch.setattr(export_impl, "export_onnx", broken)
    with pytest.raises(ExportParityError, match="onnx"):
        export_subnet(ckpt, space.largest(), tmp_path / "a" / "b" / "bundle", measure=False)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_resolves_from_run_dir_checkpoints_dir_or_step(ckpt: Path) -> None:
    run = ckpt.parent.parent
    assert resolve_checkpoint(run) == resolve_checkpoint(ckpt.parent) == resolve_checkpoint(ckpt) == ckpt
    assert resolve_checkpoint(ckpt / "checkpoint.json") == ckpt
    with pytest.raises(FileNotFoundError, match="No supernet checkpoint"):
        resolve_checkpoint(run.parent)


def test_arch_from_json_text_and_file(ckpt: Path, space: ss.SearchSpace, tmp_path: Path) -> None:
    arch = space.sample(seed=5)
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    a = export_subnet(ckpt, json.dumps(arch), tmp_path / "a", formats="torch", measure=False)
    b = export_subnet(ckpt, f"@{tmp_path / 'arch.json'}", tmp_path / "b", formats="torch", measure=False)
    assert a.arch_id == b.arch_id == space.arch_id(arch)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (
        tmp_path / "b" / "model.safetensors"
    ).read_bytes()


def test_data_that_changed_since_training_is_refused(
    ckpt: Path, space: ss.SearchSpace, tmp_path: Path
) -> None:
    other = tmp_path / "ckpt"
    shutil.copytree(ckpt, other)
    meta = json.loads((other / "checkpoint.json").read_text())
    meta["data"]["sha256"] = "0" * 64
    (other / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="differs from the data"):
        export_subnet(other, space.smallest(), tmp_path / "b", measure=False)
    assert not (tmp_path / "b").exists()
