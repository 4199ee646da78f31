"""Storage robustness and fault tolerance against the real PostgreSQL (issue 9): several driver
processes on one job, a Ray evaluator killed mid-trial, a driver killed with SIGKILL and the job
resumed from the CLI, the driver's own database connections terminated by the server mid-run.

Drivers run as real `nas` processes where the scenario needs processes; slowed evaluations
(`_reliability_hooks`) keep each job running long enough to be hurt mid-way."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from nas.db import _jobs as jobs_db
from nas.db._engine import get_engine
from nas.db._migrate import ensure_schema
from nas.search import TableEvaluator, run_search
from tests.nas.search._reliability_hooks import (
    BackendTerminator,
    EvaluatorKiller,
    kill_when_indexed,
    nas_process,
    pending_job,
    ray_runtime_env,
)
from tests.nas.search.conftest import make_db_url

pytestmark = pytest.mark.slow

Check = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def pg_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for url in make_db_url("postgresql", tmp_path):
        monkeypatch.setenv("NAS_DATABASE_URL", url)
        ensure_schema(get_engine(url))
        yield url


def _study_states(url: str, job_id: str) -> dict[str, int]:
    study = optuna.load_study(study_name=job_id, storage=url)
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# ----------------------------------------------------------------------- 8 drivers on one job
def test_eight_driver_processes_share_one_job(
    pg_url: str, tmp_path: Path, make_spec: Callable[..., dict[str, Any]], check_job: Check,
    nb201_accuracy: dict[str, float],
) -> None:
    """8 `nas search --join JOB --trials 50` processes at once: exactly 400 expensive evaluations,
    numbered 1..400 job-wide, no architecture evaluated twice, no errors, the job finished."""
    jid = pending_job(pg_url, make_spec(trials=50))
    procs = [nas_process("search", "--join", jid, "--trials", 50, url=pg_url, home=tmp_path / "home")
             for _ in range(8)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
        assert "this driver: 50 of its 50 evaluations" in out, out
    assert jobs_db.get_job(jid, engine=get_engine(pg_url)).status == "finished"
    check_job(jid, pg_url, 400, nb201_accuracy)
    states = _study_states(pg_url, jid)
    assert set(states) == {"COMPLETE"}, states


# -------------------------------------------------------------------- a Ray evaluator killed
def test_a_killed_ray_evaluator_fails_its_trial_and_the_job_completes(
    pg_url: str, tmp_path: Path, make_spec: Callable[..., dict[str, Any]], check_job: Check,
    nb201_accuracy: dict[str, float],
) -> None:
    """SIGKILL an evaluator actor's process mid-evaluation: that trial is FAIL with the error in
    its user attributes, the pool starts a new actor, and the job still gets all 6 evaluations."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("another test's Ray is running (this one needs its own worker hook)")
    announced = tmp_path / "pids"
    announced.mkdir()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env=ray_runtime_env(announced, slow_s=1.0))
    killer = EvaluatorKiller(announced, count=1)
    killer.start()
    spec = make_spec(trials=6)
    spec["budget"]["parallelism"] = 2
    try:
        result = run_search(spec, url=pg_url, use_ray=True)
    finally:
        killed = killer.stop()
        ray.shutdown()
    assert killed, "no evaluation started"
    assert result.status == "finished" and result.evaluations == 6 and result.failed == 1
    check_job(result.job_id, pg_url, 6, nb201_accuracy)
    study = optuna.load_study(study_name=result.job_id, storage=pg_url)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["error"].startswith("evaluator actor died"), failed


# ------------------------------------------------------------ a driver killed, then resumed
def test_a_killed_driver_is_resumed_from_the_cli(
    pg_url: str, tmp_path: Path, make_spec: Callable[..., dict[str, Any]], check_job: Check,
    nb201_accuracy: dict[str, float],
) -> None:
    """SIGKILL `nas search SPEC` mid-job; `nas search --resume JOB` ends with exactly the
    requested 60 evaluations (the trial it left RUNNING evaluated again under its own number)."""
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(make_spec(trials=60)))
    driver = nas_process("search", spec_path, url=pg_url, home=tmp_path / "home", slow_s=0.05)
    jid = kill_when_indexed(driver, pg_url, at=10)
    assert jid is not None, "the driver ended before 10 trials"
    engine = get_engine(pg_url)
    assert jobs_db.get_job(jid, engine=engine).status == "running"  # nobody told it the driver died
    assert len(jobs_db.trial_numbers(jid, engine=engine)) < 60

    resumed = nas_process("search", "--resume", jid, url=pg_url, home=tmp_path / "home")
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out
    assert f"job {jid}: finished" in out, out
    check_job(jid, pg_url, 60, nb201_accuracy)


# --------------------------------------------------- the server terminates the job's backends
def test_the_job_survives_pg_terminate_backend(
    pg_url: str, make_spec: Callable[..., dict[str, Any]], check_job: Check,
    nb201_accuracy: dict[str, float], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The driver names its connections ``nas-driver-<job>``; terminating them over and over
    (idle ones and ones in use) mid-run costs retries, not trials."""
    real = TableEvaluator.evaluate

    def slow(self: TableEvaluator, arch: Any) -> dict[str, float]:
        time.sleep(0.02)
        return real(self, arch)

    monkeypatch.setattr(TableEvaluator, "evaluate", slow)
    jid = f"test-terminate-{uuid.uuid4().hex[:10]}"
    terminator = BackendTerminator(pg_url, jid, after=5, rounds=8, every=0.5)
    terminator.start()
    try:
        result = run_search(make_spec(trials=50), url=pg_url, job_id=jid)
    finally:
        terminated = terminator.stop()
    assert terminated >= 3, terminator.terminated
    assert result.status == "finished" and result.evaluations == 50, result
    check_job(jid, pg_url, 50, nb201_accuracy)
    # An ask whose connection died after it created its trial leaves that trial empty; the
    # driver asks again, and fails the empty one explicitly when the job ends.
    study = optuna.load_study(study_name=jid, storage=pg_url)
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        assert t.user_attrs["error"].startswith("orphaned") and "nas" not in t.user_attrs, t


# -------------------------------------------------------------------------- idempotent index
def test_insert_trials_is_idempotent_under_concurrency(pg_url: str) -> None:
    """Four threads inserting overlapping trial numbers at once: each number stored once, no error."""
    engine = get_engine(pg_url)
    job = jobs_db.create_job(kind="search", name="idem", spec={}, engine=engine)
    records = [jobs_db.TrialRecord(n, f"a{n}", {"n": n}, {"acc": float(n)}, True) for n in range(40)]
    counts: list[int] = []
    errors: list[BaseException] = []

    def insert(part: list[jobs_db.TrialRecord]) -> None:
        try:
            counts.append(jobs_db.insert_trials(job.id, part, {"acc": 0}, engine=engine))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=(records[i * 10 : i * 10 + 20],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sum(counts) == 40
    assert sorted(jobs_db.trial_numbers(job.id, engine=engine)) == list(range(40))
    assert jobs_db.insert_trials(job.id, records, {"acc": 0}, engine=engine) == 0


# ------------------------------------------------------------- a driver killed while asking
class _Died(Exception):
    pass


def test_resume_fails_a_trial_its_driver_died_asking_for(
    pg_url: str, make_spec: Callable[..., dict[str, Any]], check_job: Check, nb201_accuracy: dict[str, float],
) -> None:
    """A driver killed inside ``ask`` leaves a RUNNING trial with only some parameters: the resume
    fails it explicitly (nothing to evaluate) and still completes every requested evaluation."""
    from nas.search import resume_search, search_distributions
    from search_spaces import get_space

    def die(done: int, total: int, info: dict[str, Any]) -> None:
        if done == 3:
            raise _Died("driver lost")

    jid = f"test-ask-{uuid.uuid4().hex[:10]}"
    with pytest.raises(_Died):
        run_search(make_spec(trials=8), url=pg_url, job_id=jid, progress=die)
    study = optuna.load_study(study_name=jid, storage=pg_url)
    name, dist = next(iter(search_distributions(get_space("nb201")).items()))
    half = study.ask({name: dist})  # one parameter of six, then the driver "died"

    result = resume_search(jid, url=pg_url)
    assert result.status == "finished" and result.evaluations == 8
    check_job(jid, pg_url, 8, nb201_accuracy)
    failed = optuna.load_study(study_name=jid, storage=pg_url).trials[half.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["error"].startswith("orphaned"), failed
