"""Training jobs of the service: submitted through the API, run by a runner process.

A train job's spec is the one ``nas train SPEC.yaml`` reads, except its run directory: the
service owns it (``$NAS_HOME/runs/<job id>``), so a client cannot make the server write
elsewhere, and a rerun of the job (after a server restart) resumes from its last checkpoint.
Progress and the result (checkpoint, its hash and artifact id) live in a small JSON state file
beside the job's log, ``$NAS_HOME/jobs/<job id>.train.json``, which the job detail shows.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from nas.db._jobs import Job

__all__ = ["TrainCancelled", "create_train_job", "run_train_job", "train_state"]


class TrainCancelled(Exception):
    """The job was cancelled while it trained (its last checkpoint stays in its run directory)."""


def _home() -> Path:
    return Path(os.environ.get("NAS_HOME", ".nas"))


def _state_path(home: Path, job_id: str) -> Path:
    return home / "jobs" / f"{job_id}.train.json"


def create_train_job(body: Mapping[str, Any], *, owner: str, home: Path, engine: Engine) -> Job:
    """Validate a training spec as completely as ``nas train`` does before it trains (the spec,
    space and overrides, data, batch sizes) and create its pending job.

    Raises:
        ValueError (SpecError): one line naming the bad value and what is allowed.
    """
    from nas.db._jobs import create_job, new_job_id
    from nas.train import check_spec, parse_spec
    from nas.train._checkpoint import library_versions

    if body.get("output") is not None:
        raise ValueError(
            f"Bad training spec <request body>: output: set by the service (runs/<job id> under its "
            f"NAS_HOME); leave it out (got {body['output']!r:.200})."
        )
    job_id = new_job_id("train")
    spec = parse_spec({**body, "output": str(home / "runs" / job_id)}, "<request body>")
    check_spec(spec)
    return create_job(
        kind="train",
        name=spec.name or "train",
        spec=spec.model_dump(mode="json"),
        job_id=job_id,
        owner=owner,
        versions=library_versions(),
        status="pending",
        engine=engine,
    )


def train_state(home: Path, job_id: str) -> dict[str, Any] | None:
    """The job's training state (see the module docstring); None before its runner wrote any."""
    try:
        return dict(json.loads(_state_path(home, job_id).read_text()))
    except (OSError, ValueError):
        return None


class _JobSink:
    """A training progress sink that keeps the job's state file current (at most once per
    `interval` s between epochs) and stops the training when the job is cancelled."""

    def __init__(self, path: Path, job_id: str, engine: Engine, interval: float = 1.0) -> None:
        self.path, self.job_id, self.engine, self.interval = path, job_id, engine, interval
        self.state: dict[str, Any] = dict(train_state(path.parent.parent, job_id) or {})
        self._last = 0.0

    def flush(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.path)  # a reader never sees half a file

    def _check(self) -> None:
        from nas.db._jobs import get_job

        self._last = time.monotonic()
        self.flush()
        if get_job(self.job_id, engine=self.engine).status == "cancelled":
            raise TrainCancelled(f"job {self.job_id} was cancelled")

    def start(self, total_steps: int, start_step: int, steps_per_epoch: int) -> None:
        self.state.update(total_steps=total_steps, step=start_step, steps_per_epoch=steps_per_epoch)
        self._check()

    def step(self, step: int, loss: float, phase: str) -> None:
        self.state.update(step=step, loss=loss if math.isfinite(loss) else None, phase=phase)
        if time.monotonic() - self._last >= self.interval:
            self._check()

    def epoch(self, metrics: dict[str, Any]) -> None:
        self.state.update(epoch=int(metrics["epoch"]) + 1, epochs=metrics["epochs"], last_epoch=metrics)
        self._check()

    def message(self, text: str) -> None:
        self.state["message"] = text
        self.flush()


@contextmanager
def _heartbeat(job_id: str, engine: Engine, every: float = 5.0) -> Iterator[None]:
    """Beat the job's heartbeat from a thread, so that long steps (data loading, BN
    recalibration, evaluation) never make a live training look dead."""
    from nas.db._jobs import update_job

    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                update_job(job_id, heartbeat=True, engine=engine)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the job must not die of it
                pass
            if stop.wait(every):
                return

    t = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(5)


def run_train_job(job_id: str, engine: Engine) -> str:
    """Train a claimed (running) train job to the end, register its checkpoint and mark it
    finished (a cancelled job stays cancelled). Returns a summary line. Errors and `Stopped`
    (SIGTERM) pass through: the runner marks the job failed, or leaves it pending."""
    from nas.db._jobs import get_job, update_job
    from nas.service._runner import Stopped
    from nas.train import parse_spec, train

    job = get_job(job_id, engine=engine)
    sink = _JobSink(_state_path(_home(), job_id), job_id, engine)
    try:
        with _heartbeat(job_id, engine):
            spec = parse_spec(job.spec, f"job {job_id}")
            result = train(spec, sink)
    except TrainCancelled:
        sink.flush()
        return f"job {job_id}: cancelled at step {sink.state.get('step', 0)}"
    except Stopped:
        sink.flush()
        raise
    sink.state.update(
        checkpoint=str(result.checkpoint),
        sha256=result.sha256,
        size_bytes=result.size_bytes,
        artifact_id=result.artifact_id,
        metrics=result.metrics,
        resumed_from=result.resumed_from,
    )
    sink.flush()
    update_job(job_id, status="finished", expect=("running",), engine=engine)
    return f"job {job_id}: finished, checkpoint {result.checkpoint}, artifact {result.artifact_id}"
