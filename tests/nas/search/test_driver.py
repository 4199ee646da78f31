"""The search driver on SQLite and PostgreSQL: budget accounting with duplicates, the evaluation
cache across jobs, resuming a job whose driver died, cancellation, and bad input that leaves
nothing behind."""

from __future__ import annotations

import csv
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

import latency_tables as lt
import search_spaces as ss
from nas.db import _jobs as jobs_db
from nas.db._engine import get_engine
from nas.search import (
    SAMPLERS,
    SearchSpecError,
    TableEvaluator,
    _driver,
    hypervolume_history,
    resume_search,
    run_search,
    search_distributions,
    trials,
)

SPACE = ss.get_space("nb201")
Check = Callable[..., list[dict[str, Any]]]


class DriverDied(Exception):
    """Raised from a progress callback: the driver dies between two trials."""


class DriverKilled(BaseException):
    """Raised inside an evaluation, past the pool's `except Exception`: the driver dies with a
    trial RUNNING (like a SIGKILL or Ctrl-C mid-evaluation)."""


class RepeatSampler(optuna.samplers.BaseSampler):
    """Proposes distinct architectures, each `repeat` times in a row (trial n: arch n // repeat)."""

    def __init__(self, space: ss.SearchSpace, repeat: int = 2) -> None:
        self.space, self.repeat = space, repeat
        self.dists = search_distributions(space)
        self.archs: list[dict[str, Any]] = []
        seen: set[str] = set()
        for seed in range(1000, 2000):
            a = space.sample(seed=seed)
            if space.arch_id(a) not in seen:
                seen.add(space.arch_id(a))
                self.archs.append(a)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return dict(self.dists)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return self.space.to_params(self.archs[trial.number // self.repeat])

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        raise AssertionError(f"unexpected independent sampling of {name}")


@pytest.fixture
def repeat_sampler(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(
        SAMPLERS._factories, "test-repeat", lambda ctx, params: RepeatSampler(ctx.space, **params)
    )
    return "test-repeat"


class Calls(list):  # type: ignore[type-arg]
    """Arch ids of the real table lookups, in order; ``hooks[k]`` is raised by the k-th (1-based)."""

    hooks: dict[int, BaseException]


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """Spies on (and may break) `TableEvaluator.evaluate` in the driver's process."""
    calls = Calls()
    calls.hooks = {}
    original = TableEvaluator.evaluate

    def spy(self: TableEvaluator, arch: Any) -> dict[str, float]:
        calls.append(self.space.arch_id(arch))
        if len(calls) in calls.hooks:
            raise calls.hooks[len(calls)]
        return original(self, arch)

    monkeypatch.setattr(TableEvaluator, "evaluate", spy)
    yield calls


def job_id(tag: str) -> str:
    return f"test-{tag}-{uuid.uuid4().hex[:10]}"


class Clock:
    """Stands in for the driver's `time` module: `monotonic` advances by `step` per call."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 1000.0, step
        self.perf_counter = time.perf_counter

    def monotonic(self) -> float:
        self.t += self.step
        return self.t


# ------------------------------------------------------------------------------------ duplicates
def test_duplicates_do_not_consume_budget_and_are_marked_cached(
    db_url: str,
    make_spec: Callable[..., dict[str, Any]],
    repeat_sampler: str,
    evaluations: Calls,
    check_job: Check,
    nb201_accuracy: dict[str, float],
) -> None:
    jid = job_id("dup")
    result = run_search(make_spec(trials=5, sampler=repeat_sampler), url=db_url, job_id=jid)
    assert (result.job_id, result.status, result.evaluations, result.trials) == (jid, "finished", 5, 9)
    assert len(evaluations) == 5 and len(set(evaluations)) == 5

    rows = check_job(jid, db_url, 5, nb201_accuracy)
    assert [r["number"] for r in rows] == list(range(9))
    for r in rows:
        if r["number"] % 2:
            prev = rows[r["number"] - 1]
            assert r["cached"] and r["evaluation"] is None and r["seconds"] == 0.0
            assert r["arch_id"] == prev["arch_id"]
            assert {k: r[k] for k in ("accuracy", "latency_ms@local-cpu", "macs", "params", "feasible")} == {
                k: prev[k] for k in ("accuracy", "latency_ms@local-cpu", "macs", "params", "feasible")
            }
        else:
            assert not r["cached"] and r["evaluation"] == r["number"] // 2 + 1

    # Optuna's tables live beside the service's, and the study is a plain Optuna study.
    tables = set(sa.inspect(get_engine(db_url)).get_table_names())
    assert {
        "studies",
        "trials",
        "trial_user_attributes",
        "nas_jobs",
        "nas_trials",
        "nas_eval_cache",
    } <= tables
    study = optuna.load_study(study_name=jid, storage=db_url)
    assert [t.user_attrs["nas"]["cached"] for t in study.trials] == [bool(n % 2) for n in range(9)]
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]

    hv = hypervolume_history(jid, engine=get_engine(db_url))
    assert [e for e, _ in hv] == sorted(e for e, _ in hv) and hv[-1][0] == 5
    assert [v for _, v in hv] == sorted(v for _, v in hv) and hv[-1][1] > 0


# ----------------------------------------------------------------------------------- eval cache
def test_evaluation_cache_across_jobs(
    db_url: str,
    make_spec: Callable[..., dict[str, Any]],
    evaluations: Calls,
    tmp_path: Path,
    check_job: Check,
    nb201_accuracy: dict[str, float],
) -> None:
    spec = make_spec(trials=5, seed=0)
    first = run_search(spec, url=db_url, job_id=job_id("cache-a"))
    assert len(evaluations) == 5
    rows_a = {r["arch_id"]: r for r in check_job(first.job_id, db_url, 5, nb201_accuracy)}
    assert not any(r["cached"] for r in rows_a.values())

    with pytest.raises(ValueError, match="already exists"):
        run_search(spec, url=db_url, job_id=first.job_id)
    assert len(jobs_db.list_jobs(engine=get_engine(db_url))) == 1

    # Same table file: the second job's evaluations all come from the cache.
    second = run_search(spec, url=db_url, job_id=job_id("cache-b"))
    assert len(evaluations) == 5, "the table was read again instead of the cache"
    assert second.evaluations == 5
    rows_b = check_job(second.job_id, db_url, 5, nb201_accuracy)
    assert {r["arch_id"] for r in rows_b} == set(rows_a)
    for r in rows_b:
        assert r["cached"] and r["seconds"] == 0.0
        assert r["accuracy"] == rows_a[r["arch_id"]]["accuracy"]

    # Another table (other content, other fingerprint) is evaluated afresh.
    other = tmp_path / "other.csv"
    with open(spec["evaluator"]["path"], newline="") as src, open(other, "w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=list(reader.fieldnames or []))
        writer.writeheader()
        for row in reader:
            if SPACE.arch_id(SPACE.from_str(row["arch"])) in rows_a:
                row["cifar10-val"] = str(float(row["cifar10-val"]) + 1.0)
                writer.writerow(row)
    third = run_search({**spec, "evaluator": {**spec["evaluator"], "path": str(other)}}, url=db_url)
    assert len(evaluations) == 10
    for r in trials(third.job_id, engine=get_engine(db_url)):
        assert not r["cached"] and r["accuracy"] == pytest.approx(rows_a[r["arch_id"]]["accuracy"] + 1.0)


# --------------------------------------------------------------------------------------- resume
def test_resume_after_the_driver_died_between_trials(
    db_url: str,
    make_spec: Callable[..., dict[str, Any]],
    check_job: Check,
    nb201_accuracy: dict[str, float],
) -> None:
    jid = job_id("resume")

    def die(done: int, total: int, info: dict[str, Any]) -> None:
        if done == 4:
            raise DriverDied("driver lost")

    with pytest.raises(DriverDied):
        run_search(
            make_spec(trials=10, sampler="tpe", params={"n_startup_trials": 3}),
            url=db_url,
            job_id=jid,
            progress=die,
        )
    engine = get_engine(db_url)
    job = jobs_db.get_job(jid, engine=engine)
    assert job.status == "failed" and job.error == "DriverDied: driver lost"
    before = {r["number"]: r for r in trials(jid, engine=engine)}
    assert sorted(r["evaluation"] for r in before.values()) == [1, 2, 3, 4]

    done: list[int] = []
    result = resume_search(jid, url=db_url, progress=lambda d, t, i: done.append(d))
    assert result.status == "finished" and result.evaluations == 10
    assert done[-1] == 10
    rows = check_job(jid, db_url, 10, nb201_accuracy)
    after = {r["number"]: r for r in rows}
    for number, r in before.items():  # nothing lost or rewritten
        assert after[number] == r | {"on_front": after[number]["on_front"]}
    assert jobs_db.get_job(jid, engine=engine).status == "finished"

    with pytest.raises(ValueError, match="already finished"):
        resume_search(jid, url=db_url)
    with pytest.raises(KeyError, match="Unknown job 'test-nope'"):
        resume_search("test-nope", url=db_url)


def test_resume_reevaluates_a_trial_left_running(
    db_url: str,
    make_spec: Callable[..., dict[str, Any]],
    evaluations: Calls,
    check_job: Check,
    nb201_accuracy: dict[str, float],
) -> None:
    jid = job_id("killed")
    evaluations.hooks[4] = DriverKilled()
    with pytest.raises(DriverKilled):
        run_search(make_spec(trials=7), url=db_url, job_id=jid)
    assert jobs_db.get_job(jid, engine=get_engine(db_url)).status == "failed"
    study = optuna.load_study(study_name=jid, storage=db_url)
    running = [t for t in study.trials if t.state == TrialState.RUNNING]
    assert len(running) == 1
    orphan = running[0]
    assert len(trials(jid, engine=get_engine(db_url))) == 3

    result = resume_search(jid, url=db_url)
    assert result.status == "finished" and result.evaluations == 7
    assert evaluations[4] == evaluations[3], "the orphaned trial's architecture is evaluated first"
    rows = check_job(jid, db_url, 7, nb201_accuracy)
    redone = next(r for r in rows if r["number"] == orphan.number)
    assert redone["arch_id"] == SPACE.arch_id(SPACE.from_params(orphan.params))
    assert not redone["cached"] and redone["evaluation"] == 4


# --------------------------------------------------------------------------------------- cancel
def _cancel_at(jid: str, url: str, at: int) -> Callable[[int, int, dict[str, Any]], None]:
    def cb(done: int, total: int, info: dict[str, Any]) -> None:
        if done == at:
            assert jobs_db.update_job(jid, status="cancelled", expect=("running",), engine=get_engine(url))

    return cb


def test_cancel_stops_the_job(
    db_url: str,
    make_spec: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The driver polls the job's status with its heartbeat; here every loop is a heartbeat."""
    monkeypatch.setattr(_driver, "time", Clock(step=10.0))
    jid = job_id("cancel")
    result = run_search(make_spec(trials=20), url=db_url, job_id=jid, progress=_cancel_at(jid, db_url, 3))
    assert result.status == "cancelled" and result.evaluations == 3
    assert jobs_db.get_job(jid, engine=get_engine(db_url)).status == "cancelled"
    rows = trials(jid, engine=get_engine(db_url))
    assert len(rows) == 3 and any(r["on_front"] for r in rows)


def test_a_cancel_between_heartbeats_is_not_lost(
    db_url: str,
    make_spec: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A short job (shorter than the heartbeat) cancelled mid-way must not end as 'finished'."""
    monkeypatch.setattr(_driver, "time", Clock(step=0.0))  # the whole run within one heartbeat
    jid = job_id("cancel-lost")
    result = run_search(make_spec(trials=8), url=db_url, job_id=jid, progress=_cancel_at(jid, db_url, 3))
    assert jobs_db.get_job(jid, engine=get_engine(db_url)).status == "cancelled"
    assert result.status == "cancelled"


# ---------------------------------------------------------------------------- failed evaluations
def test_a_failed_evaluation_costs_only_its_trial(
    db_url: str,
    make_spec: Callable[..., dict[str, Any]],
    evaluations: Calls,
    check_job: Check,
    nb201_accuracy: dict[str, float],
) -> None:
    evaluations.hooks[2] = RuntimeError("GPU fell off the bus")
    evaluations.hooks[5] = ValueError("bad subnet")
    infos: list[dict[str, Any]] = []
    result = run_search(make_spec(trials=6), url=db_url, progress=lambda d, t, i: infos.append(i))
    assert result.status == "finished" and result.failed == 2 and result.evaluations == 6
    check_job(result.job_id, db_url, 6, nb201_accuracy)
    failed = [
        t
        for t in optuna.load_study(study_name=result.job_id, storage=db_url).trials
        if t.state == TrialState.FAIL
    ]
    assert sorted(t.user_attrs["error"] for t in failed) == [
        "RuntimeError: GPU fell off the bus",
        "ValueError: bad subnet",
    ]
    assert [i["error"] for i in infos if i["error"]] == [
        "RuntimeError: GPU fell off the bus",
        "ValueError: bad subnet",
    ]


# ---------------------------------------------------------------------- bad input, nothing behind
def _bad(name: str, spec: dict[str, Any], tmp_path: Path, device: str) -> dict[str, Any]:
    ev = spec["evaluator"]
    latency = {"name": "latency_ms", "direction": "minimize"}
    return {
        "missing latency table": {
            **spec,
            "objectives": [spec["objectives"][0], {**latency, "device": device}],
            "constraints": [],
        },
        "unknown device": {
            **spec,
            "objectives": [spec["objectives"][0], {**latency, "device": "pixel-99"}],
            "constraints": [],
        },
        "bad csv column": {**spec, "evaluator": {**ev, "columns": {"accuracy": "cifar10-vall"}}},
        "bad csv key": {**spec, "evaluator": {**ev, "key": "cell"}},
        "missing csv": {**spec, "evaluator": {**ev, "path": str(tmp_path / "nope.csv")}},
        "unknown metric": {**spec, "metrics": [{"name": "energy_mj", "direction": "minimize"}]},
        "unknown space": {**spec, "space": {"name": "nb202"}},
        "bad spec": {**spec, "budget": {"trials": 0}},
    }[name]


BAD = {
    "missing latency table": (FileNotFoundError, "nas latency measure --device test-board-without-tables"),
    "unknown device": (KeyError, "pixel-99.*local-cpu"),
    "bad csv column": (ValueError, "'cifar10-vall'.*columns: index, arch, cifar10-test"),
    "bad csv key": (ValueError, "no key column 'cell'"),
    "missing csv": (FileNotFoundError, "nope.csv"),
    "unknown metric": (ValueError, "'energy_mj'.*allowed: accuracy, latency_ms"),
    "unknown space": (KeyError, "nb202"),
    "bad spec": (SearchSpecError, "budget.trials"),
}


def _nothing_behind(url: str, case: str) -> None:
    assert jobs_db.list_jobs(engine=get_engine(url)) == [], case
    assert optuna.study.get_all_study_names(storage=url) == [], case


def test_bad_input_leaves_no_job_behind(
    db_url: str,
    make_spec: Callable[..., dict[str, Any]],
    tmp_path: Path,
    tableless_device: str,
) -> None:
    """Each bad input raises its clear error before a job or a study exists (one database for all
    the cases: nothing may appear in it)."""
    for case, (exc, pattern) in BAD.items():
        with pytest.raises(exc, match=pattern):
            run_search(_bad(case, make_spec(), tmp_path, tableless_device), url=db_url)
        _nothing_behind(db_url, case)

    # A user table lacking an op that only some architectures use (neither the smallest nor the
    # largest subnet has avg_pool_3x3) must fail up front too, not kill the driver mid-search.
    import json

    data = json.loads(lt.shipped_table_path("local-cpu", "nb201").read_text())
    data["entries"] = [e for e in data["entries"] if "avg_pool_3x3" not in e["key"]]
    user = lt.user_table_path("local-cpu", "nb201")
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps(data))
    with pytest.raises(lt.MissingOpKey, match="avg_pool_3x3"):
        run_search(make_spec(), url=db_url)
    _nothing_behind(db_url, "table missing an op")


@pytest.mark.parametrize("sampler", [{"name": "annealing"}, {"name": "tpe", "params": {"n_startup": 3}}])
def test_bad_sampler_leaves_no_job_behind(
    sampler: dict[str, Any],
    sqlite_url: str,
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    with pytest.raises((KeyError, ValueError), match="annealing|n_startup"):
        run_search({**make_spec(), "sampler": sampler}, url=sqlite_url)
    _nothing_behind(sqlite_url, str(sampler))


# ------------------------------------------------------------------------------------------ Ray
@pytest.mark.slow
def test_ray_pool_with_two_evaluators(
    sqlite_url: str,
    make_spec: Callable[..., dict[str, Any]],
    repeat_sampler: str,
    check_job: Check,
    nb201_accuracy: dict[str, float],
) -> None:
    """parallelism 2 through RayPool (it starts a local Ray of 2 CPUs and stops it): the same
    contract, with duplicates of in-flight architectures waiting for their evaluation."""
    ray = pytest.importorskip("ray")
    already = ray.is_initialized()  # another test's Ray: RayPool uses it and leaves it running
    spec = make_spec(trials=6, sampler=repeat_sampler)
    spec["budget"]["parallelism"] = 2
    try:
        result = run_search(spec, url=sqlite_url, use_ray=True)
        assert ray.is_initialized() == already, "RayPool left the Ray it started running"
    finally:
        if ray.is_initialized() and not already:
            ray.shutdown()
    assert result.status == "finished" and result.evaluations == 6 and result.failed == 0
    rows = check_job(result.job_id, sqlite_url, 6, nb201_accuracy)
    by_arch: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_arch.setdefault(r["arch_id"], []).append(r)
    assert len(by_arch) == 6
    for group in by_arch.values():  # one evaluation per architecture, its repeats cached
        assert sum(not r["cached"] for r in group) == 1
        assert len({r["accuracy"] for r in group}) == 1
    assert all(r["seconds"] > 0 for r in rows if not r["cached"])
    assert len(rows) >= 11


# ------------------------------------------------------------------------------ other evaluators
def test_predictor_evaluator_search(
    sqlite_url: str,
    make_spec: Callable[..., dict[str, Any]],
    tmp_path: Path,
    nb201_accuracy: dict[str, float],
) -> None:
    """Accuracy from a saved predictor: every trial's accuracy is the predictor's, and the cache
    is keyed by the predictor's content (a refit predictor is evaluated afresh)."""
    import numpy as np

    import predictors as pr

    archs = [SPACE.sample(seed=s) for s in range(60)]
    X = np.stack([SPACE.encode(a) for a in archs])
    y = np.array([nb201_accuracy[SPACE.arch_id(a)] for a in archs])
    model = pr.create_predictor("gbdt", seed=0).fit(X, y)
    model.save(tmp_path / "pred")
    spec = {**make_spec(trials=5), "evaluator": {"kind": "predictor", "path": str(tmp_path / "pred")}}
    result = run_search(spec, url=sqlite_url)
    assert result.status == "finished" and result.evaluations == 5
    rows = trials(result.job_id, engine=get_engine(sqlite_url))
    mean, _ = pr.load_predictor(tmp_path / "pred").predict(np.stack([SPACE.encode(r["arch"]) for r in rows]))
    assert [r["accuracy"] for r in rows] == pytest.approx(list(mean), rel=1e-9)
    assert not any(r["cached"] for r in rows)

    again = run_search(spec, url=sqlite_url)
    assert all(r["cached"] for r in trials(again.job_id, engine=get_engine(sqlite_url)))
    pr.create_predictor("gbdt", seed=0).fit(X[:30], y[:30]).save(tmp_path / "pred2")
    refit = run_search(
        {**spec, "evaluator": {"kind": "predictor", "path": str(tmp_path / "pred2")}}, url=sqlite_url
    )
    assert not any(r["cached"] for r in trials(refit.job_id, engine=get_engine(sqlite_url)))
