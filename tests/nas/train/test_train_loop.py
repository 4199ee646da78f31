"""The training loop in-process: every space trains, resumes exactly, registers its checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

import search_spaces as ss
from nas.train import (
    RecordingSink,
    check_spec,
    checkpoint_hash,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    parse_spec,
    train,
)

REPO = Path(__file__).resolve().parents[3]

SPACES = {
    "mbv3_tiny": {"in_channels": 1, "resolutions": [8, 12]},
    "vit_tiny": {"in_channels": 1, "resolution": 8, "patch_size": 4},
    "nb201": {"in_channels": 1, "resolution": 8, "C": 8, "N": 1},
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_trains_and_reports_largest_and_smallest(
    tmp_path: Path, name: str, tiny_dict: Callable[..., dict]
) -> None:
    d = tiny_dict(tmp_path / "run", epochs=2, sandwich_n=1)
    d["space"] = {"name": name, "overrides": SPACES[name]}
    sink = RecordingSink()
    result = train(parse_spec(d), sink)
    epochs = [e for kind, e in sink.events if kind == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1]
    for key in ("largest_accuracy", "smallest_accuracy", "largest_loss", "smallest_loss", "train_loss"):
        assert key in result.metrics
    assert result.metrics["largest_accuracy"] > 0.15  # better than chance (0.1) after 2 tiny epochs
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.complete and ckpt.step == ckpt.meta["total_steps"]
    assert ckpt.meta["space"] == {"name": name, **SPACES[name]}
    assert ckpt.meta["data"]["sha256"] and ckpt.meta["versions"]["torch"] == torch.__version__
    net, _ = load_model(result.checkpoint)
    assert isinstance(net, type(ss.get_space(name, **SPACES[name]).build_supernet()))


@pytest.mark.parametrize(
    "training",
    [
        {"progressive_shrinking": "ofa", "epochs": 3, "sampling": "complexity_aware"},
        {"deps_start_fraction": 0.5, "epochs": 2, "distill_alpha": 0.5, "optimizer": "adamw", "lr": 0.003},
    ],
    ids=["ofa+complexity", "deps+adamw"],
)
def test_shrinking_schedules_run(tmp_path: Path, training: dict, tiny_dict: Callable[..., dict]) -> None:
    sink = RecordingSink()
    result = train(parse_spec(tiny_dict(tmp_path / "run", **training)), sink)
    phases = [e[2] for k, e in sink.events if k == "step"]
    if "progressive_shrinking" in training:
        assert phases[0] == "kernel" and phases[-1] == "expand"
        assert any("reordered channels" in e for k, e in sink.events if k == "message")
    else:
        assert phases[0] == "full" and phases[-1] == "shrink"
    assert load_checkpoint(result.checkpoint).complete


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).model_state


def test_interrupted_and_resumed_run_equals_uninterrupted(
    tmp_path: Path, tiny_dict: Callable[..., dict]
) -> None:
    full = train(parse_spec(tiny_dict(tmp_path / "a", epochs=2, sampling="complexity_aware")))
    spec_b = parse_spec(tiny_dict(tmp_path / "b", epochs=2, sampling="complexity_aware"))
    part = train(spec_b, stop_after_steps=5)  # mid-epoch (8 steps per epoch)
    assert not load_checkpoint(part.checkpoint).complete and load_checkpoint(part.checkpoint).step == 5
    sink = RecordingSink()
    resumed = train(spec_b, sink)
    assert resumed.resumed_from == 5
    assert any("Resuming from step 5" in e for k, e in sink.events if k == "message")
    a, b = _weights(full.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_rerun_of_finished_run_trains_nothing_and_registers_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dict: Callable[..., dict]
) -> None:
    from nas import db

    monkeypatch.setenv("NAS_DATABASE_URL", f"sqlite:///{tmp_path / 'nas.db'}")
    spec = parse_spec({**tiny_dict(tmp_path / "run", epochs=1), "register_checkpoint": True})
    first = train(spec)
    sha, size = checkpoint_hash(first.checkpoint)
    art = db.get_artifact(first.artifact_id)
    assert (art.sha256, art.size_bytes, art.path) == (sha, size, str(first.checkpoint.resolve()))
    assert art.kind == "supernet_checkpoint" and art.meta["space"]["name"] == "mbv3_tiny"
    sink = RecordingSink()
    again = train(spec, sink)
    assert again.checkpoint == first.checkpoint and again.artifact_id == first.artifact_id
    assert not [e for k, e in sink.events if k == "step"]
    assert len(db.list_artifacts(kind="supernet_checkpoint")) == 1
    db.dispose_engines()


SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from nas.train import load_spec, train
train(load_spec(sys.argv[1]))
print("FINISHED")
"""


def test_killed_mid_epoch_resumes_from_checkpoint_and_finishes(
    tmp_path: Path, tiny_dict: Callable[..., dict]
) -> None:
    d = tiny_dict(tmp_path / "run", epochs=3, checkpoint_every_steps=2, keep_checkpoints=3)
    d["space"]["overrides"]["resolutions"] = [12, 16]  # slower steps: time to kill
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(d))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(spec_path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ckdir = tmp_path / "run" / "checkpoints"
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        latest = latest_checkpoint(ckdir)
        if latest is not None and load_checkpoint(latest, with_optimizer=False).step >= 4:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at = load_checkpoint(latest_checkpoint(ckdir), with_optimizer=False).step
            break
        time.sleep(0.02)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert killed_at is not None, f"the run ended before it could be killed: {out}"
    assert b"FINISHED" not in out.encode()
    total = load_checkpoint(latest_checkpoint(ckdir), with_optimizer=False).meta["total_steps"]
    assert 0 < killed_at < total  # killed while running the steps after a (mid-epoch) checkpoint
    rerun = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(spec_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    final = load_checkpoint(latest_checkpoint(ckdir))
    assert final.complete and final.step == total
    assert check_spec(parse_spec(d)) == total
    reference = train(parse_spec({**d, "output": str(tmp_path / "ref")}))
    ref = _weights(reference.checkpoint)
    for k, v in final.model_state.items():
        torch.testing.assert_close(v, ref[k], rtol=0, atol=0, msg=k)
