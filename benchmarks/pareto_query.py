"""Pareto queries over a big trials index (PostgreSQL), and against Optuna's ``study.best_trials``.

Part 1: a search job with 1,000,000 stored trials (100,000 with --quick) and 3 objectives
(accuracy maximised; latency_ms and macs minimised). The values are synthetic but shaped like a
real search: MACs log-normal, latency proportional to MACs^0.9 with device noise, accuracy rising
with log(MACs) plus evaluation noise (rounded to 0.01 %, latency to 1 us, so ties occur), and a
``params`` constraint (params correlated with MACs) that ~5% of the trials violate. The trials go
in through `nas.db._jobs.insert_trials` (PostgreSQL COPY, then ANALYZE), the stored front through
`nas.search.update_front`, exactly as a finished search job leaves them. Then the median over
repetitions of `nas.search.pareto_front(job_id)` (headline, target <= 100 ms), with a monotone
filter (``latency_ms<2``: answered from the stored front too) and over 2 of the 3 objectives
(computed from the objective columns: no stored front helps).

Part 2: the first 100,000 of those trials (5,000 with --quick) in an Optuna RDBStorage study on
the same database (same values, infeasible trials carrying Optuna's ``constraints`` system
attribute, so ``best_trials`` answers the same question) and in a second job of our index. Times
``optuna.load_study(...).best_trials`` (a fresh study object each repetition, so no cache helps)
against `pareto_front` on our index, and checks both return the same trial numbers. The Optuna
trials carry no params or user attributes (the service's own trials carry both), which only
makes Optuna's side faster.
``study.add_trials`` costs ~10-20 ms a trial on PostgreSQL (one transaction and ~13 statements
per trial: ~30 min for 100,000), so only the first ``--optuna-add-trials`` trials (default 1,000)
go through it -- its rate is reported -- and the rest are bulk-copied into Optuna's own tables as
the same rows `add_trials` writes (checked: a copied trial loads back equal to an added one).

Every row this creates belongs to uniquely named jobs and a uniquely named study, deleted at the
end (also on error or Ctrl-C), then the tables are VACUUMed (plain; for servers without
autovacuum); nothing else in the database is touched. The service schema is
created (Alembic) if the database has none; an older one is upgraded only with --upgrade.

    python benchmarks/pareto_query.py [--quick] [--upgrade] [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import optuna  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from _report import Report  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402

from nas.db import SchemaOutdated, ensure_schema, get_engine, upgrade  # noqa: E402
from nas.db import _jobs as jobs_db  # noqa: E402
from nas.db._models import JobRow, TrialRow  # noqa: E402
from nas.search import MetricDef, pareto_front, update_front  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
QUERY_TARGET = "<=100"
SPEEDUP_TARGET = ">=100"
WHERE = "latency_ms<2"
DIRECTIONS = ["maximize", "minimize", "minimize"]
OPTUNA_CHILD_TABLES = (
    "trial_values", "trial_system_attributes", "trial_user_attributes", "trial_params",
    "trial_intermediate_values", "trial_heartbeats",
)


def metric_defs(params_max: float) -> list[MetricDef]:
    """What `nas.search.job_metrics` makes of a spec with these objectives and constraint."""
    return [
        MetricDef("accuracy", "accuracy", None, 0, "maximize", True, False),
        MetricDef("latency_ms@local-cpu", "latency_ms", "local-cpu", 1, "minimize", True, True),
        MetricDef("macs", "macs", None, 2, "minimize", True, True),
        MetricDef("params", "params", None, 3, "minimize", False, True, max=params_max),
    ]


def make_values(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Correlated synthetic metrics (see the module docstring)."""
    rng = np.random.default_rng(seed)
    macs = np.exp(rng.normal(np.log(300e6), 0.45, n)).round()
    latency = np.round(0.012 * (macs / 1e6) ** 0.9 * np.exp(rng.normal(0.0, 0.12, n)), 3)
    params = np.round(0.02 * macs * np.exp(rng.normal(0.0, 0.25, n)))
    accuracy = np.round(np.clip(62.0 + 4.2 * np.log(macs / 1e6) + rng.normal(0.0, 1.0, n), 0.0, 99.9), 2)
    return {"accuracy": accuracy, "latency_ms@local-cpu": latency, "macs": macs, "params": params}


def archs(n: int, seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """OFA-MobileNetV3-like architectures (kernel sizes, expand ratios, depths, resolution) and ids."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        ks = rng.choice(np.array([3, 5, 7]), (m, 20)).tolist()
        e = rng.choice(np.array([3, 4, 6]), (m, 20)).tolist()
        d = rng.choice(np.array([2, 3, 4]), (m, 5)).tolist()
        for i in range(m):
            aid = f"ks{''.join(map(str, ks[i]))}-e{''.join(map(str, e[i]))}-d{''.join(map(str, d[i]))}-r224"
            yield f"{aid}#{start + i}", {"ks": ks[i], "e": e[i], "d": d[i], "r": [224]}


def timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    """Wall times (ms) of `reps` calls, after one warm-up call; returns the last result."""
    out = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, out


def store_job(job_id: str, values: dict[str, np.ndarray], metrics: list[MetricDef], engine: sa.Engine,
              seed: int) -> dict[str, float]:
    """Create the job, insert its trials, store its front; returns the setup timings."""
    n = len(values["macs"])
    params_max = metrics[-1].max
    jobs_db.create_job(kind="search", name=f"benchmark pareto_query ({n} trials)", job_id=job_id,
                       spec={"benchmark": "pareto_query", "trials": n},
                       metrics=[m.to_dict() for m in metrics], status="running", engine=engine)
    slots = {m.key: m.slot for m in metrics}
    keys = list(slots)
    cols = [values[k].tolist() for k in keys]
    feasible = (values["params"] <= params_max).tolist()
    finished = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def records() -> Iterator[jobs_db.TrialRecord]:
        for i, (aid, arch) in enumerate(archs(n, seed + 1)):
            vals = {k: c[i] for k, c in zip(keys, cols, strict=True)}
            yield jobs_db.TrialRecord(i, aid, arch, vals, feasible[i], evaluation=i + 1, seconds=1.0,
                                      finished_at=finished + dt.timedelta(seconds=i))

    t0 = time.perf_counter()
    inserted = jobs_db.insert_trials(job_id, records(), slots, engine=engine)
    t_insert = time.perf_counter() - t0
    assert inserted == n, (inserted, n)
    t0 = time.perf_counter()
    front = update_front(job_id, metrics, engine=engine)
    t_front = time.perf_counter() - t0
    jobs_db.update_job(job_id, status="finished", engine=engine)
    print(f"# job {job_id}: {n} trials inserted in {t_insert:.1f} s ({n / t_insert:,.0f} rows/s), "
          f"front of {len(front)} stored in {t_front:.1f} s", flush=True)
    return {"insert_s": t_insert, "update_front_s": t_front, "front_size": len(front)}


def optuna_trial(values: list[float], feasible: bool) -> optuna.trial.FrozenTrial:
    # Optuna's constraint convention: feasible when every value is <= 0.
    return create_trial(values=values, system_attrs={"constraints": [-1.0 if feasible else 1.0]},
                        state=TrialState.COMPLETE)


def bulk_copy_optuna(engine: sa.Engine, study_id: int, start: int, values: np.ndarray,
                     feasible: np.ndarray) -> None:
    """Append trials start.. to an Optuna study as the rows `study.add_trials` writes (trials,
    trial_values, trial_system_attributes), through COPY."""
    n = len(values)
    # RDBStorage stores naive UTC datetimes.
    stamp = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute("SELECT study_id FROM studies WHERE study_id = %s FOR UPDATE", (study_id,))
            buf = io.StringIO()
            for i in range(n):
                buf.write(f"{start + i}\t{study_id}\tCOMPLETE\t{stamp}\t{stamp}\n")
            sql = "COPY trials (number, study_id, state, datetime_start, datetime_complete) FROM STDIN"
            with cur.copy(sql) as cp:
                cp.write(buf.getvalue())
            cur.execute("SELECT trial_id, number FROM trials WHERE study_id = %s AND number >= %s",
                        (study_id, start))
            ids = dict((num, tid) for tid, num in cur.fetchall())
            buf = io.StringIO()
            for i in range(n):
                tid = ids[start + i]
                for j in range(values.shape[1]):
                    buf.write(f"{tid}\t{j}\t{float(values[i, j])!r}\tFINITE\n")
            with cur.copy("COPY trial_values (trial_id, objective, value, value_type) FROM STDIN") as cp:
                cp.write(buf.getvalue())
            buf = io.StringIO()
            for i in range(n):
                buf.write(f"{ids[start + i]}\tconstraints\t[{-1.0 if feasible[i] else 1.0}]\n")
            with cur.copy("COPY trial_system_attributes (trial_id, key, value_json) FROM STDIN") as cp:
                cp.write(buf.getvalue())


def delete_optuna_study(storage: optuna.storages.RDBStorage, engine: sa.Engine, name: str) -> None:
    """optuna.delete_study, after removing the trials' rows in bulk (Optuna's ORM cascade would
    load and delete 100,000 trials one by one)."""
    with engine.begin() as conn:
        q = sa.text("SELECT study_id FROM studies WHERE study_name = :n")
        sid = conn.execute(q, {"n": name}).scalar()
        if sid is None:
            return
        have = set(sa.inspect(conn).get_table_names())
        sub = "SELECT trial_id FROM trials WHERE study_id = :s"
        for table in OPTUNA_CHILD_TABLES:
            if table in have:
                conn.execute(sa.text(f"DELETE FROM {table} WHERE trial_id IN ({sub})"), {"s": sid})
        conn.execute(sa.text("DELETE FROM trials WHERE study_id = :s"), {"s": sid})
    optuna.delete_study(study_name=name, storage=storage)


def delete_jobs(engine: sa.Engine, job_ids: list[str]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(TrialRow).where(TrialRow.job_id.in_(job_ids)))
        conn.execute(sa.delete(JobRow).where(JobRow.id.in_(job_ids)))


def vacuum(engine: sa.Engine) -> None:
    """VACUUM (plain: no lock against other users) the tables this run deleted a million rows
    from, so that a server without autovacuum does not keep them as dead rows."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        have = set(sa.inspect(conn).get_table_names())
        for table in ("nas_trials", "trials", *OPTUNA_CHILD_TABLES):
            if table in have:
                conn.execute(sa.text(f"VACUUM {table}"))


def part_index(report: Report, engine: sa.Engine, job_id: str, values: dict[str, np.ndarray],
               metrics: list[MetricDef], reps: int, seed: int) -> None:
    n = len(values["macs"])
    report.data["index_setup"] = store_job(job_id, values, metrics, engine, seed)
    label = f"postgresql,{n} trials"
    queries = [
        (f"pareto_query_ms[{label},3 objectives]", {}, QUERY_TARGET),
        (f"pareto_query_ms[{label},3 objectives,where {WHERE}]", {"where": WHERE}, None),
        (f"pareto_query_ms[{label},2 of 3 objectives (computed)]", {"objectives": ["accuracy", "latency_ms"]},
         None),
    ]
    report.data["queries"] = {}
    for figure, kwargs, target in queries:
        times, rows = timed(lambda kw=kwargs: pareto_front(job_id, engine=engine, **kw), reps)
        med = statistics.median(times)
        print(f"# {figure}: {len(rows)} trials on the front; ms min {min(times):.1f} max {max(times):.1f}",
              flush=True)
        report.data["queries"][figure] = {"ms": times, "front_size": len(rows), "kwargs": kwargs}
        report.result(figure, med, target, fmt=".1f")


def part_optuna(report: Report, engine: sa.Engine, storage: optuna.storages.RDBStorage, job_id: str,
                study_name: str, values: dict[str, np.ndarray], metrics: list[MetricDef], n: int, n_add: int,
                reps: int, seed: int) -> None:
    objs = [m.key for m in metrics if m.objective]
    vals = np.stack([values[k][:n] for k in objs], axis=1)
    feasible = values["params"][:n] <= metrics[-1].max
    # Our index: the same trials as a job of their own.
    sub = {k: v[:n] for k, v in values.items()}
    report.data["optuna_index_setup"] = store_job(job_id, sub, metrics, engine, seed)
    # Optuna: add_trials for the first n_add, then the same rows by COPY.
    study = optuna.create_study(study_name=study_name, storage=storage, directions=DIRECTIONS)
    n_add = min(n_add, n)
    t0 = time.perf_counter()
    for i in range(0, n_add, 500):
        batch = range(i, min(i + 500, n_add))
        study.add_trials([optuna_trial(vals[j].tolist(), bool(feasible[j])) for j in batch])
    t_add = time.perf_counter() - t0
    per_trial_ms = t_add / max(n_add, 1) * 1e3
    print(f"# optuna study.add_trials: {n_add} trials in {t_add:.1f} s ({per_trial_ms:.1f} ms/trial; "
          f"{n} would take ~{per_trial_ms * n / 6e4:.0f} min)", flush=True)
    t0 = time.perf_counter()
    if n > n_add:
        bulk_copy_optuna(engine, study._study_id, n_add, vals[n_add:], feasible[n_add:])
    t_copy = time.perf_counter() - t0
    print(f"# optuna rows for trials {n_add}..{n - 1} copied in {t_copy:.1f} s", flush=True)
    check = optuna.load_study(study_name=study_name, storage=storage)
    loaded = check.get_trials(deepcopy=False)
    assert len(loaded) == n and [t.number for t in loaded] == list(range(n)), "Optuna trial numbers"
    for t in (loaded[0], loaded[min(n_add, n) - 1], loaded[-1], *loaded[n_add : n_add + 3]):
        i = t.number
        assert t.state == TrialState.COMPLETE and t.values == vals[i].tolist(), i
        assert t.system_attrs == {"constraints": [-1.0 if feasible[i] else 1.0]}, i
    del check, loaded
    report.data["optuna_setup"] = {"add_trials": n_add, "add_trials_s": t_add, "copied": n - n_add,
                                   "add_trials_ms_per_trial": per_trial_ms, "copy_s": t_copy}

    opt_times = []
    best: list[Any] = []
    for _ in range(reps):
        fresh = optuna.load_study(study_name=study_name, storage=storage)
        t0 = time.perf_counter()
        best = fresh.best_trials
        opt_times.append((time.perf_counter() - t0) * 1e3)
    ours_times, ours = timed(lambda: pareto_front(job_id, engine=engine), max(reps, 10))
    same = sorted(t.number for t in best) == sorted(r["number"] for r in ours)
    print(f"# Optuna best_trials {len(best)} trials, pareto_front {len(ours)} trials, same numbers: {same}",
          flush=True)
    if not same:
        raise AssertionError("Optuna's best_trials and pareto_front disagree")
    t_opt, t_ours = statistics.median(opt_times), statistics.median(ours_times)
    report.data["optuna_vs_index"] = {"optuna_ms": opt_times, "index_ms": ours_times, "front_size": len(ours)}
    report.result(f"optuna_best_trials_ms[postgresql,{n} trials]", t_opt, fmt=".1f")
    report.result(f"pareto_query_ms[postgresql,{n} trials,3 objectives]", t_ours, fmt=".1f")
    report.result(f"pareto_speedup_vs_optuna_best_trials[{n} trials]", t_opt / t_ours, SPEEDUP_TARGET,
                  fmt=".0f")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="reduced run (about a minute), for CI smoke tests")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"PostgreSQL URL (default {DEFAULT_URL})")
    parser.add_argument("--trials", type=int, default=None, help="trials of the big job (default 1,000,000)")
    parser.add_argument("--optuna-trials", type=int, default=None,
                        help="trials of the Optuna comparison (default 100,000)")
    parser.add_argument("--optuna-add-trials", type=int, default=None,
                        help="how many of those go through study.add_trials (default 1,000; the rest are "
                             "copied)")
    parser.add_argument("--reps", type=int, default=15, help="repetitions of each index query (>= 10)")
    parser.add_argument("--optuna-reps", type=int, default=3, help="repetitions of best_trials (>= 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--upgrade", action="store_true",
                        help="first bring the database's service schema to head (`nas db upgrade`)")
    args = parser.parse_args()
    n = args.trials or (100_000 if args.quick else 1_000_000)
    n_opt = min(args.optuna_trials or (5_000 if args.quick else 100_000), n)
    n_add = args.optuna_add_trials if args.optuna_add_trials is not None else (200 if args.quick else 1000)
    reps, opt_reps = max(args.reps, 10), max(args.optuna_reps, 3)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    engine = get_engine(args.url)
    if engine.dialect.name != "postgresql":
        sys.exit(f"This benchmark needs PostgreSQL; got {engine.dialect.name} ({args.url}).")
    if args.upgrade:
        upgrade(engine)
    try:
        ensure_schema(engine)
    except SchemaOutdated as exc:
        sys.exit(f"{exc} (or pass --upgrade)")
    report = Report("pareto_query", quick=args.quick)
    tag = uuid.uuid4().hex[:10]
    big_job, opt_job, study_name = f"bench-pq-{tag}-big", f"bench-pq-{tag}-optuna", f"bench-pq-{tag}"
    values = make_values(n, args.seed)
    metrics = metric_defs(float(np.quantile(values["params"], 0.95)))
    report.data.update({"trials": n, "optuna_trials": n_opt, "reps": reps, "optuna_reps": opt_reps,
                        "where": WHERE, "metrics": [m.to_dict() for m in metrics],
                        "infeasible_fraction": float(np.mean(values["params"] > metrics[-1].max))})
    print(f"# {n} trials, 3 objectives ({', '.join(m.key for m in metrics if m.objective)}), "
          f"{report.data['infeasible_fraction']:.1%} infeasible; jobs {big_job}, {opt_job}; "
          f"study {study_name}", flush=True)
    storage = None
    try:
        part_index(report, engine, big_job, values, metrics, reps, args.seed)
        delete_jobs(engine, [big_job])
        vacuum(engine)  # its dead rows would slow part 2's scans on a server without autovacuum
        storage = optuna.storages.RDBStorage(args.url)
        part_optuna(report, engine, storage, opt_job, study_name, values, metrics, n_opt, n_add, opt_reps,
                    args.seed)
    finally:
        t0 = time.perf_counter()
        delete_jobs(engine, [big_job, opt_job])
        try:
            if storage is not None:
                delete_optuna_study(storage, engine, study_name)
        except Exception as exc:  # noqa: BLE001 - report, don't mask the original error
            print(f"# could not delete Optuna study {study_name}: {exc}", file=sys.stderr)
        try:
            vacuum(engine)
        except Exception as exc:  # noqa: BLE001 - housekeeping only
            print(f"# VACUUM failed: {exc}", file=sys.stderr)
        print(f"# cleaned up in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"# results written to {report.write()}")


if __name__ == "__main__":
    main()
