"""REST service test set-up: one real server process (``python -m nas.serve_cli``) on a free
loopback port per database (SQLite, PostgreSQL), with its own NAS_HOME and three tokens (two
owners and an admin), shared by the directory's tests; httpx clients per token. `start_server`
and `stop_server` serve tests that need servers of their own (restarts)."""

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
TOKENS = {"alice": "tok-alice-1", "bob": "tok-bob-2", "root": "tok-root-3", "fuzz": "tok-fuzz-4"}
"""Owners of the test server; ``fuzz`` is the generated-requests test's own (its jobs are its)."""
LATENCY_MAX = 5.0
OVERRIDES: dict[str, Any] = {"in_channels": 1, "resolutions": [8, 12]}
SUPERNET_TRIALS = 8


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

    @property
    def dialect(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"

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


def start_server(home: Path, url: str, log: Path) -> Server:
    """A server process (``python -m nas.serve_cli``) on a free loopback port over `url` and
    `home`, answering /api/health (its output goes to `log`, appended)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NAS_API_TOKEN", "RAY_ADDRESS")}
    env.update(
        {
            "NAS_HOME": str(home),
            "NAS_DATABASE_URL": url,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "NAS_API_TOKENS": f"{TOKENS['alice']}:alice,{TOKENS['bob']}:bob,{TOKENS['root']}:root:admin,"
            f"{TOKENS['fuzz']}:fuzz",
            "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
    )
    with log.open("ab") as fh:
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
                    return srv
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within 60 s:\n{srv.log_text()}")
            time.sleep(0.2)
    except BaseException:
        stop_server(srv, signal.SIGKILL)
        raise


def stop_server(srv: Server, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop the server process with `sig` (SIGTERM: graceful, it stops its job runners too)."""
    if srv.proc.poll() is None:
        srv.proc.send_signal(sig)
        try:
            srv.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            srv.proc.wait()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session server's database URL: SQLite, then PostgreSQL (a schema of its own, as in
    tests/nas/search; skipped when PostgreSQL is unreachable)."""
    from tests.nas.search.conftest import make_db_url

    yield from make_db_url(request.param, tmp_path_factory.mktemp(f"db-{request.param}"))


@pytest.fixture(scope="session")
def server(database: str) -> Iterator[Server]:
    """One real server per database, shared by the directory's tests."""
    shm = Path("/dev/shm")
    root = Path(
        tempfile.mkdtemp(
            prefix="nas-service-test-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        )
    )
    try:
        srv = start_server(root / "home", database, root / "server.log")
        try:
            yield srv
        finally:
            stop_server(srv)
    finally:
        reset_engines()
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


def tiny_train_spec(**training: Any) -> dict[str, Any]:
    """The smallest training spec of tests/nas/train (mbv3_tiny at 8 px on 200 digits), as a
    client submits it: no `output` (the service owns it), the checkpoint registered."""
    from tests.nas.train.conftest import tiny_spec_dict

    spec = tiny_spec_dict(Path("unused"), **training)
    del spec["output"]
    return {**spec, "name": "api-train", "register_checkpoint": True}


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


@pytest.fixture(scope="session")
def supernet_job(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished 8-trial search of an untrained mbv3_tiny supernet (accuracy vs macs, plus
    params and activation_bytes), owned by alice, written straight into the server's database
    (faster than a train job through the API); its id and a trial on the front."""
    import torch

    import search_spaces as ss
    from nas.search import pareto_front, run_search
    from nas.train import load_dataset, parse_spec, save_checkpoint

    root = tmp_path_factory.mktemp("run")
    spec = parse_spec(
        {
            "name": "api-export",
            "space": {"name": "mbv3_tiny", "overrides": OVERRIDES},
            "data": {"kind": "digits", "max_samples": 200, "calib_size": 32},
            "training": {"epochs": 1, "batch_size": 16, "bn_calib_batches": 1},
            "workers": 1,
            "output": str(root),
            "seed": 0,
            "register_checkpoint": False,
        }
    )
    space = ss.get_space("mbv3_tiny", **OVERRIDES)
    torch.manual_seed(0)
    net = space.build_supernet()
    meta = {
        "space": space.spec(),
        "spec": spec.model_dump(mode="json"),
        "data": load_dataset(spec.data).describe(),
        "progress": {"step": 1, "epoch": 1, "complete": True},
    }
    save_checkpoint(root / "checkpoints", 1, net, None, meta)  # type: ignore[arg-type]
    try:
        result = run_search(
            {
                "space": {"name": "mbv3_tiny", "overrides": OVERRIDES},
                "evaluator": {
                    "kind": "supernet",
                    "checkpoint": str(root),
                    "bn_calib_batches": 1,
                    "max_eval_samples": 64,
                },
                "objectives": [
                    {"name": "accuracy", "direction": "maximize"},
                    {"name": "macs", "direction": "minimize"},
                ],
                "metrics": [
                    {"name": "params", "direction": "minimize"},
                    {"name": "activation_bytes", "direction": "minimize"},
                ],
                "sampler": {"name": "random"},
                "budget": {"trials": SUPERNET_TRIALS, "seed": 0},
            },
            url=server.url,
            owner="alice",
        )
        assert result.status == "finished"
        from nas.db import get_engine

        front = pareto_front(result.job_id, engine=get_engine(server.url))
    finally:
        reset_engines()
    return {"id": result.job_id, "trial": front[0]}
