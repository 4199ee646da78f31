"""Search jobs on a real two-node Ray cluster on loopback, through the Ray Jobs API: `nas submit`
(the CLI, a subprocess) and the REST service with NAS_RAY_ADDRESS, both over PostgreSQL; and the
rules for addresses and for databases a cluster can reach.

The cluster is this module's own (its own temp dir and ports; other Ray instances on the machine
are left alone) and is stopped after it by killing exactly its processes.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nas.service import ServiceSettings
from nas.service._ray_jobs import cluster_database_url, normalize_address
from tests.nas.service.conftest import (
    REPO,
    Server,
    _free_port,
    reset_engines,
    start_server,
    stop_server,
    wait_for,
)

RAY = Path(sys.executable).with_name("ray")
_ENV_DROP = ("RAY_ADDRESS", "NAS_RAY_ADDRESS", "NAS_DATABASE_URL", "NAS_API_TOKEN")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


# ------------------------------------------------------------------------------ the cluster
@dataclass
class Cluster:
    temp_dir: Path
    gcs: str
    dashboard: str

    def client(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard)

    def wait_ended(self, job_id: str, timeout: float = 300) -> str:
        """Ray's final status of a job (its driver may outlive the job's last database write)."""
        client, deadline = self.client(), time.monotonic() + timeout
        while (status := client.get_job_status(job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.monotonic() < deadline, f"Ray job {job_id} still {status} after {timeout} s"
            time.sleep(0.5)
        return str(status.value)


def _node_ports() -> list[str]:
    """Ports of one node of our own: every fixed Ray default would collide with other clusters."""
    names = (
        "--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port",
    )
    out = [x for n in names for x in (n, str(_free_port()))]
    low = random.randrange(20_000, 32_000, 100)  # below the ephemeral range of the others
    return [*out, "--min-worker-port", str(low), "--max-worker-port", str(low + 99)]


def _descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, []))
    return out


def _cluster_pids(temp_dir: Path) -> set[int]:
    """Processes whose command line names the cluster's temp dir, and all their descendants
    (workers, the job supervisor, our drivers)."""
    mine = set()
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(temp_dir).encode() in cmd.read_bytes():
                mine.add(int(cmd.parent.name))
        except OSError:
            continue
    return _descendants(mine) - {os.getpid()}


def _kill_cluster(temp_dir: Path) -> None:
    pids = _cluster_pids(temp_dir)
    for sig, wait in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 3.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
        pids = {p for p in pids | _cluster_pids(temp_dir) if Path(f"/proc/{p}").exists()}
        if not pids:
            return


def _alive_nodes(dashboard: str) -> int:
    from ray.util.state import list_nodes

    try:
        return len(list_nodes(address=dashboard, filters=[("state", "=", "ALIVE")], timeout=10))
    except Exception:  # noqa: BLE001 - the dashboard may not answer yet
        return 0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head (`ray start --head`) and a second node (`ray start --address`), 1 CPU each."""
    temp_dir = Path(f"/tmp/rc_{uuid.uuid4().hex[:6]}")  # Unix socket paths must stay short
    gcs_port, dash_port = _free_port(), _free_port()
    cl = Cluster(temp_dir, f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dash_port}")
    common = ["--num-cpus", "1", "--temp-dir", str(temp_dir), "--disable-usage-stats",
              "--node-ip-address", "127.0.0.1", "--object-store-memory", str(100 * 2**20)]
    head = [str(RAY), "start", "--head", "--port", str(gcs_port), "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dash_port), "--include-dashboard", "true",
            "--ray-client-server-port", str(_free_port()), *common, *_node_ports()]
    worker = [str(RAY), "start", "--address", cl.gcs, *common, *_node_ports()]
    env = _env(RAY_DASHBOARD_STARTUP_TIMEOUT_S="300")  # Ray's 60 s are short on a loaded machine
    try:
        for cmd in (head, worker):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd="/tmp")
            assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}"
        deadline = time.monotonic() + 120
        while (n := _alive_nodes(cl.dashboard)) < 2:
            assert time.monotonic() < deadline, f"{n} alive node(s) after 120 s, expected 2"
            time.sleep(1)
        yield cl
    finally:
        _kill_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


# ------------------------------------------------------------------------- database, spec, API
@pytest.fixture(scope="module")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL schema of the module's own (dropped after it)."""
    from tests.nas.search.conftest import make_db_url

    yield from make_db_url("postgresql", tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nas_home")


def _nas(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "nas.cli", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cli_job(cluster: Cluster, pg_url: str, home: Path, make_spec: Callable[..., dict[str, Any]]) -> str:
    """`nas submit --wait` of an 8-trial tabular search, 2 parallel evaluations (Ray workers on
    the cluster's nodes); the job id."""
    spec = make_spec(trials=8, name="cluster-cli", budget={"trials": 8, "parallelism": 2, "seed": 0})
    path = home / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = _nas("submit", str(path), "--address", cluster.dashboard, "--wait", "--poll", "0.5",
               env=_env(NAS_DATABASE_URL=pg_url, NAS_HOME=str(home)))
    text = out.stdout + out.stderr
    found = re.search(r"job (search-[0-9a-f]{12}): submitted to the Ray cluster at ", text)
    assert out.returncode == 0 and found, text[-4000:]
    assert "finished, 8 trials" in text, text[-4000:]
    return found.group(1)


@pytest.fixture(scope="module")
def server(cluster: Cluster, pg_url: str, home: Path) -> Iterator[Server]:
    """The REST service over the same PostgreSQL, submitting search jobs to the cluster."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAS_RAY_ADDRESS", cluster.dashboard)
        srv = start_server(home, pg_url, home / "server.log")
    try:
        yield srv
    finally:
        stop_server(srv)
        reset_engines()


# ----------------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_submit_runs_on_the_cluster_and_the_api_sees_it(
    cli_job: str, cluster: Cluster, server: Server
) -> None:
    assert cluster.wait_ended(cli_job) == "SUCCEEDED"
    with server.client("root") as api:  # CLI jobs have no owner: an admin sees them
        info = api.get(f"/api/jobs/{cli_job}").json()
        assert (info["status"], info["backend"], info["trials"]) == ("finished", "ray", 8), info
        assert info["ray_address"] == cluster.dashboard and info["runner_host"], info
        trials = api.get(f"/api/jobs/{cli_job}/trials").json()
        assert sorted(t["number"] for t in trials) == list(range(8))
        front = api.get(f"/api/jobs/{cli_job}/pareto").json()
        assert front and all(t["feasible"] for t in front), front


@pytest.mark.slow
def test_api_submits_to_the_cluster(
    cluster: Cluster, server: Server, make_spec: Callable[..., dict[str, Any]]
) -> None:
    with server.client("alice") as api:
        r = api.post("/api/jobs/search", json=make_spec(trials=6, name="cluster-api"))
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["backend"] == "ray" and job["status"] in ("pending", "running"), job
        done = wait_for(api, job["id"], ("finished",), timeout=400)
        assert done["trials"] == 6 and done["ray_address"] == cluster.dashboard, done
        assert [j["status"] for j in api.get("/api/jobs").json() if j["id"] == job["id"]] == ["finished"]
    assert cluster.wait_ended(job["id"]) == "SUCCEEDED"


@pytest.mark.slow
def test_cancel_stops_a_cluster_job_gracefully(
    cluster: Cluster, server: Server, make_spec: Callable[..., dict[str, Any]]
) -> None:
    """The driver sees the cancel between rounds and ends cleanly: Ray says SUCCEEDED, the job
    stays cancelled with the trials it finished."""
    with server.client("alice") as api:
        job = api.post("/api/jobs/search", json=make_spec(trials=5000, name="cluster-cancel")).json()
        wait_for(api, job["id"], ("running",), timeout=400, until=lambda j: j["trials"] > 0)
        r = api.post(f"/api/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert cluster.wait_ended(job["id"]) == "SUCCEEDED"
        info = api.get(f"/api/jobs/{job['id']}").json()
        assert info["status"] == "cancelled" and 0 < info["trials"] < 5000, info


@pytest.mark.slow
def test_a_driver_that_dies_unrecorded_fails_the_job(cluster: Cluster, pg_url: str, home: Path) -> None:
    """The driver finds no job (it was given another database), exits, and Ray says FAILED while
    our database still says pending: `nas status` reconciles it to failed with Ray's log."""
    from nas.db._jobs import create_job, get_job
    from nas.service._ray_jobs import submit

    job = create_job(kind="search", name="lost", spec={}, backend="ray", ray_address=cluster.dashboard,
                     engine=_engine(pg_url))
    elsewhere = tempfile.mkdtemp(prefix="nas-elsewhere-", dir=home)
    submit(job, database_url=f"sqlite:///{elsewhere}/other.db", home=home, engine=_engine(pg_url))
    assert cluster.wait_ended(job.id) == "FAILED"
    assert get_job(job.id, engine=_engine(pg_url)).status == "pending"
    out = _nas("status", job.id, env=_env(NAS_DATABASE_URL=pg_url, NAS_HOME=str(home)))
    assert out.returncode == 0 and "status: failed" in out.stdout, out.stdout + out.stderr
    error = get_job(job.id, engine=_engine(pg_url)).error or ""
    assert "Ray job failed" in error and f"Unknown job {job.id!r}" in error, error


def test_an_unreachable_address_exits_2_and_creates_nothing(
    tmp_path: Path, make_spec: Callable[..., dict[str, Any]]
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(make_spec(trials=4)))
    address = f"http://127.0.0.1:{_free_port()}"
    db = tmp_path / "nas.db"
    out = _nas("submit", str(path), "--address", address,
               env=_env(NAS_DATABASE_URL=f"sqlite:///{db}", NAS_HOME=str(tmp_path)))
    assert out.returncode == 2, out.stdout + out.stderr
    line = out.stderr.strip()
    assert line.startswith("error: Cannot reach the Ray Jobs API at " + address), line
    assert "ray start --head" in line and "\n" not in line, line
    assert not db.exists()  # no job was created


@pytest.mark.parametrize(
    ("given", "url"),
    [("127.0.0.1:8265", "http://127.0.0.1:8265"), ("https://head.example:443/", "https://head.example:443")],
)
def test_addresses_are_dashboard_urls(given: str, url: str) -> None:
    assert normalize_address(given) == url


@pytest.mark.parametrize("bad", ["ray://head:10001", "http://", "http://head:port", "  "])
def test_a_bad_address_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad)) + ".*http://HEAD:8265"):
        normalize_address(bad)


def test_a_cluster_elsewhere_needs_a_database_it_can_reach(tmp_path: Path) -> None:
    far, near = "http://10.20.30.40:8265", "http://127.0.0.1:8265"
    sqlite = f"sqlite:///{tmp_path.name}/nas.db"  # relative: made absolute for the driver
    assert cluster_database_url(sqlite, near) == f"sqlite:///{Path(tmp_path.name).resolve()}/nas.db"
    with pytest.raises(ValueError, match="SQLite file on this machine.*PostgreSQL"):
        cluster_database_url(sqlite, far)
    local_pg = "postgresql+psycopg://u@localhost:5432/nas"
    assert cluster_database_url(local_pg, near) == local_pg
    with pytest.raises(ValueError, match="loopback.*10.20.30.40"):
        cluster_database_url(local_pg, far)
    remote_pg = "postgresql+psycopg://u:secret@10.20.30.50:5432/nas"
    assert cluster_database_url(remote_pg, far) == remote_pg
    settings = ServiceSettings.from_env(
        env={"NAS_API_TOKEN": "t", "NAS_DATABASE_URL": sqlite, "NAS_RAY_ADDRESS": far}
    )
    assert settings.ray_address == far
    with pytest.raises(ValueError, match="SQLite"):
        settings.check()


def _engine(url: str) -> Any:
    from nas.db import get_engine

    return get_engine(url)
