"""Storage robustness under load and faults, on the real PostgreSQL (issue 9, acceptance 6).

Scenarios, each on a fresh schema, each a tabular NAS-Bench-201 search (accuracy vs. local-cpu
latency, random sampler), checked against the trials index afterwards:

* concurrent: 8 `nas search --join JOB --trials N` processes on one job at once;
* ray_kill: 2 Ray evaluator actors; 2 of them SIGKILLed mid-evaluation (slowed to 1 s);
* driver_kill: `nas search SPEC` SIGKILLed a third of the way, then `nas search --resume JOB`;
* pg_terminate: the driver's own backends (``application_name = nas-driver-<job>``) terminated
  by ``pg_terminate_backend`` every 0.5 s, 12 times, while it runs.

Per scenario: load held (drivers x trials each, expensive evaluations per second), faults
injected, evaluations expected and stored, lost (expected - stored), duplicates (an evaluation
number or an architecture stored twice). Targets: lost 0, duplicates 0.

    python benchmarks/reliability.py [--quick]      # NAS_TEST_POSTGRES_URL, as the tests
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "nas" / "search"))  # fault injection

from _report import Report, parse_args  # noqa: E402

NB201_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_12epoch" / "nb201_12epoch_acc.csv"


def spec(trials: int, parallelism: int = 1) -> dict[str, Any]:
    return {
        "name": "reliability",
        "space": {"name": "nb201"},
        "evaluator": {"kind": "table", "path": str(NB201_CSV), "columns": {"accuracy": "cifar10-val"}},
        "objectives": [{"name": "accuracy", "direction": "maximize"},
                       {"name": "latency_ms", "device": "local-cpu", "direction": "minimize"}],
        "constraints": [{"name": "latency_ms", "device": "local-cpu", "max": 5.0}],
        "sampler": {"name": "random"},
        "budget": {"trials": trials, "parallelism": parallelism, "seed": 0},
    }


@contextmanager
def fresh_schema(tmp: Path) -> Iterator[str]:
    """A database URL on a new PostgreSQL schema, dropped afterwards (the tests' helper)."""
    from nas.db._engine import get_engine
    from nas.db._migrate import ensure_schema
    from tests.nas.search.conftest import make_db_url

    for url in make_db_url("postgresql", tmp):
        ensure_schema(get_engine(url))
        yield url


def stored(url: str, job_id: str) -> dict[str, int]:
    """What the index and the study hold for the job."""
    import optuna
    import sqlalchemy as sa

    from nas.db._engine import get_engine

    q = sa.text("SELECT count(*), count(DISTINCT evaluation), count(DISTINCT arch_id) FROM nas_trials "
                "WHERE job_id = :j AND evaluation IS NOT NULL")
    with get_engine(url).connect() as c:
        evaluated, numbers, archs = c.execute(q, {"j": job_id}).one()
    states: dict[str, int] = {}
    for t in optuna.load_study(study_name=job_id, storage=url).get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {"stored": evaluated, "duplicates": (evaluated - numbers) + (evaluated - archs),
            "fail_trials": states.get("FAIL", 0), "running_trials": states.get("RUNNING", 0)}


def concurrent(url: str, home: Path, drivers: int, trials: int) -> dict[str, Any]:
    from _reliability_hooks import nas_process, pending_job

    job = pending_job(url, spec(trials))
    t0 = time.perf_counter()
    procs = [nas_process("search", "--join", job, "--trials", trials, url=url, home=home) for _ in range(drivers)]
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    seconds = time.perf_counter() - t0
    errors = sum(p.returncode != 0 for p in procs)
    if errors:
        print(next(o for p, o in zip(procs, outs, strict=True) if p.returncode), file=sys.stderr)
    return {"job": job, "drivers": drivers, "trials": trials, "seconds": seconds, "faults": 0,
            "driver_errors": errors}


def ray_kill(url: str, home: Path, trials: int, kills: int) -> dict[str, Any]:
    import ray

    from _reliability_hooks import EvaluatorKiller, ray_runtime_env
    from nas.search import run_search

    with tempfile.TemporaryDirectory() as announce:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env=ray_runtime_env(Path(announce), slow_s=1.0))
        killer = EvaluatorKiller(Path(announce), count=kills)
        killer.start()
        try:
            result = run_search(spec(trials, parallelism=2), url=url, use_ray=True)
        finally:
            killed = killer.stop()
            ray.shutdown()
    return {"job": result.job_id, "drivers": 1, "trials": trials, "seconds": result.seconds, "faults": len(killed)}


def driver_kill(url: str, home: Path, trials: int) -> dict[str, Any]:
    import yaml

    from _reliability_hooks import kill_when_indexed, nas_process

    path = home / "spec.yaml"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec(trials)))
    t0 = time.perf_counter()
    job = kill_when_indexed(nas_process("search", path, url=url, home=home, slow_s=0.02), url, at=trials // 3)
    if job is None:
        raise RuntimeError("the driver finished before it could be killed")
    resumed = nas_process("search", "--resume", job, url=url, home=home)
    out = resumed.communicate(timeout=1800)[0]
    if resumed.returncode:
        print(out, file=sys.stderr)
    return {"job": job, "drivers": 2, "trials": trials, "seconds": time.perf_counter() - t0, "faults": 1,
            "driver_errors": int(resumed.returncode != 0)}


def pg_terminate(url: str, home: Path, trials: int, rounds: int) -> dict[str, Any]:
    from _reliability_hooks import BackendTerminator, slow_table_evaluations
    from nas.search import run_search
    from nas.search._evaluators import TableEvaluator

    job = f"bench-terminate-{uuid.uuid4().hex[:8]}"
    real = TableEvaluator.evaluate
    os.environ["NAS_TEST_SLOW_S"] = "0.02"
    slow_table_evaluations()
    terminator = BackendTerminator(url, job, after=5, rounds=rounds, every=0.5)
    terminator.start()
    try:
        result = run_search(spec(trials), url=url, job_id=job)
    finally:
        terminated = terminator.stop()
        TableEvaluator.evaluate = real  # type: ignore[method-assign]
    return {"job": job, "drivers": 1, "trials": trials, "seconds": result.seconds, "faults": terminated,
            "db_retries": result.info["db_retries"]}


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = Report("reliability", args.quick)
    q = args.quick
    scenarios: dict[str, tuple[Callable[..., dict[str, Any]], dict[str, Any], int]] = {
        "concurrent": (concurrent, {"drivers": 8, "trials": 10 if q else 60}, 8 * (10 if q else 60)),
        "ray_kill": (ray_kill, {"trials": 6 if q else 10, "kills": 1 if q else 2}, 6 if q else 10),
        "driver_kill": (driver_kill, {"trials": 30 if q else 100}, 30 if q else 100),
        "pg_terminate": (pg_terminate, {"trials": 30 if q else 100, "rounds": 4 if q else 12}, 30 if q else 100),
    }
    rows = []
    for name, (fn, kwargs, expected) in scenarios.items():
        with tempfile.TemporaryDirectory() as home, fresh_schema(Path(home)) as url:
            row = {"scenario": name, **fn(url, Path(home) / "nas", **kwargs)}
            row.update(stored(url, row["job"]), expected=expected)
        row["lost"] = max(0, expected - row["stored"])
        row["rate"] = row["stored"] / row["seconds"]
        rows.append(row)
        print(f"# {name}: {row}", flush=True)

    header = f"{'scenario':<13} {'load held':<22} {'faults':>6} {'expected':>8} {'stored':>6} {'lost':>4} {'dups':>4}"
    print(header)
    for r in rows:
        load = f"{r['drivers']}x{r['trials']}, {r['rate']:.1f} ev/s"
        print(f"{r['scenario']:<13} {load:<22} {r['faults']:>6} {r['expected']:>8} {r['stored']:>6} "
              f"{r['lost']:>4} {r['duplicates']:>4}")
    for r in rows:
        report.result(f"reliability_lost[{r['scenario']}]", r["lost"], "==0", fmt="d")
        report.result(f"reliability_duplicates[{r['scenario']}]", r["duplicates"], "==0", fmt="d")
        report.result(f"reliability_throughput[{r['scenario']}]", r["rate"], fmt=".1f")
    report.data["scenarios"] = rows
    print(f"wrote {report.write()}")
    return 0 if all(r["lost"] == 0 and r["duplicates"] == 0 and not r.get("driver_errors") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
