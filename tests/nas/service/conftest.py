"""REST service test set-up: one real server process (``python -m nas.serve_cli``) on a free
loopback port, with its own NAS_HOME and SQLite database and three tokens (two owners and an
admin), shared by the directory's tests; httpx clients per token."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
# shared/ lies beside the checkout (as in CI), like tests/nas/search/conftest.py.
NB201_CSV = REPO.parent / "shared" / "data" / "nb201_12epoch" / "nb201_12epoch_acc.csv"
TOKENS = {"alice": "tok-alice-1", "bob": "tok-bob-2", "root": "tok-root-3"}
LATENCY_MAX = 5.0


@dataclass
class Server:
    base: str
    home: Path
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, who: str | None = None, token: str | None = None) -> httpx.Client:
        headers = {}
        if who is not None:
            token = TOKENS[who]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def reset_engines() -> None:
    """Dispose this process's cached engines and forget their schema checks (as
    tests/nas/search/conftest.py does: a new engine may reuse a disposed one's id)."""
    from nas.db import _engine as db_engine
    from nas.db import _migrate as db_migrate

    for eng in list(db_engine._ENGINES.values()):
        db_migrate._CHECKED.discard(eng)
    db_engine.dispose_engines()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    shm = Path("/dev/shm")
    # SQLite in tmpfs when there is one: each Optuna ask/tell commits (fsync would dominate).
    root = Path(
        tempfile.mkdtemp(
            prefix="nas-service-test-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        )
    )
    home = root / "home"
    url = f"sqlite:///{root / 'nas.db'}"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NAS_API_TOKEN", "RAY_ADDRESS")}
    env.update(
        {
            "NAS_HOME": str(home),
            "NAS_DATABASE_URL": url,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "NAS_API_TOKENS": f"{TOKENS['alice']}:alice,{TOKENS['bob']}:bob,{TOKENS['root']}:root:admin",
            "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
    )
    log = root / "server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nas.serve_cli", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    srv = Server(f"http://127.0.0.1:{port}", home, url, proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{srv.log_text()}")
            try:
                if httpx.get(f"{srv.base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within 60 s:\n{srv.log_text()}")
            time.sleep(0.2)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # graceful: it stops its job runners too
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def clients(server: Server) -> Iterator[dict[str, httpx.Client]]:
    out = {who: server.client(who) for who in TOKENS}
    out["anon"] = server.client()
    yield out
    for c in out.values():
        c.close()


@pytest.fixture(scope="session")
def nb201_csv() -> Path:
    if not NB201_CSV.is_file():
        pytest.skip(f"NAS-Bench-201 table not found at {NB201_CSV} (shared/ lies beside the checkout)")
    return NB201_CSV


@pytest.fixture(scope="session")
def make_spec(nb201_csv: Path) -> Callable[..., dict[str, Any]]:
    """Accuracy (max) vs local-cpu latency (min) on the nb201 table, latency <= LATENCY_MAX."""

    def make(trials: int = 10, sampler: str = "random", **over: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": "api-search",
            "space": {"name": "nb201"},
            "evaluator": {"kind": "table", "path": str(nb201_csv), "columns": {"accuracy": "cifar10-val"}},
            "objectives": [
                {"name": "accuracy", "direction": "maximize"},
                {"name": "latency_ms", "device": "local-cpu", "direction": "minimize"},
            ],
            "constraints": [{"name": "latency_ms", "device": "local-cpu", "max": LATENCY_MAX}],
            "metrics": [{"name": "macs", "direction": "minimize"}],
            "sampler": {"name": sampler},
            "budget": {"trials": trials, "parallelism": 1, "seed": 0},
        }
        spec.update(over)
        return spec

    return make


def wait_for(
    client: httpx.Client,
    job: str,
    statuses: tuple[str, ...],
    timeout: float = 45.0,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Poll GET /api/jobs/{job} until its status is one of `statuses` (and `until` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/jobs/{job}")
        assert r.status_code == 200, r.text
        info = r.json()
        if info["status"] in statuses and (until is None or until(info)):
            return info
        assert info["status"] in statuses or info["status"] in ("pending", "running"), info
        assert time.monotonic() < deadline, f"job {job} still {info['status']} after {timeout}s: {info}"
        time.sleep(0.25)


@pytest.fixture(scope="session")
def search_job(
    server: Server, clients: dict[str, httpx.Client], make_spec: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """A tabular search (10 evaluations) submitted by alice through the API, polled to the end."""
    r = clients["alice"].post("/api/jobs/search", json=make_spec(trials=10))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["owner"] == "alice" and job["status"] in ("pending", "running")
    log = server.home / "jobs" / f"{job['id']}.log"
    try:
        return wait_for(clients["alice"], job["id"], ("finished",), timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrunner log:\n{log.read_text() if log.exists() else '(none)'}") from None
