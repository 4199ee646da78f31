"""Authentication, the JSON error contract, and the read-only endpoints (spaces, devices,
latency tables, health, docs) of a real server process."""

from __future__ import annotations

import httpx
import pytest

from tests.nas.service.conftest import Server


def test_health_and_docs_need_no_token(clients: dict[str, httpx.Client], server: Server) -> None:
    anon = clients["anon"]
    r = anon.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"] == server.dialect and body["auth"] == "token"
    assert anon.get("/docs").status_code == 200
    paths = anon.get("/openapi.json").json()["paths"]
    for p in (
        "/api/jobs/search",
        "/api/jobs/train",
        "/api/jobs/{job_id}/pareto",
        "/api/exports/{job_id}/{name}/download",
        "/api/latency/{device}/{space}",
    ):
        assert p in paths


@pytest.mark.parametrize(
    "path",
    ["/api/spaces", "/api/devices", "/api/jobs", "/api/jobs/search-0/trials", "/api/latency/local-cpu/nb201"],
)
def test_missing_token_is_401_json(clients: dict[str, httpx.Client], path: str) -> None:
    r = clients["anon"].get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Missing bearer token" in r.json()["detail"]


def test_bad_token_is_401_json(server: Server) -> None:
    with server.client(token="not-a-token") as c:
        r = c.get("/api/jobs")
        assert r.status_code == 401 and r.json() == {"detail": "Invalid bearer token."}
        r = c.post("/api/jobs/search", json={})
        assert r.status_code == 401  # auth before validation: nothing about the body leaks
    with httpx.Client(base_url=server.base, headers={"Authorization": "Basic YTpi"}) as c:
        r = c.get("/api/jobs")
        assert r.status_code == 401 and "Bearer" in r.json()["detail"]


def test_unknown_route_is_404_json(clients: dict[str, httpx.Client]) -> None:
    r = clients["alice"].get("/api/nothing-here")
    assert r.status_code == 404 and "/api/nothing-here" in r.json()["detail"]


def test_spaces(clients: dict[str, httpx.Client]) -> None:
    c = clients["alice"]
    r = c.get("/api/spaces")
    assert r.status_code == 200
    names = [s["name"] for s in r.json()]
    assert "nb201" in names and "mbv3_tiny" in names
    one = c.get("/api/spaces/nb201").json()
    assert one["name"] == "nb201" and one["size"] == 15625 and one["choices"]
    r = c.get("/api/spaces/no-such-space")
    assert r.status_code == 404
    assert "no-such-space" in r.json()["detail"] and "nb201" in r.json()["detail"]


def test_devices(clients: dict[str, httpx.Client]) -> None:
    r = clients["bob"].get("/api/devices")
    assert r.status_code == 200
    by_name = {d["name"]: d for d in r.json()}
    assert "nb201" in by_name["local-cpu"]["tables"]
    assert {"kind", "runtime", "threads", "batch_size"} <= set(by_name["local-cpu"])


def test_latency_table_summary(clients: dict[str, httpx.Client]) -> None:
    c = clients["bob"]
    r = c.get("/api/latency/local-cpu/nb201")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device"] == "local-cpu" and body["space"] == "nb201"
    assert body["keys"] > 0 and isinstance(body["meta"], dict) and isinstance(body["overhead"], dict)
    for path, bad in (
        ("/api/latency/local-cpu/no-space", "no-space"),
        ("/api/latency/no-device/nb201", "no-device"),
        ("/api/latency/..%2F..%2Fetc/passwd", ""),
    ):
        r = c.get(path)
        assert r.status_code == 404, (path, r.text)
        detail = r.json()["detail"]
        if bad:
            assert bad in detail and "local-cpu/nb201" in detail  # names the known tables
