"""A real (short) data-parallel run on Ray Train with 2 workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nas.train import RecordingSink, load_checkpoint, parse_spec, train

pytest.importorskip("ray.train")


@pytest.mark.slow
def test_two_ray_workers_train_one_epoch_and_checkpoint(
    tmp_path: Path, tiny_dict: Callable[..., dict]
) -> None:
    d = {**tiny_dict(tmp_path / "run", epochs=1), "workers": 2}
    sink = RecordingSink()
    result = train(parse_spec(d), sink)
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.complete and ckpt.step == ckpt.meta["total_steps"] == 10  # 160 train images / 16
    assert 0.0 <= result.metrics["largest_accuracy"] <= 1.0
    kinds = {k for k, _ in sink.events}
    assert {"start", "epoch"} <= kinds  # progress travelled from the rank-0 worker to the driver
    assert (tmp_path / "run" / "ray").is_dir()  # Ray Train's own copy of the reported checkpoint
