"""Search jobs on a Ray cluster through the Ray Jobs API (the dashboard's HTTP API).

A ray job is created pending in the database, like a local one, and submitted as a Ray job
whose submission id *is* the job id and whose entrypoint is the same runner the service starts
locally (``python -m nas.service._runner JOB``). The driver then writes to the same database,
so the database stays the source of truth; `reconcile` only catches what the driver could not
write itself (it was killed, failed to start, or the cluster lost it).

The database URL travels in the Ray job's ``runtime_env`` (visible to whoever can read the
cluster's dashboard), so it must name a database the cluster can reach: PostgreSQL on a host
other than loopback, or, when the cluster's head is this machine, any database of this machine.
"""

from __future__ import annotations

import os
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError

from nas.db._engine import database_url, redact
from nas.db._jobs import Job, get_job, update_job
from nas.service._auth import is_loopback

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

__all__ = [
    "ClusterError",
    "ClusterUnreachable",
    "cancel",
    "cluster_database_url",
    "connect",
    "normalize_address",
    "reconcile",
    "submit",
]

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Passed on to the driver when set here (a cluster node's cores are shared by its workers)."""
LOG_TAIL = 1500
_ACTIVE = ("pending", "running")
_START_HEAD = (
    "start a head with `ray start --head --dashboard-host 0.0.0.0` (the Jobs API listens on the "
    "dashboard's port, 8265 by default) or check the address"
)
_CLIENTS: dict[str, JobSubmissionClient] = {}
_LOCK = threading.Lock()


class ClusterError(RuntimeError):
    """The Ray cluster refused a job or did not answer (the message names its address)."""


class ClusterUnreachable(ClusterError):
    """The Ray Jobs API at an address did not answer."""


def normalize_address(address: str) -> str:
    """The dashboard URL of `address` (``HEAD:8265`` gets ``http://``).

    Raises:
        ValueError: not an http(s) URL with a host.
    """
    text = address.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urllib.parse.urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"Bad Ray address {address!r}; expected the dashboard's URL, e.g. http://HEAD:8265 "
            "(the Ray Jobs API; not the GCS port 6379 nor ray://)."
        )
    return text.rstrip("/")


def _on_this_machine(address: str) -> bool:
    return is_loopback(urllib.parse.urlsplit(normalize_address(address)).hostname or "")


def cluster_database_url(url: str | None, address: str) -> str:
    """The database URL (`url`, else the configured one) as the cluster's driver must get it.

    SQLite (its path made absolute) and loopback PostgreSQL only work when the cluster's head,
    where the driver runs, is this machine.

    Raises:
        ValueError: the cluster at `address` could not reach that database.
    """
    resolved = database_url(url)
    try:
        parsed = make_url(resolved)
    except ArgumentError as exc:
        raise ValueError(f"Bad database URL {redact(resolved)!r}: {exc}.") from None
    here = _on_this_machine(address)
    if parsed.get_backend_name() == "sqlite":
        if not here:
            raise ValueError(
                f"The database {redact(resolved)!r} is a SQLite file on this machine, which the Ray "
                f"cluster at {address} cannot open; set NAS_DATABASE_URL to a PostgreSQL database "
                "it can reach (postgresql+psycopg://USER:PASSWORD@DBHOST:5432/DB)."
            )
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError(f"An in-memory SQLite database cannot be shared with a Ray job: {resolved!r}.")
        return str(parsed.set(database=str(Path(parsed.database).expanduser().resolve())))
    if not here and (not parsed.host or is_loopback(parsed.host)):
        raise ValueError(
            f"The database {redact(resolved)!r} is on this machine's loopback (or a local socket), "
            f"which the Ray cluster at {address} cannot reach; give NAS_DATABASE_URL a host name "
            "the cluster's nodes can connect to."
        )
    return resolved


def connect(address: str) -> JobSubmissionClient:
    """A Jobs API client of the cluster at `address` (one per address and process).

    Raises:
        ValueError: a malformed address. ClusterUnreachable: nothing answers there.
    """
    url = normalize_address(address)
    with _LOCK:
        if url in _CLIENTS:
            return _CLIENTS[url]
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(url)
    except (OSError, RuntimeError) as exc:
        raise ClusterUnreachable(f"Cannot reach the Ray Jobs API at {url} ({exc}); {_START_HEAD}.") from None
    with _LOCK:
        return _CLIENTS.setdefault(url, client)


def _forget(address: str) -> None:
    with _LOCK:
        _CLIENTS.pop(normalize_address(address), None)


def submit(
    job: Job,
    *,
    database_url: str | None = None,
    home: Path | None = None,
    python: str | None = None,
    engine: Engine | None = None,
) -> str:
    """Submit the pending ray job `job` to its cluster (``job.ray_address``); returns the Ray
    submission id (= the job id). `python`: the cluster's interpreter (default: this one when
    the head is this machine, else ``python``). A job that could not be submitted is marked
    failed: it must not stay pending with nobody to run it.

    Raises:
        ValueError: not a pending ray job, or a database the cluster cannot reach.
        ClusterUnreachable: the cluster did not answer. ClusterError: it refused the job.
    """
    if job.backend != "ray" or not job.ray_address or job.status != "pending":
        raise ValueError(
            f"Job {job.id!r} is a {job.status} {job.backend} job; only a pending ray job (with an "
            "address) can be submitted to a cluster."
        )
    address = job.ray_address
    try:
        env = {"NAS_DATABASE_URL": cluster_database_url(database_url, address)}
        env["NAS_HOME"] = str((home or Path(os.environ.get("NAS_HOME", ".nas"))).expanduser().resolve())
        env.update({k: os.environ[k] for k in THREAD_VARS if os.environ.get(k)})
        python = python or (sys.executable if _on_this_machine(address) else "python")
        return str(
            connect(address).submit_job(
                entrypoint=f"{python} -m nas.service._runner {job.id}",
                submission_id=job.id,
                runtime_env={"env_vars": env},
                metadata={"nas_job": job.id, "owner": job.owner},
            )
        )
    except (ValueError, OSError, RuntimeError) as exc:
        update_job(job.id, status="failed", error=f"not submitted: {exc}"[:2000], expect=("pending",),
                   engine=engine)
        if isinstance(exc, (ValueError, ClusterError)):
            raise
        if isinstance(exc, OSError):
            _forget(address)
            raise ClusterUnreachable(
                f"Cannot reach the Ray Jobs API at {address} ({exc}); {_START_HEAD}."
            ) from None
        raise ClusterError(f"The Ray cluster at {address} refused job {job.id}: {exc}") from None


def _ray_info(job: Job) -> Any | None:
    """Ray's JobDetails of `job`; None when its cluster does not answer.

    Raises:
        KeyError: the cluster answers but has no such job.
    """
    assert job.ray_address is not None
    try:
        return connect(job.ray_address).get_job_info(job.id)
    except ClusterError:
        return None
    except OSError:
        _forget(job.ray_address)
        return None
    except RuntimeError as exc:  # an HTTP error answer
        if "status code 404" in str(exc):
            raise KeyError(str(exc)) from None
        return None


def _status(info: Any) -> str:
    return str(getattr(info.status, "value", info.status))


def _ray_status(job: Job) -> str | None:
    info = _ray_info(job)
    return None if info is None else _status(info)


def _log_tail(job: Job) -> str:
    assert job.ray_address is not None
    try:
        return str(connect(job.ray_address).get_job_logs(job.id))[-LOG_TAIL:]
    except (OSError, RuntimeError):
        return ""


def reconcile(job: Job, *, engine: Engine | None = None) -> Job:
    """`job` with its status brought in line with Ray's (ray jobs the database calls pending or
    running; other jobs come back unchanged, without a call to Ray).

    A Ray job that ended while the database still says pending/running lost its driver before
    the driver could record the end: the job is marked failed with Ray's message and the tail of
    its log. A cluster that does not answer changes nothing (it may be restarting).
    """
    if job.backend != "ray" or job.status not in _ACTIVE or not job.ray_address:
        return job
    try:
        info = _ray_info(job)
    except KeyError as exc:  # the cluster answers but has no such job (it was restarted)
        error = f"the Ray cluster at {job.ray_address} does not know this job ({exc.args[0]})"
    else:
        if info is None or _status(info) in ("PENDING", "RUNNING"):
            return job
        first = ((info.message or "").strip().splitlines() or ["no message"])[0][:500]  # the rest: log
        error = f"Ray job {_status(info).lower()} on {job.ray_address}: {first}"
        tail = _log_tail(job)
        if tail:
            error += f"\n--- end of its log ---\n{tail}"
    note = f"{error}\nFinish it here with `nas search --resume {job.id}`, or submit its spec again."
    update_job(job.id, status="failed", error=note, expect=_ACTIVE, engine=engine)
    return get_job(job.id, engine=engine)


def cancel(job: Job, *, engine: Engine | None = None) -> bool:
    """Mark a pending or running job cancelled; returns whether it was (False: it had ended).

    The driver polls the status between rounds and stops gracefully, keeping its trials and
    front, as local jobs do. A ray job whose driver has not started yet is also stopped in Ray.
    """
    if not update_job(job.id, status="cancelled", expect=_ACTIVE, engine=engine):
        return False
    if job.backend == "ray" and job.ray_address:
        try:
            if _ray_status(job) == "PENDING":
                connect(job.ray_address).stop_job(job.id)
        except (KeyError, OSError, RuntimeError):
            pass  # it will find the job cancelled when it starts (its runner claims only a pending job)
    return True
