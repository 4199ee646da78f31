"""Running a job in its own process: ``python -m nas.service._runner [--resume] JOB_ID``.

The service starts one such process per job (`Launcher`), so that a driver that crashes (or a
runaway evaluation) never takes the server down. The child reads the database URL from its
environment (``NAS_DATABASE_URL`` / ``NAS_HOME``), like every other entry point, and its output
goes to ``$NAS_HOME/jobs/<job>.log``. It dispatches on the job's kind: a search job runs its
driver (`resume_search` continues the job's Optuna study, so a job with trials already is
continued, not restarted), a train job runs `nas.train.train` (which resumes from the run
directory's last checkpoint).

Claiming a job is one compare-and-set that also records this runner (host, pid) on it: pending
-> running, or with ``--resume`` also running -> running (a job whose runner died). Endings:
done -> finished; a real error -> failed (with the reason); SIGTERM (the server shutting down)
-> *pending* again, so the service's next start gives it a new runner that continues it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

__all__ = ["RUNNABLE_KINDS", "Launcher", "Stopped", "main", "runner_alive"]

RUNNABLE_KINDS = ("search", "train")
_MODULE = "nas.service._runner"


def runner_alive(pid: int, job_id: str) -> bool:
    """Whether process `pid` on this host is alive and is the runner of `job_id` (its command
    line names this module and the job, so a recycled pid does not count). Without /proc (not
    Linux), any live process with that pid counts."""
    proc = Path("/proc")
    if not proc.is_dir():
        from nas.search._coord import pid_alive

        return pid_alive(pid)
    try:
        args = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _MODULE.encode() in args and job_id.encode() in args  # a zombie's cmdline is empty


class Launcher:
    """Starts job runner processes and remembers them (in memory only) until they exit; also
    adopts runners of an earlier server process of this host that still run."""

    def __init__(self, home: Path, database_url: str | None = None, max_runners: int | None = None) -> None:
        self.home, self.database_url = home, database_url
        self.max_runners = max_runners
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._adopted: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self, job_id: str, *, resume: bool = False) -> int:
        """Start the runner of `job_id` (with ``--resume`` if `resume`); returns its pid."""
        logs = self.home / "jobs"
        logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.database_url:
            env["NAS_DATABASE_URL"] = self.database_url
        env["NAS_HOME"] = str(self.home)
        with open(logs / f"{job_id}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", _MODULE, *(["--resume"] if resume else []), job_id],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C meant for the server does not hit its jobs first
            )
        with self._lock:
            self._reap()
            self._procs[job_id] = proc
        return proc.pid

    def adopt(self, job_id: str, pid: int) -> None:
        """Count `pid` (a live runner of `job_id` started by an earlier server) as one of ours."""
        with self._lock:
            self._adopted[job_id] = pid

    def _reap(self) -> None:
        for jid, p in list(self._procs.items()):
            if p.poll() is not None:
                del self._procs[jid]
        for jid, pid in list(self._adopted.items()):
            if not runner_alive(pid, jid):
                del self._adopted[jid]

    def free_slots(self) -> int:
        """Runners that may still start under `max_runners` (a large number when unlimited)."""
        if self.max_runners is None:
            return 1 << 30
        return max(0, self.max_runners - len(self.running()))

    def running(self) -> dict[str, int]:
        """job id -> pid of the runners still alive."""
        with self._lock:
            self._reap()
            return {**self._adopted, **{j: p.pid for j, p in self._procs.items()}}

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every live runner and wait for them (SIGKILL after `timeout`). Each leaves
        its job pending, for the next start to continue."""
        with self._lock:
            procs, adopted = list(self._procs.values()), dict(self._adopted)
            self._procs.clear()
            self._adopted.clear()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for jid, pid in adopted.items():
            if runner_alive(pid, jid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        deadline = time.monotonic() + timeout
        for jid, pid in adopted.items():
            while runner_alive(pid, jid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if runner_alive(pid, jid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------- the child
class Stopped(SystemExit):
    """Raised in the runner by SIGTERM: the job is to be continued later, not failed."""


def _stop(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough; let the clean-up run
    raise Stopped(f"stopped by signal {signum} (the server shut down)")


def _claim(job_id: str, resume: bool, engine: Engine) -> None:
    """Take the job for this process (see the module docstring).

    Raises:
        ValueError: the job is in no state this runner may take (cancelled, finished, ...).
    """
    from nas.db._jobs import get_job, update_job

    allowed = ("pending", "running") if resume else ("pending",)
    me = (socket.gethostname(), os.getpid())
    if not update_job(job_id, status="running", runner=me, expect=allowed, engine=engine):
        status = get_job(job_id, engine=engine).status
        raise ValueError(
            f"Job {job_id!r} is {status}; a runner takes only a pending job"
            + (" or a running one whose runner died." if resume else " (--resume: also a running one).")
        )


def _back_to_pending(job_id: str, engine: Engine, *, running: bool) -> None:
    """After a SIGTERM: the job waits for the next runner, with no error, if it is marked failed
    for this very stop (by its search driver) or, with `running`, still running (nobody else
    settles it). Any other status is kept (e.g. running: other drivers of the search carry on)."""
    from nas.db._models import JobRow

    stopped_here = sa.and_(JobRow.status == "failed", JobRow.error.like(f"{Stopped.__name__}:%"))
    mine = sa.or_(stopped_here, JobRow.status == "running") if running else stopped_here
    q = sa.update(JobRow).where(JobRow.id == job_id, mine).values(status="pending", error=None)
    with engine.begin() as conn:
        conn.execute(q)


def _search_line(result: Any) -> str:
    return (
        f"job {result.job_id}: {result.status}, {result.trials} trials, {result.evaluations} expensive "
        f"evaluations, {result.failed} failed, {result.seconds:.1f}s"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    resume = bool(args) and args[0] == "--resume"
    args = args[1:] if resume else args
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m nas.service._runner [--resume] JOB_ID", file=sys.stderr)
        return 2
    job_id = args[0]
    from nas.db import get_engine
    from nas.db._jobs import get_job, update_job

    engine = get_engine()
    claimed = driven = False  # driven: the search driver settles the job's status itself
    try:
        signal.signal(signal.SIGTERM, _stop)
        kind = get_job(job_id, engine=engine).kind
        if kind not in RUNNABLE_KINDS:
            allowed = ", ".join(RUNNABLE_KINDS)
            raise ValueError(f"Job {job_id!r} is a {kind!r} job; runners run {allowed} jobs.")
        _claim(job_id, resume, engine)
        claimed = True
        print(f"runner {os.getpid()} on {socket.gethostname()}: {kind} job {job_id}"
              + (" (resumed)" if resume else ""), flush=True)
        if kind == "train":
            from nas.service._train import run_train_job

            line = run_train_job(job_id, engine)
        else:
            from nas.search._jobs import resume_search

            driven = True
            line = _search_line(resume_search(job_id))
    except Stopped as exc:
        if claimed:
            _back_to_pending(job_id, engine, running=not driven)
        print(f"job {job_id}: {exc}; left pending for the next runner", flush=True)
        return 143
    except BaseException as exc:
        if claimed and not driven:  # whatever failed (an import, training), the job must not look alive
            error = f"{type(exc).__name__}: {exc}"[:2000]
            update_job(job_id, status="failed", error=error, expect=("running",), engine=engine)
        if not isinstance(exc, (KeyError, ValueError)):
            raise
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {text}", file=sys.stderr)
        return 2
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
