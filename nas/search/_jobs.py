"""Search job entry points: check a spec before a job exists, then create and run, join or resume
a job, each as one `_Driver`, and settle the job's status when the driver ends.

Which driver settles the job, and how, is described in `nas.search._driver`'s docstring.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

from nas.db import _jobs as jobs_db
from nas.db._engine import get_engine, retry_transient
from nas.db._migrate import ensure_schema
from nas.search._coord import GRACE_S, drivers
from nas.search._driver import ProgressFn, SearchResult, _Driver, optuna_storage
from nas.search._evaluators import build_evaluator, build_space, evaluator_metrics, supernet_fingerprint
from nas.search._metrics import CheapMetrics, MetricDef, job_metrics
from nas.search._samplers import SamplerContext, create_sampler, list_samplers
from nas.search._spec import SearchSpec, parse_search_spec

__all__ = [
    "check_search_spec", "create_search_job", "join_search", "job_versions", "resume_search", "run_search",
]


def job_versions() -> dict[str, str]:
    """Versions stored with each search job (the training stack plus Optuna and SQLAlchemy)."""
    from nas.train._checkpoint import library_versions

    return library_versions(extra=("optuna", "sqlalchemy"))


def create_search_job(
    spec: SearchSpec,
    metrics: Sequence[MetricDef],
    *,
    engine: Engine,
    status: str,
    job_id: str | None = None,
    owner: str = "",
    ray_address: str | None = None,
) -> jobs_db.Job:
    """The job row of a checked search spec (`check_search_spec` gives `metrics`), the one way
    `nas search`, `nas submit` and ``POST /api/jobs`` create it. A `ray_address` makes it a
    cluster job (backend ``ray``)."""
    return jobs_db.create_job(
        kind="search", name=spec.name or "search", spec=spec.model_dump(mode="json"),
        metrics=[m.to_dict() for m in metrics], job_id=job_id, owner=owner, versions=job_versions(),
        status=status, backend="ray" if ray_address else "local", ray_address=ray_address, engine=engine,
    )


def check_search_spec(spec: SearchSpec) -> list[MetricDef]:
    """Everything a job needs that can be checked before it exists: the space, the evaluator
    (a table is read, a checkpoint hashed), every metric name, the latency tables, the sampler and
    its params. Returns the job's metric definitions.

    Raises:
        KeyError / ValueError / FileNotFoundError: naming the bad value and what is allowed.
    """
    if spec.sampler.name not in list_samplers():
        raise ValueError(f"sampler.name: unknown sampler {spec.sampler.name!r}; known: {', '.join(list_samplers())}.")
    space = build_space(spec.space)
    evaluator = build_evaluator(spec.evaluator, spec.space) if spec.evaluator.kind != "supernet" else None
    names = evaluator.metrics if evaluator is not None else evaluator_metrics(spec.evaluator, spec.space)
    metrics = job_metrics(spec, names)
    cheap = CheapMetrics(space, metrics)
    cheap.check()
    objectives = [m for m in metrics if m.objective]
    constrained = [m for m in metrics if m.max is not None or m.min is not None]
    create_sampler(spec.sampler.name, SamplerContext(space, objectives, cheap, constrained, spec.budget.seed,
                                                     spec.budget.trials), spec.sampler.params)
    if spec.evaluator.kind == "supernet":
        supernet_fingerprint(spec.evaluator)  # a missing checkpoint fails here
    return metrics


def run_search(
    spec: SearchSpec | Mapping[str, Any],
    *,
    job_id: str | None = None,
    url: str | None = None,
    progress: ProgressFn | None = None,
    use_ray: bool | None = None,
    owner: str = "",
) -> SearchResult:
    """Run a search job to completion (or its budget, timeout or cancellation).

    Everything is checked before the job is created: the spec, the space, the evaluator, every
    metric name, the latency tables (a missing one raises FileNotFoundError naming the command
    that measures it), so a bad spec leaves nothing behind.
    """
    if not isinstance(spec, SearchSpec):
        spec = parse_search_spec(dict(spec))
    engine = get_engine(url)
    ensure_schema(engine)
    metrics = check_search_spec(spec)
    job = create_search_job(spec, metrics, engine=engine, status="running", job_id=job_id, owner=owner)
    return _finish(spec, job, engine, url, progress, use_ray)


def _finish(spec: SearchSpec, job: jobs_db.Job, engine: Engine, url: str | None,
            progress: ProgressFn | None, use_ray: bool | None, role: str = "run",
            share: int | None = None) -> SearchResult:
    """Drive the job as one of its drivers, then settle its status (see `_driver`'s docstring)."""
    def update(**kw: Any) -> bool:
        return retry_transient(lambda: jobs_db.update_job(job.id, engine=engine, **kw), what=f"job {job.id}: status")

    driver: _Driver | None = None
    try:
        driver = _Driver(spec, job, url, progress, use_ray, role, share)
        result = driver.run()
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        others = False
        if driver is not None:
            with contextlib.suppress(Exception):  # the database may be what failed
                others = driver.end("failed", error)
            driver.close()
        if not others:
            update(status="failed", error=error)
        raise
    try:
        if driver.end(result.status):
            if result.status != "cancelled":
                result.status = "running"  # other drivers carry on; the last one settles the job
        elif result.status != "cancelled":
            status, error = driver.finalize()
            if not update(status=status, error=error, expect=("running",)):
                status = retry_transient(lambda: jobs_db.get_job(job.id, engine=engine).status)  # cancelled
            result.status = status
    finally:
        driver.close()
    return result


def _check_no_live_driver(job: jobs_db.Job, url: str | None) -> None:
    """Raises ValueError if a driver of the job is alive (a resume would evaluate its trials twice)."""
    storage = optuna_storage(url)
    try:
        study_id = storage.get_study_id_from_name(job.study_name)
    except KeyError:
        return
    try:
        live = [e for e in drivers(storage, study_id) if e.alive()]
    finally:
        storage.engine.dispose()
    if live:
        e = live[0]
        raise ValueError(
            f"Job {job.id!r} has a live driver ({e.role}, pid {e.pid} on {e.host}, last beat "
            f"{time.time() - e.beat:.0f}s ago); `nas search --join {job.id}` adds another driver, "
            f"or resume once it has ended (a driver silent for {GRACE_S}s counts as dead)."
        )


def resume_search(
    job_id: str, *, url: str | None = None, progress: ProgressFn | None = None, use_ray: bool | None = None
) -> SearchResult:
    """Finish a job whose drivers died (or that was stopped): same study, same trials index,
    the job's requested total of evaluations.

    Raises:
        KeyError: unknown job. ValueError: the job already finished, or a driver of it is alive.
    """
    engine = get_engine(url)
    job = jobs_db.get_job(job_id, engine=engine)
    if job.status == "finished":
        raise ValueError(f"Job {job_id!r} already finished; nothing to resume.")
    spec = parse_search_spec(job.spec, f"job {job_id}")
    _check_no_live_driver(job, url)
    jobs_db.update_job(job_id, status="running", engine=engine)
    return _finish(spec, job, engine, url, progress, use_ray, role="resume")


def join_search(
    job_id: str, *, trials: int | None = None, url: str | None = None, progress: ProgressFn | None = None,
    use_ray: bool | None = None,
) -> SearchResult:
    """Add a driver to a job: it shares the job's study and index with the job's other drivers
    (in other processes or on other machines) and runs `trials` more expensive evaluations
    (default: the spec's ``budget.trials``). Optuna's distributed optimisation: every driver
    asks and tells on the one study. The result's status is the job's: ``running`` while other
    drivers carry on.

    Raises:
        KeyError: unknown job. ValueError: not a search job, finished or cancelled, or `trials` < 1.
    """
    engine = get_engine(url)
    job = jobs_db.get_job(job_id, engine=engine)
    if job.kind != "search":
        raise ValueError(f"Job {job_id!r} is a {job.kind!r} job, not a search job.")
    joinable = ("pending", "running", "failed")
    if job.status not in joinable:
        raise ValueError(f"Job {job_id!r} is {job.status}; only a {', '.join(joinable)} job can be joined.")
    if trials is not None and trials < 1:
        raise ValueError(f"trials must be at least 1 (got {trials}).")
    spec = parse_search_spec(job.spec, f"job {job_id}")
    if not jobs_db.update_job(job_id, status="running", expect=joinable, engine=engine):
        status = jobs_db.get_job(job_id, engine=engine).status
        raise ValueError(f"Job {job_id!r} is {status}; only a {', '.join(joinable)} job can be joined.")
    return _finish(spec, job, engine, url, progress, use_ray, role="join", share=trials)
