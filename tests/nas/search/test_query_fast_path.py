"""The stored-front fast path of `pareto_front` gives exactly the front computed from the
objective columns (and a brute-force front computed here), on SQLite and, when reachable,
PostgreSQL: random correlated data with ties, duplicates, infeasible trials, missing and NaN
values, with and without monotone filters; a stale front (trials inserted after it) is never used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from nas.db import _jobs as jobs_db
from nas.db import get_engine
from nas.search import MetricDef, _query, pareto_front, trials, update_front

METRICS = [
    MetricDef("accuracy", "accuracy", None, 0, "maximize", True, False),
    MetricDef("latency_ms@local-cpu", "latency_ms", "local-cpu", 1, "minimize", True, True),
    MetricDef("macs", "macs", None, 2, "minimize", True, True),
    MetricDef("params", "params", None, 3, "minimize", False, True, max=60.0),
]
OBJ = ["accuracy", "latency_ms@local-cpu", "macs"]
SIGN = {"accuracy": -1.0, "latency_ms@local-cpu": 1.0, "macs": 1.0, "params": 1.0}

# (filter, the same on a dict of value arrays); all bound objectives on their good side.
MONOTONE: list[tuple[str | None, Callable[[dict[str, np.ndarray]], np.ndarray] | None]] = [
    (None, None),
    ("latency_ms<5", lambda v: v["latency_ms@local-cpu"] < 5),
    ("accuracy>=12 and macs<=40", lambda v: (v["accuracy"] >= 12) & (v["macs"] <= 40)),
    ("6 > latency_ms@local-cpu and accuracy > 8",
     lambda v: (v["latency_ms@local-cpu"] < 6) & (v["accuracy"] > 8)),
    ("accuracy >= 10 and (40 >= macs and latency_ms <= 6)",
     lambda v: (v["accuracy"] >= 10) & (v["macs"] <= 40) & (v["latency_ms@local-cpu"] <= 6)),
    ("macs<0", lambda v: v["macs"] < 0),  # nothing passes
]


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def engine(db_url: str) -> Any:
    """The test's database (conftest's `db_url`: SQLite, then PostgreSQL when reachable; it is
    also NAS_DATABASE_URL, so this is the engine the service itself would use)."""
    return get_engine()


# ------------------------------------------------------------------------------------ helpers
def make_values(n: int, seed: int) -> dict[str, np.ndarray]:
    """Correlated values on coarse grids (many ties), exact duplicates, ~20% infeasible (params
    over 60), a few missing (None) and NaN objective values."""
    rng = np.random.default_rng(seed)
    macs = rng.integers(5, 80, n).astype(float)
    latency = np.round(macs / 10 + rng.integers(-2, 3, n), 0).clip(0.5, None)
    accuracy = np.floor(macs / 4 + rng.integers(-4, 5, n)).clip(0, None)
    params = np.round(macs * rng.uniform(0.5, 1.1, n))
    vals = {"accuracy": accuracy, "latency_ms@local-cpu": latency, "macs": macs, "params": params}
    dup = rng.choice(n, n // 10, replace=False)  # exact copies of other trials' values
    src = rng.choice(n, n // 10)
    for v in vals.values():
        v[dup] = v[src]
    for key in OBJ:
        v = vals[key].astype(object)
        v[rng.choice(n, 5, replace=False)] = None
        vals[key] = v
    vals["macs"][rng.choice(n, 3, replace=False)] = math.nan
    return vals


def store(job_id: str, vals: dict[str, np.ndarray], engine: Any, start: int = 0) -> None:
    n = len(vals["macs"])
    recs = []
    for i in range(n):
        values = {k: (None if v[i] is None else float(v[i])) for k, v in vals.items()}
        feasible = values["params"] is not None and values["params"] <= 60.0
        recs.append(jobs_db.TrialRecord(start + i, f"arch-{start + i}", {"i": start + i}, values, feasible))
    jobs_db.insert_trials(job_id, recs, {m.key: m.slot for m in METRICS}, engine=engine)


def new_job(engine: Any) -> str:
    metrics = [m.to_dict() for m in METRICS]
    return jobs_db.create_job(kind="search", name="fast path", spec={}, metrics=metrics, engine=engine).id


def brute_front(
    vals: dict[str, np.ndarray], keys: list[str], keep: np.ndarray, numbers: np.ndarray
) -> set[int]:
    """Non-dominated trial numbers among `keep`, by pairwise comparison (all values finite)."""
    cols = [np.array([np.nan if x is None else x for x in vals[k]], dtype=float) * SIGN[k] for k in keys]
    pts = np.stack(cols, axis=1)
    keep = keep & np.all(np.isfinite(pts), axis=1)
    p = pts[keep]
    le = np.all(p[:, None, :] <= p[None, :, :], axis=2)  # le[j, i]: j <= i everywhere
    lt = np.any(p[:, None, :] < p[None, :, :], axis=2)
    dominated = np.any(le & lt, axis=0)
    return {int(x) for x in numbers[keep][~dominated]}


def feasible_of(vals: dict[str, np.ndarray]) -> np.ndarray:
    return np.array([x is not None and x <= 60.0 for x in vals["params"]])


def passes(
    pred: Callable[[dict[str, np.ndarray]], np.ndarray] | None, vals: dict[str, np.ndarray]
) -> np.ndarray:
    n = len(vals["macs"])
    if pred is None:
        return np.ones(n, dtype=bool)
    f = {k: np.array([np.nan if x is None else x for x in v], dtype=float) for k, v in vals.items()}
    with np.errstate(invalid="ignore"):
        return np.asarray(pred(f), dtype=bool)


@pytest.fixture
def no_compute() -> Iterator[Callable[[bool], None]]:
    """``no_compute(True)`` makes computing a front fail, to prove that the stored front answered."""
    original = _query.load_values

    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("the front was computed, not read from the stored front")

    def arm(on: bool = True) -> None:
        _query.load_values = boom if on else original  # type: ignore[assignment]

    yield arm
    _query.load_values = original  # type: ignore[assignment]


# ------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_path_equals_full_computation(
    engine: Any, seed: int, no_compute: Callable[[bool], None]
) -> None:
    n = 3000
    vals = make_values(n, seed)
    job = new_job(engine)
    store(job, vals, engine)
    stored = update_front(job, METRICS, engine=engine)
    numbers = np.arange(n)
    feas = feasible_of(vals)
    assert set(stored) == brute_front(vals, OBJ, feas, numbers)
    assert len(stored) > 5
    for where, pred in MONOTONE:
        full = _query._pareto_front(job, where=where, engine=engine, use_stored=False)
        no_compute(True)
        fast = pareto_front(job, where=where, engine=engine)
        no_compute(False)
        assert fast == full, where
        expect = brute_front(vals, OBJ, feas & passes(pred, vals), numbers)
        assert {r["number"] for r in fast} == expect, where
        assert all(r["on_front"] and r["feasible"] for r in fast)
        if where == "macs<0":
            assert fast == []
    # ties: some front members share a value of an objective, and exact duplicates are all kept
    front = pareto_front(job, engine=engine)
    assert len({r["accuracy"] for r in front}) < len(front)
    key = [tuple(r[k] for k in OBJ) for r in front]
    assert len(set(key)) < len(key)
    # objectives given in another order and by key are the same front, still from the index
    no_compute(True)
    assert pareto_front(job, objectives=["macs", "latency_ms@local-cpu", "accuracy"], engine=engine) != []


@pytest.mark.parametrize(
    ("kwargs", "keys", "feasible_only", "pred"),
    [
        ({"objectives": ["accuracy", "latency_ms"]}, ["accuracy", "latency_ms@local-cpu"], True, None),
        ({"where": "latency_ms>3"}, OBJ, True, lambda v: v["latency_ms@local-cpu"] > 3),  # the bad side
        ({"where": "latency_ms<3 or macs<20"}, OBJ, True,
         lambda v: (v["latency_ms@local-cpu"] < 3) | (v["macs"] < 20)),
        ({"where": "params<40"}, OBJ, True, lambda v: v["params"] < 40),  # not an objective
        ({"where": "2 <= latency_ms <= 7"}, OBJ, True,  # a lower bound on a minimised objective
         lambda v: (v["latency_ms@local-cpu"] >= 2) & (v["latency_ms@local-cpu"] <= 7)),
        ({"include_infeasible": True}, OBJ, False, None),
    ],
)
def test_other_queries_are_computed_correctly(engine: Any, kwargs: dict[str, Any], keys: list[str],
                                              feasible_only: bool, pred: Any) -> None:
    vals = make_values(1500, 7)
    job = new_job(engine)
    store(job, vals, engine)
    update_front(job, METRICS, engine=engine)
    got = pareto_front(job, engine=engine, **kwargs)
    keep = (feasible_of(vals) if feasible_only else np.ones(1500, dtype=bool)) & passes(pred, vals)
    assert {r["number"] for r in got} == brute_front(vals, keys, keep, np.arange(1500))
    assert got == _query._pareto_front(job, engine=engine, use_stored=False, **kwargs)


def test_stale_or_missing_front_is_not_used(engine: Any, no_compute: Callable[[bool], None]) -> None:
    vals = make_values(1000, 3)
    job = new_job(engine)
    store(job, vals, engine)
    # no stored front yet (a running job): computed, not an empty answer
    feas = feasible_of(vals)
    expect = brute_front(vals, OBJ, feas, np.arange(1000))
    assert {r["number"] for r in pareto_front(job, engine=engine)} == expect
    assert {r["number"] for r in pareto_front(job, where="latency_ms<5", engine=engine)} == brute_front(
        vals, OBJ, feas & passes(MONOTONE[1][1], vals), np.arange(1000)
    )
    update_front(job, METRICS, engine=engine)
    # more trials, some dominating the stored front: the stale front is dropped at insert
    more = make_values(500, 4)
    more["accuracy"] = np.array([None if x is None else x + 3 for x in more["accuracy"]], dtype=object)
    store(job, more, engine, start=1000)
    both = {k: np.concatenate([vals[k], more[k]]) for k in vals}
    expect = brute_front(both, OBJ, feasible_of(both), np.arange(1500))
    assert not any(r["on_front"] for r in trials(job, engine=engine))
    assert {r["number"] for r in pareto_front(job, engine=engine)} == expect
    assert any(n >= 1000 for n in expect)
    # once the driver stores the new front, the index answers again
    update_front(job, METRICS, engine=engine)
    no_compute(True)
    assert {r["number"] for r in pareto_front(job, engine=engine)} == expect
    # a filter that nothing on the stored front passes: still answered from the index
    assert pareto_front(job, where="macs<0", engine=engine) == []


def test_insert_trials_round_trip(engine: Any) -> None:
    """What goes in (COPY on PostgreSQL, INSERT elsewhere) comes back out unchanged."""
    job = new_job(engine)
    odd = 'a\tb\\c\n"d\' é ∑'
    recs = [
        jobs_db.TrialRecord(0, odd, {"ks": [3, 5], "name": odd, "x": None}, {"accuracy": 71.25, "macs": 3e8,
                            "latency_ms@local-cpu": None, "unknown": 1.0}, True, on_front=True, cached=True,
                            evaluation=None, seconds=0.125),
        jobs_db.TrialRecord(1, "b", {}, {"accuracy": np.float64(0.1) + 0.2, "macs": 7}, False, evaluation=3),
    ]
    slots = {m.key: m.slot for m in METRICS}
    assert jobs_db.insert_trials(job, iter(recs), slots, engine=engine) == 2
    assert jobs_db.insert_trials(job, recs, slots, engine=engine) == 0  # idempotent per number
    got = trials(job, engine=engine)
    assert [r["number"] for r in got] == [0, 1]
    a, b = got
    assert a["arch_id"] == odd and a["arch"] == {"ks": [3, 5], "name": odd, "x": None}
    assert (a["accuracy"], a["macs"], a["latency_ms@local-cpu"], a["params"]) == (71.25, 3e8, None, None)
    flags = (a["feasible"], a["on_front"], a["cached"], a["evaluation"], a["seconds"])
    assert flags == (True, True, True, None, 0.125)
    assert b["accuracy"] == 0.1 + 0.2 and b["macs"] == 7.0 and b["evaluation"] == 3 and not b["feasible"]
    assert json.dumps(b["arch"]) == "{}"
    # a later insert drops the stored front flag of earlier trials
    jobs_db.insert_trials(job, [jobs_db.TrialRecord(2, "c", {}, {}, True)], slots, engine=engine)
    assert [r["on_front"] for r in trials(job, engine=engine)] == [False, False, False]


def test_front_index_is_partial(engine: Any) -> None:
    """Revision 0003: the stored fronts have an index of their own, over ``on_front`` rows only."""
    import sqlalchemy as sa

    from nas.db import ensure_schema

    ensure_schema(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            ddl = conn.execute(sa.text(
                "SELECT indexdef FROM pg_indexes"
                " WHERE schemaname = current_schema() AND indexname = 'ix_nas_trials_front'"
            ))
        else:
            ddl = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'ix_nas_trials_front'"))
        (text,) = ddl.one()
    assert "(job_id)" in text.replace(" (", "(") and "WHERE" in text.upper() and "on_front" in text


def test_bulk_insert_refreshes_postgres_statistics(engine: Any, monkeypatch: Any) -> None:
    """A bulk `insert_trials` runs ANALYZE (PostgreSQL), so the planner knows the new job's size."""
    if engine.dialect.name != "postgresql":
        pytest.skip("ANALYZE after bulk loads is for PostgreSQL")
    import sqlalchemy as sa

    job = new_job(engine)
    reltuples = sa.text("SELECT reltuples FROM pg_class WHERE oid = 'nas_trials'::regclass")
    with engine.connect() as conn:
        assert conn.execute(reltuples).scalar() < 1  # never analysed (-1) or empty
    monkeypatch.setattr(jobs_db, "ANALYZE_AFTER", 300)
    store(job, make_values(299, 0), engine)
    with engine.connect() as conn:
        assert conn.execute(reltuples).scalar() < 1
    store(job, make_values(300, 1), engine, start=299)
    with engine.connect() as conn:
        assert conn.execute(reltuples).scalar() == 599
