"""Checkpoints: safetensors + JSON round trip, no pickle anywhere, atomic writes, content hash."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

import search_spaces as ss
from nas.train import (
    TrainingSpec,
    build_optimizer,
    checkpoint_hash,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
)


def _is_safetensors(path: Path) -> bool:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return isinstance(header, dict) and raw[8:9] == b"{"


def _trained(space_name: str, optimizer: str, **overrides: object):
    torch.manual_seed(0)
    space = ss.get_space(space_name, **overrides)
    net = space.build_supernet()
    opt = build_optimizer(net, TrainingSpec(optimizer=optimizer, lr=0.01))
    shape = space.input_shape(space.largest())
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(4, *shape)).sum().backward()
        opt.step()
    return space, net, opt


@pytest.mark.parametrize(
    ("space_name", "optimizer", "overrides"),
    [
        ("mbv3_tiny", "sgd", {"resolutions": [12]}),
        ("vit_tiny", "adamw", {}),
        ("nb201", "sgd", {"C": 8, "N": 1, "resolution": 8}),
    ],
)
def test_round_trip_restores_weights_and_optimizer_without_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, space_name: str, optimizer: str, overrides: dict
) -> None:
    space, net, opt = _trained(space_name, optimizer, **overrides)
    path = save_checkpoint(tmp_path / "ck", 7, net, opt, {"space": space.spec(), "progress": {"step": 7}})
    assert sorted(p.name for p in path.iterdir()) == [
        "checkpoint.json",
        "model.safetensors",
        "optimizer.safetensors",
    ]
    for f in ("model.safetensors", "optimizer.safetensors"):
        assert _is_safetensors(path / f)
        assert (path / f).read_bytes()[:2] != b"\x80\x04"  # not a pickle stream
    json.loads((path / "checkpoint.json").read_text())

    def no_torch_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("checkpoints must load without torch.load / pickle")

    monkeypatch.setattr(torch, "load", no_torch_load)
    ckpt = load_checkpoint(path)
    assert ckpt.step == 7 and ckpt.meta["format"].startswith("hwnas.supernet-checkpoint")
    net2 = space.build_supernet()
    net2.load_state_dict(ckpt.model_state)
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    opt2 = build_optimizer(net2, TrainingSpec(optimizer=optimizer, lr=0.01))
    opt2.load_state_dict(ckpt.optimizer_state)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i, st in s1["state"].items():
        for name, v in st.items():
            w = s2["state"][i][name]
            assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w
    model, ck2 = load_model(path)
    assert type(model) is type(net) and ck2.path == path


def test_latest_ignores_temporaries_and_prunes(tmp_path: Path) -> None:
    space, net, opt = _trained("nb201", "sgd", C=8, N=1, resolution=8)
    root = tmp_path / "ck"
    for step in (3, 6, 9):
        save_checkpoint(root, step, net, opt, {"progress": {"step": step}}, keep=2)
    (root / ".tmp-step-00000012-deadbeef").mkdir()  # a writer killed mid-way
    (root / "step-00000015").mkdir()  # no files: not a complete checkpoint
    assert latest_checkpoint(root) == root / "step-00000009"
    assert not (root / "step-00000003").exists() and (root / "step-00000006").exists()
    assert latest_checkpoint(tmp_path / "missing") is None


def test_content_hash_is_stable_and_location_free(tmp_path: Path) -> None:
    space, net, opt = _trained("nb201", "sgd", C=8, N=1, resolution=8)
    a = save_checkpoint(tmp_path / "a", 1, net, None, {"progress": {"step": 1}, "created": "x"})
    sha, size = checkpoint_hash(a)
    assert len(sha) == 64 and size == sum(f.stat().st_size for f in a.iterdir())
    moved = tmp_path / "moved"
    a.rename(moved)
    assert checkpoint_hash(moved) == (sha, size)
    (moved / "checkpoint.json").write_text("{}")
    assert checkpoint_hash(moved)[0] != sha


def test_bad_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        load_checkpoint(tmp_path)
    space, net, _ = _trained("nb201", "sgd", C=8, N=1, resolution=8)
    p = save_checkpoint(tmp_path / "ck", 1, net, None, {"progress": {"step": 1}})
    (p / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(p)
    (p / "checkpoint.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(p)
