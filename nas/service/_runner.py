"""Running a pending search job in its own process: ``python -m nas.service._runner JOB_ID``.

The service starts one such process per submitted job (`Launcher`), so that a driver that
crashes (or a runaway evaluation) never takes the server down. The child reads the database URL
from its environment (``NAS_DATABASE_URL`` / ``NAS_HOME``), like every other entry point, and its
output goes to ``$NAS_HOME/jobs/<job>.log``. SIGTERM (the server shutting down) stops the driver:
the job is marked failed with a note, and ``nas search --resume JOB`` finishes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["Launcher", "main"]


class Launcher:
    """Starts job runner processes and remembers them (in memory only) until they exit."""

    def __init__(self, home: Path, database_url: str | None = None) -> None:
        self.home, self.database_url = home, database_url
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, job_id: str) -> int:
        """Start the runner of `job_id`; returns its pid."""
        logs = self.home / "jobs"
        logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.database_url:
            env["NAS_DATABASE_URL"] = self.database_url
        env["NAS_HOME"] = str(self.home)
        with open(logs / f"{job_id}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nas.service._runner", job_id],
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

    def _reap(self) -> None:
        for jid, p in list(self._procs.items()):
            if p.poll() is not None:
                del self._procs[jid]

    def running(self) -> dict[str, int]:
        """job id -> pid of the runners still alive."""
        with self._lock:
            self._reap()
            return {j: p.pid for j, p in self._procs.items()}

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every live runner and wait for them (SIGKILL after `timeout`)."""
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(
        f"stopped by signal {signum} (the server shut down); resume with `nas search --resume JOB`"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nas.service._runner JOB_ID", file=sys.stderr)
        return 2
    job_id = args[0]
    signal.signal(signal.SIGTERM, _stop)
    from nas.search._driver import run_job

    try:
        result = run_job(job_id)
    except (KeyError, ValueError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {text}", file=sys.stderr)
        return 2
    print(
        f"job {result.job_id}: {result.status}, {result.trials} trials, {result.evaluations} expensive "
        f"evaluations, {result.failed} failed, {result.seconds:.1f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
