"""The search driver: one per job, doing Optuna ask/tell against the study in the service
database, sending expensive evaluations to a pool and mirroring every finished trial into the
typed trials index.

Resumable: everything a trial needs to be re-indexed lives in its Optuna user attributes, trials
left RUNNING by a dead driver are evaluated again and told under their own numbers, and the index
skips numbers it already holds, so nothing is lost or duplicated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from sqlalchemy import Engine

from nas.db import _jobs as jobs_db
from nas.db._engine import database_url, get_engine
from nas.db._migrate import ensure_schema
from nas.search._evaluators import (
    Evaluator,
    build_evaluator,
    build_space,
    cache_key,
    evaluator_metrics,
    supernet_fingerprint,
)
from nas.search._metrics import CheapMetrics, MetricDef, job_metrics
from nas.search._pareto import pareto_mask, to_minimization
from nas.search._pool import make_pool
from nas.search._samplers import (
    CONSTRAINT_ATTR,
    SamplerContext,
    constraint_values,
    create_sampler,
    search_distributions,
)
from nas.search._spec import SearchSpec, parse_search_spec

__all__ = ["SearchResult", "check_search_spec", "optuna_storage", "resume_search", "run_job", "run_search"]

ProgressFn = Callable[[int, int, dict[str, Any]], None]
"""Called after each finished trial with (expensive evaluations done, budget, info)."""

_ATTR = "nas"  # user attribute holding what the index needs: arch_id, metrics, cached, evaluation


@dataclass
class SearchResult:
    job_id: str
    trials: int
    evaluations: int
    front: list[int]
    status: str
    seconds: float
    failed: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def optuna_storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on the service database (its own tables beside ours)."""
    resolved = database_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if resolved.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.storages.RDBStorage(resolved, engine_kwargs=kwargs)


def _versions() -> dict[str, str]:
    from nas.train._checkpoint import library_versions

    return library_versions(extra=("optuna", "sqlalchemy"))


class _Driver:
    def __init__(self, spec: SearchSpec, job: jobs_db.Job, engine: Engine, url: str | None,
                 progress: ProgressFn | None, use_ray: bool | None) -> None:
        self.spec, self.job, self.engine, self.progress = spec, job, engine, progress
        self.space = build_space(spec.space)
        self.metrics = [MetricDef.from_dict(m) for m in job.metrics]
        self.objectives = [m for m in self.metrics if m.objective]
        self.constrained = [m for m in self.metrics if m.max is not None or m.min is not None]
        self.slots = {m.key: m.slot for m in self.metrics}
        self.cheap = CheapMetrics(self.space, self.metrics)
        self.cheap.check()
        self.local: Evaluator | None = None
        if spec.budget.parallelism == 1 and not use_ray:
            self.local = build_evaluator(spec.evaluator, spec.space)
        self.fingerprint = self.local.fingerprint() if self.local is not None else (
            supernet_fingerprint(spec.evaluator) if spec.evaluator.kind == "supernet"
            else build_evaluator(spec.evaluator, spec.space).fingerprint()
        )
        self.ctx = SamplerContext(self.space, self.objectives, self.cheap, self.constrained,
                                  spec.budget.seed, spec.budget.trials)
        sampler = create_sampler(spec.sampler.name, self.ctx, spec.sampler.params)
        self.study = optuna.create_study(
            study_name=job.study_name, storage=optuna_storage(url), sampler=sampler,
            directions=[m.direction for m in self.objectives], load_if_exists=True,
        )
        self.dists = search_distributions(self.space)
        self.pool = make_pool(spec.evaluator, spec.space, spec.budget.parallelism, self.local, use_ray)
        self.evaluated: dict[str, dict[str, float]] = {}
        self.failed = 0

    # -------------------------------------------------------------------------------- helpers
    def _record(self, trial_number: int, arch: dict[str, Any], values: dict[str, float],
                cached: bool, evaluation: int | None, seconds: float) -> None:
        objective_values = [values[m.key] for m in self.objectives]
        violation = constraint_values(self.constrained, values)
        feasible = all(v <= 0 for v in violation)
        aid = self.space.arch_id(arch)
        attrs = {"arch_id": aid, "arch": arch, "metrics": values, "cached": cached,
                 "evaluation": evaluation, "seconds": seconds}
        storage = self.study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, trial_number)
        storage.set_trial_user_attr(trial_id, _ATTR, attrs)
        storage.set_trial_user_attr(trial_id, CONSTRAINT_ATTR, violation)
        if any(not math.isfinite(v) for v in objective_values):
            self.study.tell(trial_number, state=TrialState.FAIL)
            self.failed += 1
            return
        self.study.tell(trial_number, objective_values)
        jobs_db.insert_trials(self.job.id, [jobs_db.TrialRecord(
            trial_number, aid, arch, values, feasible, cached=cached, evaluation=evaluation, seconds=seconds,
        )], self.slots, engine=self.engine)

    def _sync_index(self) -> None:
        """Index complete trials the index lacks (a driver that died between tell and insert)."""
        have = set(jobs_db.trial_numbers(self.job.id, engine=self.engine))
        missing = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            a = t.user_attrs.get(_ATTR)
            if t.number in have or not a:
                continue
            violation = t.user_attrs.get(CONSTRAINT_ATTR, [])
            missing.append(jobs_db.TrialRecord(
                t.number, a["arch_id"], a["arch"], a["metrics"], all(v <= 0 for v in violation),
                cached=a["cached"], evaluation=a["evaluation"], seconds=a.get("seconds", 0.0),
            ))
        if missing:
            jobs_db.insert_trials(self.job.id, missing, self.slots, engine=self.engine)

    def _load_evaluated(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            a = t.user_attrs.get(_ATTR)
            if a and a.get("evaluation") is not None:
                self.evaluated[a["arch_id"]] = a["metrics"]

    def _status(self) -> str:
        return jobs_db.get_job(self.job.id, engine=self.engine).status

    # -------------------------------------------------------------------------------- the loop
    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        budget = self.spec.budget.trials
        self._sync_index()
        self._load_evaluated()
        pending: dict[int, tuple[int, dict[str, Any], dict[str, float]]] = {}   # ticket -> (trial, arch, cheap)
        waiting: dict[str, list[tuple[int, dict[str, Any]]]] = {}              # arch_id in flight -> duplicates
        in_flight: dict[str, int] = {}
        # Trials a dead driver left RUNNING are evaluated again under their own numbers.
        redo = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        duplicates_in_a_row, status, last_beat = 0, "finished", 0.0
        max_trials = 20 * budget + 200

        def started() -> int:
            return len(self.evaluated) + len(in_flight)

        def submit(number: int, arch: dict[str, Any]) -> None:
            aid = self.space.arch_id(arch)
            cheap = self.cheap(arch)
            if aid in self.evaluated:
                self._record(number, arch, {**self.evaluated[aid], **cheap}, True, None, 0.0)
                return
            if aid in in_flight:
                waiting.setdefault(aid, []).append((number, arch))
                return
            key = cache_key(str(self.fingerprint), aid)
            hit = jobs_db.cache_get([key], engine=self.engine).get(key)
            if hit is not None:
                self.evaluated[aid] = hit
                self._record(number, arch, {**hit, **cheap}, True, len(self.evaluated), 0.0)
                self._report(budget)
                return
            in_flight[aid] = number
            pending[self.pool.submit(arch)] = (number, arch, cheap)

        for t in redo:
            submit(t.number, self.space.from_params({k: t.params[k] for k in self.dists if k in t.params}))
        try:
            while True:
                now = time.monotonic()
                if now - last_beat > 5:
                    last_beat = now
                    jobs_db.update_job(self.job.id, heartbeat=True, engine=self.engine)
                if self._status() == "cancelled":  # one indexed read per round: a cancel is never missed
                    status = "cancelled"
                    break
                timeout = self.spec.budget.timeout_s
                timed_out = timeout is not None and time.perf_counter() - t0 > timeout
                exhausted = duplicates_in_a_row > 200 or len(self.study.trials) > max_trials
                while (not timed_out and not exhausted and started() < budget
                       and self.pool.busy < self.pool.size):
                    trial = self.study.ask(self.dists)
                    arch = self.space.from_params(trial.params)
                    aid = self.space.arch_id(arch)
                    duplicates_in_a_row = duplicates_in_a_row + 1 if (aid in self.evaluated or aid in in_flight) else 0
                    submit(trial.number, arch)
                    exhausted = duplicates_in_a_row > 200 or len(self.study.trials) > max_trials
                if not pending:
                    break
                for ticket, values, error, seconds in self.pool.wait():
                    number, arch, cheap = pending.pop(ticket)
                    aid = self.space.arch_id(arch)
                    in_flight.pop(aid, None)
                    if values is None:
                        self.failed += 1
                        storage = self.study._storage
                        tid = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
                        storage.set_trial_user_attr(tid, "error", error)
                        self.study.tell(number, state=TrialState.FAIL)
                        for dup, _ in waiting.pop(aid, []):
                            self.study.tell(dup, state=TrialState.FAIL)
                        self._report(budget, error=error)
                        continue
                    values = {k: float(v) for k, v in values.items()}
                    self.evaluated[aid] = values
                    jobs_db.cache_put([(cache_key(str(self.fingerprint), aid), str(self.fingerprint), aid, values)],
                                      engine=self.engine)
                    self._record(number, arch, {**values, **cheap}, False, len(self.evaluated), seconds)
                    for dup, darch in waiting.pop(aid, []):
                        self._record(dup, darch, {**values, **cheap}, True, None, 0.0)
                    self._report(budget)
        except BaseException:
            status = "failed"
            raise
        finally:
            self.pool.close()
        front = update_front(self.job.id, self.metrics, engine=self.engine)
        return SearchResult(self.job.id, len(self.study.trials), len(self.evaluated), front, status,
                            time.perf_counter() - t0, self.failed)

    def _report(self, budget: int, error: str | None = None) -> None:
        if self.progress is not None:
            self.progress(min(len(self.evaluated), budget), budget, {"error": error, "failed": self.failed})


def update_front(job_id: str, metrics: list[MetricDef], *, engine: Engine | None = None) -> list[int]:
    """Recompute and store the job's Pareto front over its objectives among feasible trials."""
    from nas.search._query import load_values

    objectives = [m for m in metrics if m.objective]
    numbers, values = load_values(job_id, objectives, feasible_only=True, engine=engine)
    if len(numbers) == 0:
        jobs_db.set_front(job_id, [], engine=engine)
        return []
    pts = to_minimization(values, [m.direction for m in objectives])
    ok = np.all(np.isfinite(pts), axis=1)
    mask = np.zeros(len(pts), dtype=bool)
    mask[ok] = pareto_mask(pts[ok])
    front = [int(n) for n in np.asarray(numbers)[mask]]
    jobs_db.set_front(job_id, front, engine=engine)
    return front


def check_search_spec(spec: SearchSpec) -> list[MetricDef]:
    """Everything a job needs that can be checked before it exists: the space, the evaluator
    (a table is read, a checkpoint hashed), every metric name, the latency tables, the sampler and
    its params. Returns the job's metric definitions.

    Raises:
        KeyError / ValueError / FileNotFoundError: naming the bad value and what is allowed.
    """
    from nas.search._samplers import list_samplers

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
    job = jobs_db.create_job(
        kind="search", name=spec.name or "search", spec=spec.model_dump(mode="json"),
        metrics=[m.to_dict() for m in metrics], job_id=job_id, owner=owner, versions=_versions(),
        status="running", engine=engine,
    )
    return _finish(spec, job, engine, url, progress, use_ray)


def _finish(spec: SearchSpec, job: jobs_db.Job, engine: Engine, url: str | None,
            progress: ProgressFn | None, use_ray: bool | None) -> SearchResult:
    try:
        result = _Driver(spec, job, engine, url, progress, use_ray).run()
    except BaseException as exc:
        jobs_db.update_job(job.id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000], engine=engine)
        raise
    if not jobs_db.update_job(job.id, status=result.status, expect=("running",), engine=engine):
        result.status = jobs_db.get_job(job.id, engine=engine).status  # cancelled meanwhile: keep it
    return result


def resume_search(
    job_id: str, *, url: str | None = None, progress: ProgressFn | None = None, use_ray: bool | None = None
) -> SearchResult:
    """Finish a job whose driver died (or that was stopped): same study, same trials index.

    Raises:
        KeyError: unknown job. ValueError: the job already finished.
    """
    engine = get_engine(url)
    job = jobs_db.get_job(job_id, engine=engine)
    if job.status == "finished":
        raise ValueError(f"Job {job_id!r} already finished; nothing to resume.")
    spec = parse_search_spec(job.spec, f"job {job_id}")
    jobs_db.update_job(job_id, status="running", engine=engine)
    return _finish(spec, job, engine, url, progress, use_ray)


def run_job(
    job_id: str, *, url: str | None = None, progress: ProgressFn | None = None, use_ray: bool | None = None
) -> SearchResult:
    """Run a *pending* search job to completion: a job row created beforehand (by the REST
    service, with its spec already validated and its metrics stored) that no driver has taken.

    The pending -> running step is an atomic compare-and-set, so two runners never drive the
    same job, and a job cancelled before it started is not run.

    Raises:
        KeyError: unknown job. ValueError: not a search job, or not pending (cancelled before
            it started, already taken or done; a job whose driver died is finished by
            `resume_search`). SearchSpecError: its stored spec is invalid (the job is marked failed).
    """
    engine = get_engine(url)
    job = jobs_db.get_job(job_id, engine=engine)
    if job.kind != "search":
        raise ValueError(f"Job {job_id!r} is a {job.kind!r} job, not a search job.")
    try:
        spec = parse_search_spec(job.spec, f"job {job_id}")
    except ValueError as exc:
        jobs_db.update_job(job_id, status="failed", error=str(exc)[:2000], expect=("pending",), engine=engine)
        raise
    if not jobs_db.update_job(job_id, status="running", expect=("pending",), engine=engine):
        status = jobs_db.get_job(job_id, engine=engine).status
        raise ValueError(f"Job {job_id!r} is {status}; only a pending job can be run "
                         f"(`nas search --resume {job_id}` finishes one whose driver died).")
    return _finish(spec, job, engine, url, progress, use_ray)
