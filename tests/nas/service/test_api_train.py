"""Training jobs through the REST API of a real server: a tiny supernet trained by a runner
process, its checkpoint registered as an artifact and shown in the job detail; validation before
the job exists; cancellation mid-training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nas.service.conftest import Server, reset_engines, tiny_train_spec, wait_for


def _job_ids(c: httpx.Client) -> set[str]:
    return {j["id"] for j in c.get("/api/jobs").json()}


@pytest.mark.slow
def test_train_job_end_to_end(server: Server, clients: dict[str, httpx.Client]) -> None:
    from nas.db import get_artifact, get_engine
    from nas.train import ARTIFACT_KIND

    c = clients["alice"]
    r = c.post("/api/jobs/train", json=tiny_train_spec(epochs=1))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["kind"] == "train" and job["owner"] == "alice" and job["status"] in ("pending", "running")
    log = server.home / "jobs" / f"{job['id']}.log"
    try:
        info = wait_for(c, job["id"], ("finished",), timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrunner log:\n{log.read_text() if log.exists() else '(none)'}") from None
    assert info["error"] is None and info["trials"] == 0
    run_dir = server.home / "runs" / job["id"]
    assert info["spec"]["output"] == str(run_dir) and info["spec"]["training"]["epochs"] == 1
    t = info["train"]
    assert t["total_steps"] > 0 and t["step"] == t["total_steps"] and t["epoch"] == t["epochs"] == 1
    assert 0 <= t["last_epoch"]["largest_accuracy"] <= 1
    assert Path(t["checkpoint"]).is_dir() and Path(t["checkpoint"]).is_relative_to(run_dir)
    try:
        art = get_artifact(t["artifact_id"], engine=get_engine(server.url))
    finally:
        reset_engines()
    assert art.kind == ARTIFACT_KIND and art.path == t["checkpoint"] and art.sha256 == t["sha256"]

    assert job["id"] in {j["id"] for j in c.get("/api/jobs", params={"kind": "train"}).json()}
    assert clients["bob"].get(f"/api/jobs/{job['id']}").status_code == 404
    r = c.post(f"/api/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and "finished" in r.json()["detail"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"space": {"name": "no_such_space"}}, "no_such_space"),
        ({"data": {"kind": "tfrecords"}}, "data.kind"),
        ({"bogus_field": 1}, "bogus_field"),
        ({"output": "/tmp/elsewhere"}, "output"),
        ({"training": {"batch_size": 4096}}, "batch_size"),
        ({"data": {"kind": "npz", "path": "/nonexistent/x.npz"}}, "/nonexistent/x.npz"),
        ({"space": {"name": "mbv3_tiny", "overrides": {"in_channels": 1, "depth": "deep"}}}, "depth"),
    ],
)
def test_bad_train_specs_are_422_and_create_nothing(
    clients: dict[str, httpx.Client], change: dict[str, Any], named: str
) -> None:
    before = _job_ids(clients["root"])
    r = clients["bob"].post("/api/jobs/train", json={**tiny_train_spec(), **change})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and named in detail, detail
    assert _job_ids(clients["root"]) == before


def test_train_needs_a_token(clients: dict[str, httpx.Client]) -> None:
    assert clients["anon"].post("/api/jobs/train", json=tiny_train_spec()).status_code == 401


@pytest.mark.slow
def test_cancel_a_training_job(clients: dict[str, httpx.Client]) -> None:
    c = clients["bob"]
    r = c.post("/api/jobs/train", json={**tiny_train_spec(epochs=500), "name": "to-cancel"})
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    wait_for(c, jid, ("running",), timeout=120, until=lambda j: (j["train"] or {}).get("step", 0) > 0)
    r = c.post(f"/api/jobs/{jid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    info = wait_for(c, jid, ("cancelled",), timeout=60, until=lambda j: j["runner_pid"] is None)
    assert info["train"]["step"] < info["train"]["total_steps"]
    assert "checkpoint" not in info["train"]  # no result: it never finished
