"""Export of a trial of a finished supernet search job, through the Python API and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import search_spaces as ss
from nas import load_exported
from nas.cli import app
from nas.db import get_engine
from nas.search import pareto_front, run_search
from nas.search._export import export_trial
from nas.train import load_dataset, load_model, parse_spec, save_checkpoint

OVERRIDES: dict[str, Any] = {"in_channels": 1, "resolutions": [8, 12]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    spec = parse_spec({
        "name": "export-trial", "space": {"name": "mbv3_tiny", "overrides": OVERRIDES},
        "data": {"kind": "digits", "max_samples": 200, "calib_size": 32},
        "training": {"epochs": 1, "batch_size": 16, "bn_calib_batches": 2}, "workers": 1,
        "output": str(root), "seed": 0, "register_checkpoint": False,
    })
    space = ss.get_space("mbv3_tiny", **OVERRIDES)
    torch.manual_seed(0)
    net = space.build_supernet()
    meta = {"space": space.spec(), "spec": spec.model_dump(mode="json"), "data": load_dataset(spec.data).describe(),
            "progress": {"step": 1, "epoch": 1, "complete": True}}
    save_checkpoint(root / "checkpoints", 1, net, None, meta)  # type: ignore[arg-type]
    return root


@pytest.fixture(scope="module")
def job(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'nas.db'}"
    result = run_search({
        "space": {"name": "mbv3_tiny", "overrides": OVERRIDES},
        "evaluator": {"kind": "supernet", "checkpoint": str(checkpoint), "bn_calib_batches": 1},
        "objectives": [{"name": "accuracy", "direction": "maximize"}, {"name": "macs", "direction": "minimize"}],
        "sampler": {"name": "random"},
        "budget": {"trials": 4, "seed": 0},
    }, url=url)
    assert result.status == "finished" and result.evaluations == 4
    return result.job_id, url


def _loads_and_runs(bundle: Path, checkpoint: Path, arch: dict[str, Any]) -> None:
    """The bundle reloads (hash-checked) and runs deterministically with the subnet's output shape;
    parity with the supernet-at-arch is covered by tests/nas/export/test_export_parity.py."""
    model = load_exported(bundle)
    supernet, _ = load_model(next((checkpoint / "checkpoints").iterdir()))
    x = torch.randn(3, 1, arch["r"], arch["r"])
    supernet.eval()
    supernet.set_active(arch)  # type: ignore[operator]
    model.eval()
    with torch.no_grad():
        assert model(x).shape == supernet(x).shape
        assert torch.equal(model(x), load_exported(bundle)(x))


def test_python_api_exports_a_trial_with_its_objectives(job: tuple[str, str], checkpoint: Path, tmp_path: Path) -> None:
    job_id, url = job
    front = pareto_front(job_id, engine=get_engine(url))
    trial = front[0]
    result = export_trial(job_id, trial["number"], tmp_path / "bundle", engine=get_engine(url), measure=False)
    m = result.manifest
    assert m["arch_id"] == trial["arch_id"]
    assert m["objectives"]["accuracy"] == pytest.approx(trial["accuracy"])
    assert m["objectives"]["macs"] == pytest.approx(trial["macs"])
    _loads_and_runs(result.path, checkpoint, trial["arch"])


def test_cli_exports_a_trial(job: tuple[str, str], checkpoint: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, url = job
    monkeypatch.setenv("NAS_DATABASE_URL", url)
    number = pareto_front(job_id, engine=get_engine(url))[-1]["number"]
    out = tmp_path / "cli-bundle"
    r = CliRunner().invoke(app, ["export", job_id, "--trial", str(number), "-o", str(out), "--no-measure"])
    assert r.exit_code == 0, r.output
    assert {"model.safetensors", "model.onnx", "arch.json", "manifest.json"} <= {p.name for p in out.iterdir()}
    r = CliRunner().invoke(app, ["export", job_id, "--trial", "999", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no finished trial 999" in r.output and not (tmp_path / "x").exists()


def test_table_jobs_have_no_weights_to_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nas.db import _jobs as jobs_db

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    job = jobs_db.create_job(kind="search", name="t", spec={
        "space": {"name": "nb201"}, "evaluator": {"kind": "table", "path": "x.csv"},
        "objectives": [{"name": "accuracy", "direction": "maximize"}],
    }, engine=get_engine(url))
    with pytest.raises(ValueError, match="no weights to export"):
        export_trial(job.id, 0, tmp_path / "b", engine=get_engine(url))
