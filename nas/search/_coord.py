"""Several drivers on one job: who they are, whether they live, and taking turns.

Each driver registers itself in its study's user attributes (``nas.driver.<id>``: role, share
of trials, host, pid, state, last beat), so any driver, `nas search --resume` or the service
can tell which drivers of a job are alive without a schema of its own. A driver is alive while
its state is ``running`` and it beat within `GRACE_S` (on the same host: while its pid lives).

`job_lock` serialises the few statements that give an expensive evaluation its job-wide number
(check that no other driver evaluated the architecture, tell, index), so evaluation numbers are
1..N without gaps or repeats whatever the number of drivers.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

__all__ = ["GRACE_S", "HEARTBEAT_S", "DriverEntry", "Heartbeat", "drivers", "job_lock", "new_driver_id", "pid_alive"]

HEARTBEAT_S = 5
"""Seconds between a driver's beats (its in-flight trials' Optuna heartbeats, its registry entry,
the job's ``heartbeat_at``)."""
GRACE_S = int(os.environ.get("NAS_TRIAL_GRACE_S", "30"))
"""A trial or driver silent this long is dead: Optuna fails its RUNNING trials and enqueues them
again (``RetryHeartbeatStaleTrialCallback``), and it no longer counts as a live driver."""
_PREFIX = "nas.driver."
_HOST = socket.gethostname()
_log = logging.getLogger("nas.search")
_LOCAL_LOCKS: dict[str, threading.Lock] = {}


def new_driver_id() -> str:
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class DriverEntry:
    """One driver of a job, as registered in its study. `role`: ``run`` (the job's first driver,
    its share is ``budget.trials``), ``join`` (an extra driver with its own share) or ``resume``
    (finishes what dead drivers left). `state`: running, finished, cancelled, failed, replaced
    (a dead driver whose work a resume took over)."""

    id: str
    role: str
    trials: int
    host: str = _HOST
    pid: int = field(default_factory=os.getpid)
    state: str = "running"
    beat: float = 0.0
    error: str | None = None

    def alive(self, now: float | None = None) -> bool:
        if self.state != "running":
            return False
        if self.host == _HOST:
            if self.pid == os.getpid():
                return True  # this process: the entry of a driver running in it (or ourselves)
            return pid_alive(self.pid)
        return (now or time.time()) - self.beat < GRACE_S

    def save(self, study: optuna.Study) -> None:
        self.beat = time.time()
        study._storage.set_study_user_attr(study._study_id, _PREFIX + self.id, asdict(self))


def drivers(storage: optuna.storages.BaseStorage, study_id: int) -> list[DriverEntry]:
    """Every driver ever registered on the study."""
    attrs = storage.get_study_user_attrs(study_id)
    return [DriverEntry(**v) for k, v in attrs.items() if k.startswith(_PREFIX)]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def job_lock(engine: Engine, job_id: str) -> Iterator[Connection]:
    """Hold the job's lock and yield a connection to read under it.

    PostgreSQL: a session advisory lock on the yielded connection (the server drops it if the
    connection dies). SQLite: an ``flock`` on a file beside the database (a thread lock for an
    in-memory database).
    """
    key = f"nas_job:{job_id}"
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": key})
            try:
                yield conn
            finally:
                with contextlib.suppress(Exception):  # a lost connection has released it already
                    conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
                    conn.commit()
            return
        path = engine.url.database
        if not path or path == ":memory:":
            with _LOCAL_LOCKS.setdefault(key, threading.Lock()):
                yield conn
            return
        with open(f"{path}.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield conn
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class Heartbeat(threading.Thread):
    """Calls `beat` every `interval` seconds until stopped; a failing beat is logged and the
    next one tried (a long evaluation never starves the heartbeats, unlike a loop's)."""

    def __init__(self, beat: Callable[[], Any], interval: float = HEARTBEAT_S) -> None:
        super().__init__(name="nas-driver-heartbeat", daemon=True)
        self._beat, self._interval = beat, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                self._beat()
            except Exception as exc:  # noqa: BLE001 - the next beat may succeed
                _log.warning("driver heartbeat failed: %s: %s", type(exc).__name__, exc)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=30)
