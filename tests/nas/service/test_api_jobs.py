"""Search jobs through the REST API of a real server: submission and validation, an end-to-end
tabular search run by a runner process, trials and Pareto queries, cancellation, and owners."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nas.service.conftest import LATENCY_MAX, Server, wait_for

LATENCY = "latency_ms@local-cpu"


def _job_ids(c: httpx.Client) -> set[str]:
    r = c.get("/api/jobs")
    assert r.status_code == 200, r.text
    return {j["id"] for j in r.json()}


def test_tabular_search_end_to_end(clients: dict[str, httpx.Client], search_job: dict[str, Any]) -> None:
    c, job = clients["alice"], search_job
    assert job["status"] == "finished" and job["owner"] == "alice" and job["kind"] == "search"
    assert job["spec"]["budget"]["trials"] == 10 and job["error"] is None
    assert {m["key"] for m in job["metrics"]} == {"accuracy", LATENCY, "macs"}
    assert job["trials"] >= 10
    hv = job["hypervolume_history"]
    assert hv and hv[-1][0] == 10 and all(v is None or v >= 0 for _, v in hv)

    rows = c.get(f"/api/jobs/{job['id']}/trials").json()
    assert len(rows) == job["trials"]
    assert sorted(r["evaluation"] for r in rows if r["evaluation"] is not None) == list(range(1, 11))
    for r in rows:
        assert r["feasible"] == (r[LATENCY] <= LATENCY_MAX)
        assert 0 < r["accuracy"] <= 100 and isinstance(r["arch"], dict)

    limited = c.get(f"/api/jobs/{job['id']}/trials", params={"limit": 3}).json()
    assert [r["number"] for r in limited] == [r["number"] for r in rows[:3]]
    fast = c.get(f"/api/jobs/{job['id']}/trials", params={"where": "latency_ms<3"}).json()
    assert [r["number"] for r in fast] == [r["number"] for r in rows if r[LATENCY] < 3]

    front = c.get(f"/api/jobs/{job['id']}/pareto").json()
    feasible = [r for r in rows if r["feasible"]]
    want = {
        r["number"]
        for r in feasible
        if not any(
            o["accuracy"] >= r["accuracy"]
            and o[LATENCY] <= r[LATENCY]
            and (o["accuracy"] > r["accuracy"] or o[LATENCY] < r[LATENCY])
            for o in feasible
        )
    }
    assert {r["number"] for r in front} == want
    assert [r["accuracy"] for r in front] == sorted((r["accuracy"] for r in front), reverse=True)

    everything = c.get(f"/api/jobs/{job['id']}/pareto", params={"include_infeasible": "true"}).json()
    assert {r["number"] for r in front} <= {r["number"] for r in rows}
    assert everything  # the unconstrained front exists too
    by_macs = c.get(
        f"/api/jobs/{job['id']}/pareto", params={"objectives": "accuracy,macs", "where": "latency_ms<4"}
    ).json()
    assert by_macs and all(r[LATENCY] < 4 for r in by_macs)


def test_job_lists_and_owners(clients: dict[str, httpx.Client], search_job: dict[str, Any]) -> None:
    jid = search_job["id"]
    assert jid in _job_ids(clients["alice"])
    assert jid not in _job_ids(clients["bob"])
    assert jid in _job_ids(clients["root"])  # admin sees everyone's
    assert clients["root"].get(f"/api/jobs/{jid}").json()["owner"] == "alice"
    assert jid in {j["id"] for j in clients["alice"].get("/api/jobs", params={"status": "finished"}).json()}
    assert clients["alice"].get("/api/jobs", params={"status": "bogus"}).status_code == 422

    bob = clients["bob"]
    for method, path, body in (
        ("GET", f"/api/jobs/{jid}", None),
        ("GET", f"/api/jobs/{jid}/trials", None),
        ("GET", f"/api/jobs/{jid}/pareto", None),
        ("POST", f"/api/jobs/{jid}/cancel", None),
        ("POST", f"/api/jobs/{jid}/exports", {"trial": 1}),
        ("GET", f"/api/exports/{jid}/1-0123456789ab/download", None),
    ):
        r = bob.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        # answered as for a job that never was
        assert r.json() == {"detail": f"Unknown job {jid!r} (see GET /api/jobs)."}
    r = bob.get("/api/jobs/search-000000000000")
    assert (
        r.status_code == 404
        and r.json()["detail"] == "Unknown job 'search-000000000000' (see GET /api/jobs)."
    )
    assert clients["root"].get(f"/api/jobs/{jid}/trials", params={"limit": 1}).status_code == 200


def test_bad_queries_are_422(clients: dict[str, httpx.Client], search_job: dict[str, Any]) -> None:
    c, jid = clients["alice"], search_job["id"]
    r = c.get(f"/api/jobs/{jid}/trials", params={"where": "latency_ms <<< 5"})
    assert r.status_code == 422 and r.json()["detail"]
    r = c.get(f"/api/jobs/{jid}/trials", params={"where": "nonsense_metric < 5"})
    assert r.status_code == 422 and "nonsense_metric" in r.json()["detail"]
    r = c.get(f"/api/jobs/{jid}/pareto", params={"objectives": "accuracy,flops"})
    assert r.status_code == 422 and "flops" in r.json()["detail"]
    r = c.get(f"/api/jobs/{jid}/trials", params={"limit": 0})
    assert r.status_code == 422 and "limit" in r.json()["detail"]
    r = c.get(f"/api/jobs/{jid}/pareto", params={"include_infeasible": "maybe"})
    assert r.status_code == 422 and "include_infeasible" in r.json()["detail"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"space": {"name": "no_such_space"}}, "no_such_space"),
        ({"budget": {"trials": 0}}, "budget.trials"),
        ({"bogus_field": 1}, "bogus_field"),
        ({"objectives": [{"name": "accuracy", "direction": "sideways"}]}, "objectives.0.direction"),
        ({"sampler": {"name": "no_such_sampler"}}, "no_such_sampler"),
        (
            {"objectives": [{"name": "latency_ms", "device": "no-such-board", "direction": "minimize"}]},
            "no-such-board",
        ),
        ({"metrics": [{"name": "no_such_metric", "direction": "minimize"}]}, "no_such_metric"),
        ({"evaluator": {"kind": "table", "path": "/nonexistent/bench.csv"}}, "/nonexistent/bench.csv"),
    ],
)
def test_bad_specs_are_422_and_create_nothing(
    clients: dict[str, httpx.Client],
    make_spec: Callable[..., dict[str, Any]],
    change: dict[str, Any],
    named: str,
) -> None:
    c = clients["bob"]
    before = _job_ids(clients["root"])
    spec = make_spec()
    spec.update(change)
    r = c.post("/api/jobs/search", json=spec)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and named in detail
    assert _job_ids(clients["root"]) == before


def test_non_object_body_is_422(clients: dict[str, httpx.Client]) -> None:
    r = clients["bob"].post("/api/jobs/search", json=[1, 2])
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = clients["bob"].post(
        "/api/jobs/search", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_cancel_a_running_job(
    clients: dict[str, httpx.Client], make_spec: Callable[..., dict[str, Any]]
) -> None:
    c = clients["bob"]
    r = c.post("/api/jobs/search", json=make_spec(trials=5000, name="to-cancel"))
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    assert r.json()["owner"] == "bob"
    wait_for(c, jid, ("running",), until=lambda j: j["trials"] > 0)
    assert clients["alice"].post(f"/api/jobs/{jid}/cancel").status_code == 404
    r = c.post(f"/api/jobs/{jid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    info = wait_for(c, jid, ("cancelled",), until=lambda j: j["runner_pid"] is None)
    assert info["trials"] < 5000
    r = c.post(f"/api/jobs/{jid}/cancel")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    # the driver stopped: no trial is added after the runner exited
    assert c.get(f"/api/jobs/{jid}").json()["trials"] == info["trials"]


def test_cancel_a_pending_job_before_it_runs(
    clients: dict[str, httpx.Client], make_spec: Callable[..., dict[str, Any]]
) -> None:
    c = clients["root"]
    r = c.post("/api/jobs/search", json=make_spec(trials=5000, name="cancel-early"))
    assert r.status_code == 201
    jid = r.json()["id"]
    assert r.json()["owner"] == "root"
    assert c.post(f"/api/jobs/{jid}/cancel").json()["status"] == "cancelled"
    info = wait_for(c, jid, ("cancelled",), until=lambda j: j["runner_pid"] is None)
    assert info["trials"] < 5000


def test_a_crashing_job_fails_alone(
    server: Server, clients: dict[str, httpx.Client], make_spec: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """The table vanishes between submission and the runner's start: the job fails with the
    reason, and the server (the runner is another process) carries on."""
    c = clients["alice"]
    csv = tmp_path / "bench.csv"
    shutil.copy(make_spec()["evaluator"]["path"], csv)
    spec = make_spec(trials=5, name="doomed")
    spec["evaluator"] = {**spec["evaluator"], "path": str(csv)}
    r = c.post("/api/jobs/search", json=spec)
    assert r.status_code == 201, r.text
    csv.unlink()
    info = wait_for(c, r.json()["id"], ("failed",), until=lambda j: j["runner_pid"] is None)
    assert str(csv) in info["error"]
    assert c.get("/api/health").json()["status"] == "ok"
    assert server.proc.poll() is None
