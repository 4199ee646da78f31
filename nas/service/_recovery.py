"""What the service does with its local jobs when it starts.

* pending: never started (the server died between submission and launch) or left by a runner
  stopped with the server (SIGTERM): a new runner takes it, and continues where it stopped.
* running with a live runner (the server was killed; runners live in their own sessions and
  carry on): adopted, left alone.
* running with its runner gone: resumed by a ``--resume`` runner. Gone means, for a runner on
  this host, that its pid is dead or belongs to another program; for a runner elsewhere, or one
  not recorded, that the job's heartbeat (or last update) is older than `STALE_AFTER_S`.

Ray jobs (backend ``ray``) are reconciled elsewhere.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
from dataclasses import dataclass, field

from sqlalchemy import Engine

from nas.db._jobs import Job, list_jobs, update_job
from nas.service._runner import RUNNABLE_KINDS, Launcher, runner_alive

__all__ = ["STALE_AFTER_S", "Recovery", "recover_jobs", "runner_gone", "start_pending"]

STALE_AFTER_S = 60.0
"""A job whose runner is not on this host is presumed dead after this long without a heartbeat
(its driver beats every 5 s)."""

log = logging.getLogger("nas.service")


@dataclass
class Recovery:
    """Job ids by what `recover_jobs` did with them."""

    started: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)


def runner_gone(job: Job, host: str, now: dt.datetime, stale_after: float = STALE_AFTER_S) -> bool:
    """Whether the runner of a running `job` is gone (see the module docstring)."""
    if job.runner_host == host and job.runner_pid is not None:
        return not runner_alive(job.runner_pid, job.id)
    last = job.heartbeat_at or job.updated_at
    return (now - last).total_seconds() > stale_after


def start_pending(launcher: Launcher, engine: Engine) -> list[str]:
    """Give local pending jobs runners, oldest first, while the launcher has free slots (the
    service's job queue: called on submission, on start and periodically). Returns their ids."""
    started: list[str] = []
    free = launcher.free_slots()
    if free <= 0:
        return started
    busy = launcher.running()
    for job in reversed(list_jobs(status="pending", engine=engine)):  # oldest first
        if len(started) >= free:
            break
        if job.backend == "local" and job.kind in RUNNABLE_KINDS and job.id not in busy:
            try:
                launcher.start(job.id)
            except OSError as exc:  # the job must not stay pending with nobody to run it
                update_job(job.id, status="failed", error=f"could not start its runner: {exc}",
                           expect=("pending",), engine=engine)
                log.error("job %s: could not start its runner: %s", job.id, exc)
                continue
            started.append(job.id)
    return started


def recover_jobs(launcher: Launcher, engine: Engine, *, stale_after: float = STALE_AFTER_S) -> Recovery:
    """Adopt live runners of running jobs, resume the running jobs whose runner is gone (these
    do not wait for a slot: they held one), then start pending jobs while slots are free.
    Returns what was done."""
    host, out = socket.gethostname(), Recovery()
    now = dt.datetime.now(dt.timezone.utc)
    for job in reversed(list_jobs(status="running", engine=engine)):
        if job.backend != "local" or job.kind not in RUNNABLE_KINDS:
            continue
        if runner_gone(job, host, now, stale_after):
            launcher.start(job.id, resume=True)
            out.resumed.append(job.id)
        elif job.runner_host == host and job.runner_pid is not None:
            launcher.adopt(job.id, job.runner_pid)
            out.adopted.append(job.id)
    out.started = start_pending(launcher, engine)
    if out.started or out.resumed or out.adopted:
        log.warning(
            "jobs on start: %d started (%s), %d resumed (%s), %d runners adopted (%s)",
            len(out.started), ", ".join(out.started), len(out.resumed), ", ".join(out.resumed),
            len(out.adopted), ", ".join(out.adopted),
        )
    return out
