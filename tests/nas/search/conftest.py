"""Search test set-up: the NAS-Bench-201 table beside the checkout, a database per test (SQLite,
and PostgreSQL when reachable), a small tabular spec, and the checks every finished job must pass.

PostgreSQL: ``NAS_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
Each test gets its own schema (selected through the URL's ``search_path``, so the service's tables
and Optuna's land side by side in it, as in production), dropped afterwards with everything the
test created.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gc
import json
import os
import re
import shutil
import tempfile
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import sqlalchemy as sa
import yaml
from click.testing import Result
from typer.testing import CliRunner

import latency_tables as lt
import search_spaces as ss
from nas.db import _engine as db_engine
from nas.db import _migrate as db_migrate
from nas.db._engine import get_engine

# shared/ lies beside the checkout (as in CI).
NB201_CSV = (
    Path(__file__).resolve().parents[4] / "shared" / "data" / "nb201_12epoch" / "nb201_12epoch_acc.csv"
)
PG_URL = os.environ.get("NAS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
LATENCY = "latency_ms@local-cpu"
LATENCY_MAX = 5.0
"""About the median nb201 latency in the shipped local-cpu table: both feasible and infeasible
trials occur in every small search."""

optuna.logging.set_verbosity(optuna.logging.WARNING)


def reset_engines(collect: bool = False) -> None:
    """Dispose the cached engines and forget that their schemas were checked (a new engine may
    reuse a disposed one's ``id``, which `ensure_schema` keys on). `collect`: also let Optuna's
    RDB storages (each holds its own engine) close their connections."""
    for eng in list(db_engine._ENGINES.values()):
        db_migrate._CHECKED.discard(eng)
    db_engine.dispose_engines()
    if collect:
        gc.collect()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the user's tables, database or Ray cluster."""
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "nas_home"))
    monkeypatch.delenv("NAS_DATABASE_URL", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield
    if db_engine._ENGINES:
        reset_engines()


_TABLE_EVALUATORS: dict[tuple[Any, ...], Any] = {}


@pytest.fixture(autouse=True)
def _reuse_table_evaluators(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test speed: the driver builds a table evaluator twice per job, and reading the 15,625-row
    NAS-Bench-201 CSV dominates a small tabular search. Evaluators of unchanged files are reused
    across jobs (they hold no per-job state); the first build of each file, and every failing
    build, still runs the real code. Ray actors always build their own."""
    from nas.search import _driver, _jobs

    real = _driver.build_evaluator

    def build(spec: Any, space_ref: Any) -> Any:
        path = Path(spec.path) if spec.kind == "table" and spec.path else None
        if path is None or not path.is_file():
            return real(spec, space_ref)
        st = path.stat()
        key = (
            spec.model_dump_json(),
            space_ref.model_dump_json(),
            str(path.resolve()),
            st.st_mtime_ns,
            st.st_size,
        )
        if key not in _TABLE_EVALUATORS:
            _TABLE_EVALUATORS[key] = real(spec, space_ref)
        return _TABLE_EVALUATORS[key]

    monkeypatch.setattr(_driver, "build_evaluator", build)
    monkeypatch.setattr(_jobs, "build_evaluator", build)  # check_search_spec


# ------------------------------------------------------------------------------------- databases
def _postgres_skip() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    try:
        eng = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(sa.text("select 1"))
        eng.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "skip"
        return f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}"
    return None


_PG_SKIP = _postgres_skip()


def _pg_url_with_schema(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={urllib.parse.quote(f'-csearch_path={schema}')}"


@contextlib.contextmanager
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for SQLite files: in tmpfs when there is one (each Optuna ask/tell commits,
    and fsync on a shared disk would dominate the tests' time), else under `tmp_path`."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="nas-search-test-", dir=shm))
        try:
            yield d
        finally:
            reset_engines()
            shutil.rmtree(d, ignore_errors=True)
        return
    yield tmp_path


def make_db_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL of `kind` (``sqlite`` or ``postgresql``)."""
    if kind == "sqlite":
        with fast_dir(tmp_path) as d:
            yield f"sqlite:///{d / 'nas.db'}"
        return
    if _PG_SKIP:
        pytest.skip(_PG_SKIP)
    schema = f"nas_search_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_url_with_schema(schema)
    finally:
        reset_engines(collect=True)
        with admin.connect() as c:
            c.execute(sa.text("SET lock_timeout = '20s'"))
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each backend in turn; also the default database (NAS_DATABASE_URL) for the test."""
    for url in make_db_url(request.param, tmp_path):
        monkeypatch.setenv("NAS_DATABASE_URL", url)
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for url in make_db_url("sqlite", tmp_path):
        monkeypatch.setenv("NAS_DATABASE_URL", url)
        yield url


@pytest.fixture
def tableless_device(monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered device with no latency table anywhere (shipped tables come and go)."""
    name = "test-board-without-tables"
    cfg = dataclasses.replace(lt.get_device("local-cpu"), name=name)
    monkeypatch.setitem(lt.DEVICES._factories, name, lambda **_: cfg)
    assert not lt.shipped_table_path(name, "nb201").exists()
    return name


# ------------------------------------------------------------------------------------ the table
@pytest.fixture(scope="session")
def nb201_csv() -> Path:
    if not NB201_CSV.is_file():
        pytest.skip(f"NAS-Bench-201 table not found at {NB201_CSV} (shared/ lies beside the checkout)")
    return NB201_CSV


@pytest.fixture(scope="session")
def nb201_accuracy(nb201_csv: Path) -> dict[str, float]:
    """arch_id -> cifar10-val accuracy, read independently of the evaluator."""
    space = ss.get_space("nb201")
    with nb201_csv.open(newline="") as fh:
        return {space.arch_id(space.from_str(r["arch"])): float(r["cifar10-val"]) for r in csv.DictReader(fh)}


@pytest.fixture
def make_spec(nb201_csv: Path) -> Callable[..., dict[str, Any]]:
    """``make_spec(trials=12, sampler="random", **top_level_overrides)``: accuracy (max) vs
    local-cpu latency (min) on the nb201 table, latency <= LATENCY_MAX, macs and params stored."""

    def make(
        trials: int = 12,
        sampler: str = "random",
        params: dict[str, Any] | None = None,
        seed: int = 0,
        **over: Any,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": "test-search",
            "space": {"name": "nb201"},
            "evaluator": {"kind": "table", "path": str(nb201_csv), "columns": {"accuracy": "cifar10-val"}},
            "objectives": [
                {"name": "accuracy", "direction": "maximize"},
                {"name": "latency_ms", "device": "local-cpu", "direction": "minimize"},
            ],
            "constraints": [{"name": "latency_ms", "device": "local-cpu", "max": LATENCY_MAX}],
            "metrics": [
                {"name": "macs", "direction": "minimize"},
                {"name": "params", "direction": "minimize"},
            ],
            "sampler": {"name": sampler, "params": params or {}},
            "budget": {"trials": trials, "parallelism": 1, "seed": seed},
        }
        spec.update(over)
        return spec

    return make


# ------------------------------------------------------------------------------------------ CLI
class Cli:
    """Runs `nas` (typer's CliRunner on `nas.cli.app`) against one database and NAS_HOME."""

    runner = CliRunner()

    def __init__(self, url: str, home: Path) -> None:
        self.url, self.home = url, home

    def __call__(self, *args: Any) -> Result:
        from nas.cli import app

        env = {"NAS_DATABASE_URL": self.url, "NAS_HOME": str(self.home)}
        return self.runner.invoke(app, [str(a) for a in args], env=env)

    def json(self, *args: Any) -> Any:
        result = self(*args, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@dataclasses.dataclass
class CliJob:
    cli: Cli
    job: str
    result: Result
    spec_path: Path
    budget: int


@pytest.fixture(scope="module")
def cli_job(tmp_path_factory: pytest.TempPathFactory, nb201_csv: Path) -> Iterator[CliJob]:
    """One search run through `nas search` (budget, sampler and seed overridden on the command
    line), shared by a module's query tests."""
    tmp = tmp_path_factory.mktemp("cli")
    budget = 8
    with fast_dir(tmp) as d:
        cli = Cli(f"sqlite:///{d / 'nas.db'}", tmp / "home")
        spec_dir = tmp / "specs"
        spec_dir.mkdir()
        spec_path = spec_dir / "nb201.yaml"
        spec_path.write_text(
            yaml.safe_dump(
                {
                    "name": "cli [/x] run",  # user text, never rich markup
                    "space": {"name": "nb201"},
                    # relative to the spec's directory, not to the working directory
                    "evaluator": {
                        "kind": "table",
                        "path": os.path.relpath(nb201_csv, spec_dir),
                        "columns": {"accuracy": "cifar10-val"},
                    },
                    "objectives": [
                        {"name": "accuracy", "direction": "maximize"},
                        {"name": "latency_ms", "device": "local-cpu", "direction": "minimize"},
                    ],
                    "constraints": [{"name": "latency_ms", "device": "local-cpu", "max": 6.0}],
                    "metrics": [{"name": "macs", "direction": "minimize"}],
                    "sampler": {"name": "predictor", "params": {"candidates": 5000}},
                    "budget": {"trials": 300, "seed": 0},
                }
            )
        )
        result = cli("search", spec_path, "--trials", budget, "--sampler", "random", "--seed", 2)
        assert result.exit_code == 0, result.output
        m = re.search(
            r"job (search-[0-9a-f]{12}): finished, (\d+) trials, (\d+) expensive evaluations, 0 failed",
            result.stdout,
        )
        assert m, result.stdout
        yield CliJob(cli, m.group(1), result, spec_path, budget)
        reset_engines()


# ------------------------------------------------------------------------------ reference checks
def brute_front(points: np.ndarray) -> np.ndarray:
    """O(n^2) reference: row i is on the front iff no row is <= everywhere and < somewhere."""
    pts = np.asarray(points, dtype=np.float64)
    out = np.ones(len(pts), dtype=bool)
    for i in range(len(pts)):
        for j in range(len(pts)):
            if np.all(pts[j] <= pts[i]) and np.any(pts[j] < pts[i]):
                out[i] = False
                break
    return out


_SPACE = ss.get_space("nb201")
_TABLE: lt.LatencyTable | None = None


def expected_latency(arch: dict[str, Any]) -> float:
    global _TABLE
    if _TABLE is None:
        _TABLE = lt.find_table("local-cpu", "nb201", lt.shipped_table_path("local-cpu", "nb201"))
    return float(lt.estimate(_TABLE, _SPACE, arch))


def check_job(job_id: str, url: str, budget: int, accuracy: dict[str, float]) -> list[dict[str, Any]]:
    """What every finished tabular job must satisfy; returns its indexed trials.

    Budget: exactly `budget` expensive evaluations, numbered 1..budget, no architecture evaluated
    twice. Index: every COMPLETE Optuna trial is indexed once, with the metrics the table, the
    latency table and the cost model give. Constraints: stored as values, `feasible` matches the
    bound. Front: the stored front is the non-dominated set of the feasible trials.
    """
    from nas.db import _jobs as jobs_db
    from nas.search import trials

    engine = get_engine(url)
    job = jobs_db.get_job(job_id, engine=engine)
    rows = trials(job_id, engine=engine)
    numbers = [r["number"] for r in rows]
    assert len(numbers) == len(set(numbers)), "a trial number is indexed twice"

    evaluated = [r for r in rows if r["evaluation"] is not None]
    assert sorted(r["evaluation"] for r in evaluated) == list(range(1, budget + 1))
    ids = [r["arch_id"] for r in evaluated]
    assert len(ids) == len(set(ids)), "an architecture was evaluated twice"

    study = optuna.load_study(study_name=job.study_name, storage=url)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in complete) == sorted(numbers), "index and study disagree"
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]

    keys = {m["key"] for m in job.metrics}
    assert keys == {"accuracy", LATENCY, "macs", "params"}
    by_number = {t.number: t for t in complete}
    for r in rows:
        arch = r["arch"]
        assert r["arch_id"] == _SPACE.arch_id(arch)
        assert r["accuracy"] == pytest.approx(accuracy[r["arch_id"]])
        assert r[LATENCY] == pytest.approx(expected_latency(arch), rel=1e-9)
        cost = _SPACE.cost(arch)
        assert r["macs"] == cost["macs"] and r["params"] == cost["params"]
        assert r["feasible"] == (r[LATENCY] <= LATENCY_MAX), r
        t = by_number[r["number"]]
        assert list(t.values) == pytest.approx([r["accuracy"], r[LATENCY]])
        assert t.user_attrs["constraint_violation"] == pytest.approx([r[LATENCY] - LATENCY_MAX])

    feasible = [r for r in rows if r["feasible"]]
    pts = np.array([[-r["accuracy"], r[LATENCY]] for r in feasible]).reshape(-1, 2)
    want = {r["number"] for r, on in zip(feasible, brute_front(pts), strict=True) if on}
    assert {r["number"] for r in rows if r["on_front"]} == want
    assert not [r for r in rows if r["on_front"] and not r["feasible"]]
    return rows


@pytest.fixture(name="check_job")
def _check_job_fixture() -> Callable[..., list[dict[str, Any]]]:
    """`check_job(job_id, url, budget, accuracy)` (see above)."""
    return check_job


@pytest.fixture(name="brute_front")
def _brute_front_fixture() -> Callable[[np.ndarray], np.ndarray]:
    return brute_front
