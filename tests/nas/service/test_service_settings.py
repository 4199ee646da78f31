"""Token parsing, the loopback rule of --insecure-local, `nas serve`'s refusals, and an
insecure-local app (in process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from nas.serve_cli import serve_command
from nas.service import LOCAL, Principal, ServiceSettings, check_loopback, parse_tokens
from tests.nas.service.conftest import reset_engines


def test_parse_tokens() -> None:
    tokens = parse_tokens({"NAS_API_TOKENS": " a1:alice, b2:bob ,r3:root:admin,", "NAS_API_TOKEN": "x9"})
    assert tokens == {
        "a1": Principal("alice"),
        "b2": Principal("bob"),
        "r3": Principal("root", True),
        "x9": Principal("admin", True),
    }
    assert parse_tokens({}) == {}
    for bad, named in (
        ("a1", "entry 1"),
        ("a1:alice,b2", "entry 2"),
        ("a1:alice:root", "'root'"),
        (":alice", "entry 1"),
        ("a1:alice,a1:bob", "repeats"),
    ):
        with pytest.raises(ValueError, match=named):
            parse_tokens({"NAS_API_TOKENS": bad})


def test_authenticate() -> None:
    s = ServiceSettings(tokens={"t": Principal("alice")})
    assert s.authenticate("t") == Principal("alice")
    assert s.authenticate("u") is None and s.authenticate(None) is None
    local = ServiceSettings(tokens={"t": Principal("alice")}, insecure_local=True)
    assert local.authenticate(None) == LOCAL and local.authenticate("u") is None
    with pytest.raises(ValueError, match="NAS_API_TOKEN"):
        ServiceSettings().check()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts_are_allowed(host: str) -> None:
    check_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_other_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(host)


def _serve(args: list[str], env: dict[str, str | None]) -> object:
    app = typer.Typer()
    app.command()(serve_command)
    return CliRunner().invoke(app, args, env={"NAS_API_TOKEN": None, "NAS_API_TOKENS": None, **env})


def test_serve_refuses_insecure_local_on_a_public_address() -> None:
    result = _serve(["--host", "0.0.0.0", "--insecure-local"], {})
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "loopback" in result.output and "0.0.0.0" in result.output  # type: ignore[attr-defined]


def test_serve_refuses_to_run_without_tokens() -> None:
    result = _serve(["--port", "1"], {})
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "NAS_API_TOKEN" in result.output  # type: ignore[attr-defined]
    result = _serve(["--port", "1"], {"NAS_API_TOKENS": "broken"})
    assert result.exit_code == 2 and "NAS_API_TOKENS entry 1" in result.output  # type: ignore[attr-defined]


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_insecure_local_app(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from nas.service import create_app

    settings = ServiceSettings(
        tokens={"tok": Principal("alice")},
        insecure_local=True,
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'nas.db'}",
    )
    try:
        with TestClient(create_app(settings)) as c:
            assert c.get("/api/health").json()["auth"] == "insecure-local"
            assert c.get("/api/jobs").status_code == 200  # no token needed
            assert c.get("/api/jobs", headers={"Authorization": "Bearer tok"}).status_code == 200
            r = c.get("/api/jobs", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json() == {"detail": "Invalid bearer token."}
    finally:
        reset_engines()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_pending_jobs_run_when_the_service_starts(tmp_path: Path, make_spec: Any) -> None:
    """A job submitted but never started (the server died in between) is run on the next start."""
    import time

    from fastapi.testclient import TestClient

    from nas.db import get_engine
    from nas.db._jobs import create_job
    from nas.search import parse_search_spec
    from nas.service import create_app
    from nas.service._app import _validate_search

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    spec = parse_search_spec(make_spec(trials=3))
    metrics = _validate_search(spec)
    try:
        job = create_job(
            kind="search",
            name="left-pending",
            spec=spec.model_dump(mode="json"),
            metrics=[m.to_dict() for m in metrics],
            owner="alice",
            engine=get_engine(url),
        )
        settings = ServiceSettings(
            tokens={"tok": Principal("alice")}, home=tmp_path / "home", database_url=url
        )
        with TestClient(create_app(settings), headers={"Authorization": "Bearer tok"}) as c:
            deadline = time.monotonic() + 45
            while (info := c.get(f"/api/jobs/{job.id}").json())["status"] in ("pending", "running"):
                assert time.monotonic() < deadline, info
                time.sleep(0.25)
        assert info["status"] == "finished" and info["trials"] >= 3, info
    finally:
        reset_engines()
