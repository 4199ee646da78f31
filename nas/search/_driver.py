"""The search driver (`_Driver`; `nas.search._jobs` holds the entry points that start one): one or
more per job, doing Optuna ask/tell against the study in the service
database, sending expensive evaluations to a pool and mirroring every finished trial into the
typed trials index.

Budget: a driver runs until it has recorded its *share* of expensive evaluations (distinct
architectures new to the job; duplicates are free cached trials, failed evaluations, e.g. an
evaluator whose Ray actor died, are FAIL trials with an ``error`` attribute and do not count,
so a failed trial is replaced by a new one). The first driver's share is ``budget.trials``; each
`join_search` driver (``nas search --join JOB --trials N``) adds its own N, so 8 drivers of 50
make exactly 400. Evaluation numbers are job-wide (1..total): `_coord.job_lock` serialises
"did another driver already evaluate this architecture? then this trial is a free duplicate;
else take the next number, tell, index".

Resumable: everything a trial needs to be re-indexed lives in its Optuna user attributes, and
the index skips numbers it already holds. `resume_search` (refused while a driver of the job is
alive) takes over from dead drivers: trials they left RUNNING are evaluated again under their
own numbers, and it runs the job's requested total (the shares of its run and join drivers)
minus what is already evaluated. While drivers live, Optuna's heartbeats keep their in-flight
trials' alive; a RUNNING trial whose driver went silent for `GRACE_S` is failed by any other
driver and enqueued again (``RetryHeartbeatStaleTrialCallback``), and a live driver asks it.

Status: a job is finished when its last live driver ends and the requested total is evaluated;
while other drivers run, an ending driver leaves it running. If a driver failed or died and the
total is short, the last one marks the job failed (`nas search --resume JOB` finishes it).

Every database call of the driver goes through `retry_transient`: a connection terminated by
the server (``pg_terminate_backend``, a restart) costs a short wait, never a trial. Each call
is safe to repeat: tell skips a trial already finished, the index skips existing numbers.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import optuna
import sqlalchemy as sa
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, Engine

from nas.db import _jobs as jobs_db
from nas.db._engine import database_url, engine_options, get_engine, retry_transient
from nas.db._models import TrialRow
from nas.search._coord import GRACE_S, HEARTBEAT_S, DriverEntry, Heartbeat, drivers, job_lock, new_driver_id
from nas.search._evaluators import (
    Evaluator,
    build_evaluator,
    build_space,
    cache_key,
    supernet_fingerprint,
)
from nas.search._metrics import CheapMetrics, MetricDef
from nas.search._pareto import pareto_mask, to_minimization
from nas.search._pool import make_pool
from nas.search._samplers import (
    CONSTRAINT_ATTR,
    SamplerContext,
    constraint_values,
    create_sampler,
    search_distributions,
)
from nas.search._spec import SearchSpec

__all__ = ["ProgressFn", "SearchResult", "optuna_storage", "update_front"]

ProgressFn = Callable[[int, int, dict[str, Any]], None]
"""Called after each finished trial with (expensive evaluations done, budget, info)."""

_ATTR = "nas"  # user attribute holding what the index needs: arch_id, metrics, cached, evaluation
STALE_RETRIES = 2
"""A trial whose driver died is enqueued again at most this many times."""
T = TypeVar("T")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's heartbeat API is experimental, and it expects `Study.optimize`; a driver asks and
    tells by hand and beats for its own trials (main thread only: warning filters are global)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


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


def optuna_storage(
    url: str | None = None, *, application_name: str | None = None, heartbeat: bool = False
) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on the service database (its own tables beside ours), with our
    engine options (pre-ping, recycle, `application_name`). `heartbeat`: trials of drivers
    silent for `GRACE_S` are failed and enqueued again (at most `STALE_RETRIES` times)."""
    resolved = database_url(url)
    kwargs: dict[str, Any] = engine_options(resolved, application_name)
    if resolved.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _quiet():
        beats: dict[str, Any] = {}
        if heartbeat:
            beats = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S,
                     "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=STALE_RETRIES)}
        return retry_transient(lambda: optuna.storages.RDBStorage(resolved, engine_kwargs=kwargs, **beats),
                               what="opening the Optuna storage")


def _evaluated_count(conn: Connection, job_id: str) -> int:
    return int(conn.scalar(sa.select(sa.func.count()).select_from(TrialRow)
                           .where(TrialRow.job_id == job_id, TrialRow.evaluation.is_not(None))) or 0)


def _claim(conn: Connection, job_id: str, arch_id: str, number: int) -> tuple[bool, int]:
    """(another trial of the job already holds an expensive evaluation of `arch_id`, the job's
    highest evaluation number)."""
    same = sa.case((sa.and_(TrialRow.arch_id == arch_id, TrialRow.number != number), 1), else_=0)
    top, taken = conn.execute(sa.select(sa.func.max(TrialRow.evaluation), sa.func.max(same)).where(
        TrialRow.job_id == job_id, TrialRow.evaluation.is_not(None))).one()
    return bool(taken), int(top or 0)


def _requested(entries: list[DriverEntry], spec: SearchSpec) -> int:
    """The job's requested total: the shares of its run and join drivers (``budget.trials`` for
    a job no driver registered on)."""
    return sum(e.trials for e in entries if e.role in ("run", "join")) or spec.budget.trials


class _Driver:
    def __init__(self, spec: SearchSpec, job: jobs_db.Job, url: str | None, progress: ProgressFn | None,
                 use_ray: bool | None, role: str, share: int | None) -> None:
        self.spec, self.job, self.progress, self.role = spec, job, progress, role
        self.id = new_driver_id()
        self.retries = 0
        app = f"nas-driver-{job.id}"
        self.engine = get_engine(url, application_name=app, cached=False)  # disposed by `close`
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
        seed = spec.budget.seed
        if role == "join":  # each joined driver explores its own part of the space
            seed = (seed + zlib.crc32(self.id.encode())) % 2**31
        self.share = share if share is not None else spec.budget.trials
        self.ctx = SamplerContext(self.space, self.objectives, self.cheap, self.constrained, seed, self.share)
        sampler = create_sampler(spec.sampler.name, self.ctx, spec.sampler.params)
        self.storage = optuna_storage(url, application_name=app, heartbeat=True)
        self.study = self._db(lambda: optuna.create_study(
            study_name=job.study_name, storage=self.storage, sampler=sampler,
            directions=[m.direction for m in self.objectives], load_if_exists=True,
        ), "opening the study")
        self.dists = search_distributions(self.space)
        self.pool = make_pool(spec.evaluator, spec.space, spec.budget.parallelism, self.local, use_ray)
        self.evaluated: dict[str, dict[str, float]] = {}
        self.tids: dict[int, int] = {}   # trial number -> trial id, for the trials this driver holds
        self.live: set[int] = set()      # trial ids in flight: the heartbeat thread keeps them alive
        self.entry: DriverEntry | None = None
        self.failed = self.mine = self.asked = self.base = 0

    # -------------------------------------------------------------------------------- helpers
    def _db(self, fn: Callable[[], T], what: str) -> T:
        def count(_: BaseException) -> None:
            self.retries += 1

        return retry_transient(fn, what=f"job {self.job.id}: {what}", on_retry=count)

    def _record(self, number: int, arch: dict[str, Any], values: dict[str, float], *, cached: bool,
                counts: bool, seconds: float) -> bool:
        """Tell and index one finished trial. `counts`: an expensive evaluation (or a cache hit
        new to the job), numbered job-wide unless another driver already evaluated the same
        architecture (then it is stored as a free cached duplicate). Returns whether it counted."""
        aid = self.space.arch_id(arch)
        calls = [0]

        def store(evaluation: int | None, dup: bool) -> bool:
            calls[0] += 1
            return self._store(number, aid, arch, values, cached or dup, evaluation, seconds, calls[0] > 1)

        if not counts:
            self._db(lambda: store(None, False), "recording a trial")
            return False

        def locked() -> bool:
            with job_lock(self.engine, self.job.id) as conn:
                taken, top = _claim(conn, self.job.id, aid, number)
                return store(None if taken else top + 1, taken) and not taken

        return self._db(locked, "recording a trial")

    def _store(self, number: int, aid: str, arch: dict[str, Any], values: dict[str, float], cached: bool,
               evaluation: int | None, seconds: float, retrying: bool) -> bool:
        """Tell and index; safe to repeat. False: not stored as COMPLETE by this call (its
        objectives are not finite, or another driver failed it as stale meanwhile)."""
        tid = self._tid(number)
        attrs = {"arch_id": aid, "arch": arch, "metrics": values, "cached": cached,
                 "evaluation": evaluation, "seconds": seconds}
        if retrying:  # the first attempt may have told (and indexed) it before losing its connection
            frozen = self.storage.get_trial(tid)
            if frozen.state == TrialState.COMPLETE and frozen.user_attrs.get(_ATTR):
                self._index([frozen])
                self.live.discard(tid)
                return frozen.user_attrs[_ATTR].get("evaluation") is not None
            if frozen.state.is_finished():
                self.live.discard(tid)
                return False
        violation = constraint_values(self.constrained, values)
        objective_values = [values[m.key] for m in self.objectives]
        try:
            self.storage.set_trial_user_attr(tid, _ATTR, attrs)
            self.storage.set_trial_user_attr(tid, CONSTRAINT_ATTR, violation)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.live.discard(tid)
            return False  # failed as stale by another driver, and enqueued again
        if any(not math.isfinite(v) for v in objective_values):
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            self.live.discard(tid)
            self.failed += 1
            return False
        told = self.study.tell(number, objective_values, skip_if_finished=True)
        self.live.discard(tid)
        if told.state != TrialState.COMPLETE:
            return False
        jobs_db.insert_trials(self.job.id, [jobs_db.TrialRecord(
            number, aid, arch, values, all(v <= 0 for v in violation), cached=cached, evaluation=evaluation,
            seconds=seconds,
        )], self.slots, engine=self.engine)
        return True

    def _tid(self, number: int) -> int:
        if number not in self.tids:
            self.tids[number] = self.storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        return self.tids[number]

    def _fail(self, number: int, error: str | None) -> None:
        tid = self._tid(number)

        def once() -> None:
            if error is not None:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    self.storage.set_trial_user_attr(tid, "error", error)
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)

        self._db(once, "failing a trial")
        self.live.discard(tid)

    def _index(self, complete: list[FrozenTrial]) -> None:
        """Index COMPLETE trials from their user attributes (numbers already indexed are skipped)."""
        records = []
        for t in complete:
            a = t.user_attrs.get(_ATTR)
            if not a:
                continue
            violation = t.user_attrs.get(CONSTRAINT_ATTR, [])
            records.append(jobs_db.TrialRecord(
                t.number, a["arch_id"], a["arch"], a["metrics"], all(v <= 0 for v in violation),
                cached=a["cached"], evaluation=a["evaluation"], seconds=a.get("seconds", 0.0),
            ))
        if records:
            jobs_db.insert_trials(self.job.id, records, self.slots, engine=self.engine)

    def _sync_index(self) -> None:
        """Index complete trials the index lacks (a driver that died between tell and insert)."""
        def sync() -> None:
            have = set(jobs_db.trial_numbers(self.job.id, engine=self.engine))
            self._index([t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                         if t.number not in have])

        self._db(sync, "re-indexing trials")

    def _load_evaluated(self) -> None:
        trials = self._db(lambda: self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                          "reading the study")
        for t in trials:
            a = t.user_attrs.get(_ATTR)
            if a and a.get("evaluation") is not None:
                self.evaluated[a["arch_id"]] = a["metrics"]

    def _evaluations(self) -> int:
        def count() -> int:
            with self.engine.connect() as conn:
                return _evaluated_count(conn, self.job.id)

        return self._db(count, "counting evaluations")

    def _status(self) -> str:
        return self._db(lambda: jobs_db.get_job(self.job.id, engine=self.engine).status, "reading the job")

    def _cache_put(self, aid: str, values: dict[str, float]) -> None:
        entry = (cache_key(str(self.fingerprint), aid), str(self.fingerprint), aid, values)
        with contextlib.suppress(sa.exc.IntegrityError):  # another driver stored the same key first
            self._db(lambda: jobs_db.cache_put([entry], engine=self.engine), "caching an evaluation")

    def _ask(self) -> optuna.Trial:
        with _quiet():
            trial = self._db(lambda: self.study.ask(self.dists), "asking for a trial")
        self.asked += 1
        self.tids[trial.number] = trial._trial_id
        self.live.add(trial._trial_id)
        self._db(lambda: self.storage.record_heartbeat(trial._trial_id), "recording a heartbeat")
        return trial

    def _beat(self) -> None:
        """The heartbeat thread's work: in-flight trials, this driver's entry, the job row."""
        for tid in list(self.live):
            self._db(lambda: self.storage.record_heartbeat(tid), "recording a heartbeat")  # noqa: B023
        if self.entry is not None:
            self._db(lambda: self.entry.save(self.study), "registering the driver")  # type: ignore[union-attr]
        self._db(lambda: jobs_db.update_job(self.job.id, heartbeat=True, engine=self.engine), "job heartbeat")

    # ------------------------------------------------------------------------ start and end
    def _start(self) -> list[FrozenTrial]:
        """Register this driver; returns the trials it must evaluate again (a resume's orphans)."""
        entries = self._db(lambda: drivers(self.storage, self.study._study_id), "reading the drivers")
        redo: list[FrozenTrial] = []
        self._sync_index()
        self._load_evaluated()
        if self.role == "resume":
            for e in entries:
                if e.state in ("running", "failed"):  # dead (resume_search checked): taken over
                    e.state = "replaced"
                    self._db(lambda: e.save(self.study), "registering the driver")  # noqa: B023
            self.base = self._evaluations()
            self.share = max(0, _requested(entries, self.spec) - self.base)
            orphans = self._db(lambda: self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)),
                               "reading the study")
            for t in orphans:
                self.tids[t.number] = t._trial_id
                if set(self.dists) <= set(t.params):
                    redo.append(t)
                    self.live.add(t._trial_id)
                else:  # its driver died while asking for it: no architecture to evaluate
                    self._fail(t.number, "orphaned: its driver died while asking for it")
        self.entry = DriverEntry(self.id, self.role, self.share)
        self._db(lambda: self.entry.save(self.study), "registering the driver")  # type: ignore[union-attr]
        return redo

    def close(self) -> None:
        """Close this driver's connections (ours and Optuna's)."""
        self.engine.dispose()
        self.storage.engine.dispose()

    def end(self, state: str, error: str | None = None) -> bool:
        """Record how this driver ended; returns whether other drivers of the job still live."""
        if self.entry is None:
            return False
        self.entry.state, self.entry.error = state, error
        self._db(lambda: self.entry.save(self.study), "registering the driver")  # type: ignore[union-attr]
        entries = self._db(lambda: drivers(self.storage, self.study._study_id), "reading the drivers")
        return any(e.alive() for e in entries if e.id != self.id)

    def finalize(self) -> tuple[str, str | None]:
        """As the job's last live driver: fail trials nobody holds any more (an ask whose
        connection was lost after it created its trial), then the job's status and error."""
        for t in self._db(lambda: self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)),
                          "reading the study"):
            self._fail(t.number, "orphaned: no live driver holds this trial")
        entries = self._db(lambda: drivers(self.storage, self.study._study_id), "reading the drivers")
        requested, done = _requested(entries, self.spec), self._evaluations()
        dead = [e for e in entries if e.state in ("running", "failed")]
        if dead and done < requested:
            return "failed", (f"{done} of {requested} requested evaluations; driver(s) "
                              f"{', '.join(e.id for e in dead)} ended early; "
                              f"`nas search --resume {self.job.id}` finishes the job.")
        return "finished", None

    # -------------------------------------------------------------------------------- the loop
    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        redo = self._start()
        beat = Heartbeat(self._beat)
        beat.start()
        try:
            status = self._loop(t0, redo)
        finally:
            beat.stop()
            self.pool.close()
        front = self._db(lambda: update_front(self.job.id, self.metrics, engine=self.engine), "storing the front")
        trials = self._db(lambda: len(self.study.get_trials(deepcopy=False)), "reading the study")
        info = {"driver": self.id, "role": self.role, "share": self.share, "mine": self.mine,
                "asked": self.asked, "db_retries": self.retries}
        return SearchResult(self.job.id, trials, self._evaluations(), front, status,
                            time.perf_counter() - t0, self.failed, info)

    def _loop(self, t0: float, redo: list[FrozenTrial]) -> str:
        pending: dict[int, tuple[int, dict[str, Any], dict[str, float]]] = {}   # ticket -> (trial, arch, cheap)
        waiting: dict[str, list[tuple[int, dict[str, Any]]]] = {}              # arch_id in flight -> duplicates
        in_flight: dict[str, int] = {}
        duplicates_in_a_row, status, last_sweep = 0, "finished", time.monotonic()
        max_asks = 20 * self.share + 200

        def started() -> int:
            return self.mine + len(in_flight)

        def submit(number: int, arch: dict[str, Any]) -> None:
            aid = self.space.arch_id(arch)
            cheap = self.cheap(arch)
            if aid in self.evaluated:
                self._record(number, arch, {**self.evaluated[aid], **cheap}, cached=True, counts=False, seconds=0.0)
                return
            if aid in in_flight:
                waiting.setdefault(aid, []).append((number, arch))
                return
            key = cache_key(str(self.fingerprint), aid)
            hit = self._db(lambda: jobs_db.cache_get([key], engine=self.engine), "reading the cache").get(key)
            if hit is not None:
                self.evaluated[aid] = hit
                self.mine += self._record(number, arch, {**hit, **cheap}, cached=True, counts=True, seconds=0.0)
                self._report()
                return
            in_flight[aid] = number
            pending[self.pool.submit(arch)] = (number, arch, cheap)

        for t in redo:
            submit(t.number, self.space.from_params({k: t.params[k] for k in self.dists if k in t.params}))
        while True:
            if self._status() == "cancelled":  # one indexed read per round: a cancel is never missed
                status = "cancelled"
                break
            now = time.monotonic()
            if now - last_sweep > HEARTBEAT_S:  # trials of drivers that died: failed, enqueued again
                last_sweep = now
                with _quiet():
                    self._db(lambda: fail_stale_trials(self.study), "failing stale trials")
            timeout = self.spec.budget.timeout_s
            timed_out = timeout is not None and time.perf_counter() - t0 > timeout
            exhausted = duplicates_in_a_row > 200 or self.asked > max_asks
            while (not timed_out and not exhausted and started() < self.share
                   and self.pool.busy < self.pool.size):
                trial = self._ask()
                arch = self.space.from_params(trial.params)
                aid = self.space.arch_id(arch)
                duplicates_in_a_row = duplicates_in_a_row + 1 if (aid in self.evaluated or aid in in_flight) else 0
                submit(trial.number, arch)
                exhausted = duplicates_in_a_row > 200 or self.asked > max_asks
            if not pending:
                break
            for ticket, values, error, seconds in self.pool.wait():
                number, arch, cheap = pending.pop(ticket)
                aid = self.space.arch_id(arch)
                in_flight.pop(aid, None)
                if values is None:
                    self.failed += 1
                    self._fail(number, error)
                    for dup, _ in waiting.pop(aid, []):
                        self._fail(dup, f"duplicate of trial {number}, whose evaluation failed")
                    self._report(error=error)
                    continue
                values = {k: float(v) for k, v in values.items()}
                self.evaluated[aid] = values
                self._cache_put(aid, values)
                self.mine += self._record(number, arch, {**values, **cheap}, cached=False, counts=True,
                                          seconds=seconds)
                for dup, darch in waiting.pop(aid, []):
                    self._record(dup, darch, {**values, **cheap}, cached=True, counts=False, seconds=0.0)
                self._report()
        return status

    def _report(self, error: str | None = None) -> None:
        if self.progress is not None:
            self.progress(self.base + min(self.mine, self.share), self.base + self.share,
                          {"error": error, "failed": self.failed})


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
