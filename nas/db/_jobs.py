"""Jobs, the typed trials index and the evaluation cache (crud; callers get plain records)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from nas.db._migrate import ready_engine
from nas.db._models import EvalCacheRow, JobRow, TrialRow

__all__ = [
    "JOB_BACKENDS",
    "JOB_STATES",
    "Job",
    "TrialRecord",
    "cache_get",
    "cache_put",
    "create_job",
    "get_job",
    "insert_trials",
    "list_jobs",
    "new_job_id",
    "trial_numbers",
    "update_job",
]

JOB_STATES = ("pending", "running", "finished", "failed", "cancelled")
JOB_BACKENDS = ("local", "ray")
ANALYZE_AFTER = 50_000
"""`insert_trials` of at least this many rows runs ANALYZE on the trials table (PostgreSQL)."""
_TRIAL_COLUMNS = (
    "job_id", "number", "arch_id", "arch", "feasible", "on_front", "cached", "evaluation", "seconds",
    "finished_at",
)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A stored timestamp as an aware UTC datetime."""
    if value is not None and value.tzinfo is None:  # SQLite drops the zone; we store UTC
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Job:
    """A job record (see `JobRow`)."""

    id: str
    kind: str
    name: str
    status: str
    owner: str
    spec: dict[str, Any]
    metrics: list[dict[str, Any]]
    study_name: str
    versions: dict[str, Any]
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    heartbeat_at: dt.datetime | None = None
    backend: str = "local"
    ray_address: str | None = None
    runner_host: str | None = None
    runner_pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("created_at", "updated_at", "heartbeat_at"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d


def _job(row: JobRow) -> Job:
    return Job(
        row.id, row.kind, row.name, row.status, row.owner, dict(row.spec), list(row.metrics or []),
        row.study_name, dict(row.versions or {}), row.error, as_utc(row.created_at),  # type: ignore[arg-type]
        as_utc(row.updated_at), as_utc(row.heartbeat_at),  # type: ignore[arg-type]
        row.backend or "local", row.ray_address, row.runner_host, row.runner_pid,
    )


def new_job_id(kind: str = "search") -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def create_job(
    *,
    kind: str,
    name: str,
    spec: Mapping[str, Any],
    metrics: Sequence[Mapping[str, Any]] = (),
    job_id: str | None = None,
    owner: str = "",
    versions: Mapping[str, Any] | None = None,
    status: str = "pending",
    backend: str = "local",
    ray_address: str | None = None,
    engine: Engine | None = None,
) -> Job:
    """Insert a job (its study is named after its id). `backend` is ``local`` or ``ray`` (then
    `ray_address` is the cluster's dashboard address, and the Ray submission id is the job id).

    Raises:
        ValueError: an unknown status, or `job_id` is taken.
    """
    if status not in JOB_STATES:
        raise ValueError(f"Unknown job status {status!r}; allowed: {', '.join(JOB_STATES)}.")
    if backend not in JOB_BACKENDS:
        raise ValueError(f"Unknown job backend {backend!r}; allowed: {', '.join(JOB_BACKENDS)}.")
    eng = ready_engine(engine)
    jid = job_id or new_job_id(kind)
    now = _now()
    row = JobRow(
        id=jid, kind=kind, name=name, status=status, owner=owner, spec=dict(spec),
        metrics=[dict(m) for m in metrics], study_name=jid, versions=dict(versions or {}), error=None,
        created_at=now, updated_at=now, heartbeat_at=None, backend=backend, ray_address=ray_address,
    )
    try:
        with Session(eng) as s, s.begin():
            s.add(row)
    except sa.exc.IntegrityError:
        with Session(eng) as s:
            if s.get(JobRow, jid) is None:
                raise
        raise ValueError(f"A job with id {jid!r} already exists; choose another id (or none).") from None
    return get_job(jid, engine=eng)


def get_job(job_id: str, *, engine: Engine | None = None) -> Job:
    """The job with this id.

    Raises:
        KeyError: no such job (the message lists a few recent ids).
    """
    eng = ready_engine(engine)
    with Session(eng) as s:
        row = s.get(JobRow, job_id)
        if row is None:
            recent = s.scalars(sa.select(JobRow.id).order_by(JobRow.created_at.desc()).limit(5)).all()
            hint = f"; recent jobs: {', '.join(recent)}" if recent else "; there are no jobs yet"
            raise KeyError(f"Unknown job {job_id!r}{hint} (see `nas jobs`).")
        return _job(row)


def list_jobs(
    *, kind: str | None = None, status: str | None = None, engine: Engine | None = None
) -> list[Job]:
    eng = ready_engine(engine)
    q = sa.select(JobRow).order_by(JobRow.created_at.desc())
    if kind:
        q = q.where(JobRow.kind == kind)
    if status:
        q = q.where(JobRow.status == status)
    with Session(eng) as s:
        return [_job(r) for r in s.scalars(q)]


def update_job(
    job_id: str,
    *,
    status: str | None = None,
    error: str | None = None,
    heartbeat: bool = False,
    runner: tuple[str, int] | None = None,
    expect: Sequence[str] | None = None,
    engine: Engine | None = None,
) -> bool:
    """Change a job's status/error (and its `runner`: host, pid); with `expect`, only when its
    status is one of those (an atomic compare-and-set). Returns whether a row changed."""
    if status is not None and status not in JOB_STATES:
        raise ValueError(f"Unknown job status {status!r}; allowed: {', '.join(JOB_STATES)}.")
    eng = ready_engine(engine)
    values: dict[str, Any] = {"updated_at": _now()}
    if status is not None:
        values["status"] = status
    if error is not None:
        values["error"] = error
    if heartbeat:
        values["heartbeat_at"] = values["updated_at"]
    if runner is not None:
        values["runner_host"], values["runner_pid"] = runner
    q = sa.update(JobRow).where(JobRow.id == job_id).values(**values)
    if expect is not None:
        q = q.where(JobRow.status.in_(list(expect)))
    with eng.begin() as conn:
        return conn.execute(q).rowcount > 0


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as stored in the index (`values` by metric key)."""

    number: int
    arch_id: str
    arch: dict[str, Any]
    values: dict[str, float | None]
    feasible: bool
    on_front: bool = False
    cached: bool = False
    evaluation: int | None = None
    seconds: float = 0.0
    finished_at: dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def insert_trials(
    job_id: str,
    trials: Iterable[TrialRecord],
    slots: Mapping[str, int],
    *,
    engine: Engine | None = None,
    chunk: int = 5000,
) -> int:
    """Insert finished trials (idempotent per (job, number): a number already stored is skipped,
    so a resumed driver, a retried call whose first attempt committed before its connection was
    lost, or several drivers on one job never duplicate or fail). Returns the number inserted.

    The stored numbers are read inside the inserting transaction, which on PostgreSQL first
    takes a per-job transaction lock (``pg_advisory_xact_lock``), so concurrent inserters for one
    job take turns; INSERTs also say ``ON CONFLICT DO NOTHING`` (PostgreSQL, SQLite).

    Inserting any trial clears the job's stored front (`on_front` of the trials already stored;
    the new ones keep their own flag): it may no longer be the front, and `set_front` (the
    driver's `update_front`) stores the new one.

    All in one transaction. `trials` is consumed lazily (a generator of a million records needs
    no list of them); on PostgreSQL through psycopg the rows go in by ``COPY`` (about ten times
    faster than INSERT for big batches), elsewhere by INSERT in chunks of `chunk` rows. After
    `ANALYZE_AFTER` rows or more, PostgreSQL's statistics of the table are refreshed.
    """
    eng = ready_engine(engine)
    existing: set[int] = set()  # filled inside the transaction, before the first row is made
    now = _now()
    metric_slots = sorted({int(s) for s in slots.values()})
    columns = [*_TRIAL_COLUMNS, *(f"m{s}" for s in metric_slots)]
    position = {s: len(_TRIAL_COLUMNS) + i for i, s in enumerate(metric_slots)}

    def rows() -> Iterator[list[Any]]:
        for t in trials:
            if t.number in existing:
                continue
            existing.add(t.number)
            row: list[Any] = [
                job_id, int(t.number), t.arch_id, t.arch, bool(t.feasible), bool(t.on_front), bool(t.cached),
                t.evaluation, float(t.seconds), t.finished_at or now,
            ]
            row.extend([None] * len(metric_slots))
            for key, value in t.values.items():
                if key in slots:
                    row[position[int(slots[key])]] = None if value is None else float(value)
            yield row

    count = 0
    with eng.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"nas_trials:{job_id}"})
        existing.update(conn.scalars(sa.select(TrialRow.number).where(TrialRow.job_id == job_id)))
        todo = rows()
        first = next(todo, None)
        if first is None:
            return 0
        # New trials may change the job's front: drop the stored one (the driver's `update_front`
        # stores it again), so that Pareto queries compute it meanwhile instead of trusting it.
        conn.execute(
            sa.update(TrialRow)
            .where(TrialRow.job_id == job_id, TrialRow.on_front.is_(True))
            .values(on_front=False)
        )
        todo = itertools.chain([first], todo)
        if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
            arch = columns.index("arch")
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            sql = f"COPY {TrialRow.__tablename__} ({', '.join(columns)}) FROM STDIN"
            with cursor, cursor.copy(sql) as copy:
                for row in todo:
                    row[arch] = json.dumps(row[arch])
                    copy.write_row(row)
                    count += 1
        else:
            insert = _insert_ignoring_duplicates(conn.dialect.name)
            batch: list[dict[str, Any]] = []
            for row in todo:
                batch.append(dict(zip(columns, row, strict=True)))
                if len(batch) >= chunk:
                    conn.execute(insert, batch)
                    count, batch = count + len(batch), []
            if batch:
                conn.execute(insert, batch)
                count += len(batch)
    if count >= ANALYZE_AFTER and eng.dialect.name == "postgresql":
        # A bulk load: refresh the planner's statistics now, as PostgreSQL's manual advises, not
        # when autovacuum gets round to it. Until then the new job_id is estimated at one row
        # and every (job_id, ...) index looks equally cheap, so that a query by (job_id, number)
        # may read all of the job's rows through (job_id, m2). (Owner only; others get a warning.)
        with eng.connect() as conn:
            conn.execute(sa.text(f"ANALYZE {TrialRow.__tablename__}"))
            conn.commit()
    return count


def _insert_ignoring_duplicates(dialect: str) -> Any:
    """INSERT into the trials index that skips an existing (job_id, number) where the dialect can."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(TrialRow).on_conflict_do_nothing(index_elements=["job_id", "number"])
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(TrialRow).on_conflict_do_nothing(index_elements=["job_id", "number"])
    return sa.insert(TrialRow)


def trial_numbers(job_id: str, *, engine: Engine | None = None) -> list[int]:
    eng = ready_engine(engine)
    with eng.connect() as conn:
        return list(conn.scalars(sa.select(TrialRow.number).where(TrialRow.job_id == job_id)))


def set_front(job_id: str, numbers: Sequence[int], *, engine: Engine | None = None) -> None:
    """Mark exactly `numbers` as the job's stored Pareto front (objectives, feasible trials)."""
    eng = ready_engine(engine)
    with eng.begin() as conn:
        conn.execute(
            sa.update(TrialRow)
            .where(TrialRow.job_id == job_id, TrialRow.on_front.is_(True))
            .values(on_front=False)
        )
        for i in range(0, len(numbers), 5000):
            conn.execute(
                sa.update(TrialRow)
                .where(TrialRow.job_id == job_id, TrialRow.number.in_(list(numbers[i : i + 5000])))
                .values(on_front=True)
            )


def cache_get(keys: Sequence[str], *, engine: Engine | None = None) -> dict[str, dict[str, Any]]:
    eng = ready_engine(engine)
    out: dict[str, dict[str, Any]] = {}
    with eng.connect() as conn:
        for i in range(0, len(keys), 500):
            q = sa.select(EvalCacheRow.key, EvalCacheRow.values).where(
                EvalCacheRow.key.in_(list(keys[i : i + 500]))
            )
            out.update({k: dict(v) for k, v in conn.execute(q)})
    return out


def cache_put(
    entries: Sequence[tuple[str, str, str, Mapping[str, Any]]], *, engine: Engine | None = None
) -> None:
    """Store (key, fingerprint, arch_id, values) rows; keys already present are left alone."""
    if not entries:
        return
    eng = ready_engine(engine)
    have = set(cache_get([e[0] for e in entries], engine=eng))
    rows = [
        {"key": k, "fingerprint": fp, "arch_id": aid, "values": dict(v), "created_at": _now()}
        for k, fp, aid, v in entries
        if k not in have
    ]
    if rows:
        with eng.begin() as conn:
            conn.execute(sa.insert(EvalCacheRow), rows)
