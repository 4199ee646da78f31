"""Service restarts mid-search, on PostgreSQL (the multi-process database): killed (SIGKILL) with
its runner killed too or still running, and stopped gracefully (its runner gets SIGTERM). After a
restart on the same database and NAS_HOME, the job finishes with exactly its budget of expensive
evaluations, none lost or duplicated (`check_job` of tests/nas/search). Also: how a runner is
recognised as gone (a pid on this host, a heartbeat from elsewhere)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nas.db._jobs import Job
from nas.service._recovery import STALE_AFTER_S, runner_gone
from nas.service._runner import runner_alive
from tests.nas.search.conftest import check_job, make_db_url, nb201_accuracy  # noqa: F401 - a fixture
from tests.nas.service.conftest import (
    Server,
    reset_engines,
    start_server,
    stop_server,
    tiny_train_spec,
    wait_for,
)

BUDGET = 60


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL schema of this test's own (skipped when PostgreSQL is unreachable)."""
    yield from make_db_url("postgresql", tmp_path)


class Restart:
    """One job's servers over one database and NAS_HOME; stops what it started."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.home, self.log = url, root / "home", root / "server.log"
        self.servers: list[Server] = []
        self.job, self.runner = "", 0

    def start(self) -> Server:
        self.servers.append(start_server(self.home, self.url, self.log))
        return self.servers[-1]

    def submit_and_wait_midway(self, spec: dict[str, Any]) -> dict[str, Any]:
        with self.servers[-1].client("alice") as c:
            r = c.post("/api/jobs/search", json=spec)
            assert r.status_code == 201, r.text
            self.job = r.json()["id"]
            info = wait_for(c, self.job, ("running",), timeout=60, until=lambda j: j["trials"] > 0)
        assert info["trials"] < BUDGET, "the search ended before it could be interrupted"
        self.runner = info["runner_pid"]
        assert self.runner and runner_alive(self.runner, self.job)
        return info

    def finish(self) -> dict[str, Any]:
        with self.servers[-1].client("alice") as c:
            return wait_for(c, self.job, ("finished",), timeout=180)

    def job_log(self) -> str:
        path = self.home / "jobs" / f"{self.job}.log"
        return path.read_text(errors="replace") if path.exists() else "(no runner log)"

    def close(self) -> None:
        for srv in self.servers:
            stop_server(srv)
        if self.runner and runner_alive(self.runner, self.job):  # never adopted: ours to stop
            os.kill(self.runner, signal.SIGKILL)
        reset_engines()


@pytest.fixture
def restart(pg_url: str, tmp_path: Path) -> Iterator[Restart]:
    r = Restart(pg_url, tmp_path)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def long_spec(make_spec: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The search tests' metrics (what `check_job` expects), with a budget long enough to stop."""
    return make_spec(
        trials=BUDGET,
        name="restart",
        metrics=[{"name": "macs", "direction": "minimize"}, {"name": "params", "direction": "minimize"}],
    )


def _wait_dead(pid: int, job: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while runner_alive(pid, job):
        assert time.monotonic() < deadline, f"runner {pid} of {job} still alive"
        time.sleep(0.1)


def test_a_runner_is_recognised_by_pid_and_command_line() -> None:
    fake = [sys.executable, "-c", "import time; time.sleep(60)", "nas.service._runner", "search-aaa"]
    proc = subprocess.Popen(fake)
    try:
        deadline = time.monotonic() + 20
        while not runner_alive(proc.pid, "search-aaa"):  # /proc shows the new command line after exec
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not runner_alive(proc.pid, "search-bbb")  # another job's runner
        assert not runner_alive(os.getpid(), "search-aaa")  # a recycled pid: another program
    finally:
        proc.kill()
        proc.wait()
    assert not runner_alive(proc.pid, "search-aaa")


def test_runner_gone_by_pid_here_and_by_heartbeat_elsewhere() -> None:
    now = dt.datetime.now(dt.timezone.utc)
    old, fresh = now - dt.timedelta(seconds=STALE_AFTER_S + 1), now - dt.timedelta(seconds=5)
    job = Job("search-aaa", "search", "x", "running", "alice", {}, [], "search-aaa", {}, None, old, old)
    here = dataclasses.replace(job, runner_host="this-host", runner_pid=os.getpid(), heartbeat_at=fresh)
    assert runner_gone(here, "this-host", now)  # a fresh beat does not help: the pid is not its runner
    elsewhere = dataclasses.replace(here, runner_host="other-host")
    assert not runner_gone(elsewhere, "this-host", now)
    assert runner_gone(dataclasses.replace(elsewhere, heartbeat_at=old), "this-host", now)
    assert runner_gone(job, "this-host", now)  # no runner recorded, no beat for a minute
    assert not runner_gone(dataclasses.replace(job, updated_at=fresh), "this-host", now)


@pytest.mark.slow
@pytest.mark.parametrize("runner_survives", [False, True], ids=["runner-killed", "runner-survives"])
def test_killed_service_restarts_and_the_job_finishes_exactly(
    restart: Restart,
    long_spec: dict[str, Any],
    nb201_accuracy: dict[str, float],
    runner_survives: bool,
) -> None:
    from nas.db import get_engine
    from nas.db._jobs import get_job

    restart.start()
    restart.submit_and_wait_midway(long_spec)
    stop_server(restart.servers[-1], signal.SIGKILL)
    if runner_survives:
        assert runner_alive(restart.runner, restart.job)  # its own session: the kill missed it
    else:  # the whole host crashed: the job is left running with a dead runner
        os.kill(restart.runner, signal.SIGKILL)
        _wait_dead(restart.runner, restart.job)
        job = get_job(restart.job, engine=get_engine(restart.url))
        assert job.status == "running" and job.runner_pid == restart.runner

    srv = restart.start()
    with srv.client("alice") as c:
        now = c.get(f"/api/jobs/{restart.job}").json()
    if now["status"] == "running" and runner_survives:
        assert now["runner_pid"] == restart.runner  # adopted, not doubled
    info = restart.finish()
    log = restart.job_log()
    assert info["error"] is None, log
    check_job(restart.job, restart.url, BUDGET, nb201_accuracy)
    starts = [line for line in log.splitlines() if line.startswith("runner ")]
    assert len(starts) == (1 if runner_survives else 2), log
    assert runner_survives or starts[-1].endswith("(resumed)"), log
    assert log.count(f"job {restart.job}: finished") == 1, log


@pytest.mark.slow
def test_graceful_stop_leaves_the_job_pending_and_a_restart_finishes_it(
    restart: Restart, long_spec: dict[str, Any], nb201_accuracy: dict[str, float]
) -> None:
    from nas.db import get_engine
    from nas.db._jobs import get_job

    restart.start()
    restart.submit_and_wait_midway(long_spec)
    stop_server(restart.servers[-1], signal.SIGTERM)  # the server stops its runner with SIGTERM
    _wait_dead(restart.runner, restart.job)
    job = get_job(restart.job, engine=get_engine(restart.url))
    log = restart.job_log()
    assert job.status == "pending" and job.error is None, log
    assert "left pending for the next runner" in log

    restart.start()
    info = restart.finish()
    log = restart.job_log()
    assert info["error"] is None, log
    check_job(restart.job, restart.url, BUDGET, nb201_accuracy)
    assert len([line for line in log.splitlines() if line.startswith("runner ")]) == 2, log
    assert log.count(f"job {restart.job}: finished") == 1, log


@pytest.mark.slow
def test_graceful_stop_mid_training_resumes_from_its_checkpoint(restart: Restart) -> None:
    """A train job stopped with the server continues from its last checkpoint after a restart."""
    from nas.db import get_artifact, get_engine
    from nas.db._jobs import get_job

    spec = tiny_train_spec(epochs=8, checkpoint_every_steps=2, keep_checkpoints=2)
    with restart.start().client("alice") as c:
        r = c.post("/api/jobs/train", json=spec)
        assert r.status_code == 201, r.text
        restart.job = r.json()["id"]
        info = wait_for(c, restart.job, ("running",), timeout=120,
                        until=lambda j: (j["train"] or {}).get("step", 0) >= 4)
    restart.runner = info["runner_pid"]
    assert info["train"]["step"] < info["train"]["total_steps"], "trained to the end before the stop"
    stop_server(restart.servers[-1], signal.SIGTERM)
    _wait_dead(restart.runner, restart.job)
    job = get_job(restart.job, engine=get_engine(restart.url))
    assert job.status == "pending" and job.error is None, restart.job_log()

    restart.start()
    info = restart.finish()
    t = info["train"]
    assert 0 < t["resumed_from"] < t["step"] == t["total_steps"], restart.job_log()
    art = get_artifact(t["artifact_id"], engine=get_engine(restart.url))
    assert art.path == t["checkpoint"] and art.sha256 == t["sha256"]
    assert "left pending for the next runner" in restart.job_log()
