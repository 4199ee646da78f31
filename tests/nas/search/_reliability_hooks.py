"""Fault injection for the reliability tests and `benchmarks/reliability.py`.

Slowed table evaluations are installed in processes the test does not run itself: Ray evaluator
workers (``worker_process_setup_hook``, see `ray_runtime_env`) and driver subprocesses (this file
run as a script: the `nas` CLI). The real evaluator still answers; each evaluation first
announces its process id in ``$NAS_TEST_SLOW_DIR`` (so that the process can be killed
mid-evaluation) and sleeps ``$NAS_TEST_SLOW_S`` seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def slow_table_evaluations() -> None:
    from nas.search._evaluators import TableEvaluator

    real = TableEvaluator.evaluate
    delay = float(os.environ.get("NAS_TEST_SLOW_S", "0.5"))
    announce = os.environ.get("NAS_TEST_SLOW_DIR")

    def slow(self: TableEvaluator, arch: Any) -> dict[str, float]:
        if announce:
            Path(announce, str(os.getpid())).touch()
        time.sleep(delay)
        return real(self, arch)

    TableEvaluator.evaluate = slow  # type: ignore[method-assign]


def ray_runtime_env(announce: Path, slow_s: float) -> dict[str, Any]:
    """``ray.init(runtime_env=...)`` whose workers evaluate slowly and announce themselves."""
    return {
        "worker_process_setup_hook": "_reliability_hooks.slow_table_evaluations",
        "env_vars": {"PYTHONPATH": str(HERE), "NAS_TEST_SLOW_DIR": str(announce), "NAS_TEST_SLOW_S": str(slow_s),
                     "OMP_NUM_THREADS": "1"},
    }


def nas_process(*args: Any, url: str, home: Path, slow_s: float | None = None) -> subprocess.Popen[str]:
    """The `nas` CLI in its own process on database `url` (evaluations slowed by `slow_s` s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NAS_", "RAY_ADDRESS"))}
    env.update(NAS_DATABASE_URL=url, NAS_HOME=str(home), OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0",
               COLUMNS="200")
    cmd = [sys.executable, "-m", "nas.cli"]
    if slow_s is not None:
        cmd = [sys.executable, str(Path(__file__).resolve())]
        env["NAS_TEST_SLOW_S"] = str(slow_s)
    return subprocess.Popen([*cmd, *map(str, args)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def pending_job(url: str, spec: dict[str, Any], name: str = "reliability") -> str:
    """A pending job as the service creates it, plus Optuna's tables (so that drivers starting
    together do not race to create them). Returns its id."""
    from nas.db import _jobs as jobs_db
    from nas.db._engine import get_engine
    from nas.search import optuna_storage, parse_search_spec
    from nas.search._jobs import check_search_spec

    parsed = parse_search_spec(spec)
    metrics = check_search_spec(parsed)
    job = jobs_db.create_job(kind="search", name=name, spec=parsed.model_dump(mode="json"),
                             metrics=[m.to_dict() for m in metrics], engine=get_engine(url))
    optuna_storage(url).engine.dispose()
    return job.id


class BackendTerminator(threading.Thread):
    """Once job `job_id` has `after` indexed trials, ``pg_terminate_backend`` every connection
    named ``nas-driver-<job_id>``, `rounds` times every `every` seconds. `terminated`: backends
    ended per round."""

    def __init__(self, url: str, job_id: str, *, after: int = 5, rounds: int = 8, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url, self.job_id, self.after, self.rounds, self.every = url, job_id, after, rounds, every
        self.terminated: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        import sqlalchemy as sa

        admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        kill = sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = :app AND pid <> pg_backend_pid()")
        indexed = sa.text("SELECT count(*) FROM nas_trials WHERE job_id = :j")
        try:
            while not self.done.wait(0.1):
                with admin.connect() as c:
                    if c.execute(indexed, {"j": self.job_id}).scalar_one() >= self.after:
                        break
            while len(self.terminated) < self.rounds and not self.done.wait(self.every):
                with admin.connect() as c:
                    rows = c.execute(kill, {"app": f"nas-driver-{self.job_id}"[:63]})
                    self.terminated.append(sum(bool(r[0]) for r in rows))
        finally:
            admin.dispose()

    def stop(self) -> int:
        """Stop; returns the number of backends terminated."""
        self.done.set()
        self.join(timeout=30)
        return sum(self.terminated)


class EvaluatorKiller(threading.Thread):
    """SIGKILLs `count` evaluating processes, each `delay` s after it announced an evaluation in
    `announce` (see `slow_table_evaluations`). `killed`: their pids."""

    def __init__(self, announce: Path, count: int = 1, delay: float = 0.3, timeout: float = 300) -> None:
        super().__init__(daemon=True)
        self.announce, self.count, self.delay, self.timeout = announce, count, delay, timeout
        self.killed: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while len(self.killed) < self.count and time.monotonic() < deadline and not self.done.is_set():
            fresh = [p for p in self.announce.iterdir() if int(p.name) not in self.killed]
            if fresh:
                pid = int(min(fresh, key=lambda p: p.stat().st_mtime).name)
                time.sleep(self.delay)
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                except ProcessLookupError:
                    pass
                for p in self.announce.iterdir():  # later evaluations announce afresh
                    p.unlink(missing_ok=True)
            time.sleep(0.05)

    def stop(self) -> list[int]:
        self.done.set()
        self.join(timeout=10)
        return self.killed


def kill_when_indexed(proc: subprocess.Popen[str], url: str, at: int, timeout: float = 300) -> str | None:
    """SIGKILL `proc` (a driver creating the database's only job) once its job has `at` indexed
    trials; returns the job id (None: it ended first)."""
    from nas.db import _jobs as jobs_db
    from nas.db._engine import get_engine

    engine = get_engine(url)
    deadline = time.monotonic() + timeout
    job_id = None
    while time.monotonic() < deadline and proc.poll() is None:
        jobs = jobs_db.list_jobs(engine=engine)
        if jobs and len(jobs_db.trial_numbers(jobs[0].id, engine=engine)) >= at:
            job_id = jobs[0].id
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return job_id


if __name__ == "__main__":  # the `nas` CLI with slowed evaluations
    slow_table_evaluations()
    from nas.cli import main

    sys.argv = ["nas", *sys.argv[1:]]
    main()
