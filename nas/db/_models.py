"""ORM rows. They never leave `nas.db` (crud functions return frozen dataclasses)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["METRIC_SLOTS", "ArtifactRow", "Base", "EvalCacheRow", "JSONType", "JobRow", "TrialRow"]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class ArtifactRow(Base):
    """A file or directory the service produced (supernet checkpoints, exports), by content hash."""

    __tablename__ = "artifacts"
    __table_args__ = (sa.UniqueConstraint("kind", "path", "sha256"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(64), index=True)
    name: Mapped[str] = mapped_column(sa.String(255), index=True)
    path: Mapped[str] = mapped_column(sa.String(2048))
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


METRIC_SLOTS = 16
"""Typed float columns ``m0 .. m15`` per trial: one per objective, constraint or extra metric of a
job (the job's ``metrics`` JSON maps names to slots), so Pareto queries filter and sort in SQL."""


class JobRow(Base):
    """A search (or training) job: its spec, status and the metric-to-column map of its trials."""

    __tablename__ = "nas_jobs"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32), index=True)
    name: Mapped[str] = mapped_column(sa.String(255), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    owner: Mapped[str] = mapped_column(sa.String(255), default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    metrics: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    study_name: Mapped[str] = mapped_column(sa.String(255))
    versions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    backend: Mapped[str] = mapped_column(sa.String(16), default="local", server_default="local")
    """``local`` (a runner process on `runner_host`) or ``ray`` (a Ray Jobs API submission)."""
    ray_address: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    runner_host: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    runner_pid: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)


class TrialRow(Base):
    """One finished trial, mirrored from the Optuna study for fast, typed queries."""

    __tablename__ = "nas_trials"
    __table_args__ = (
        sa.UniqueConstraint("job_id", "number"),
        sa.Index("ix_nas_trials_job_feasible", "job_id", "feasible"),
        sa.Index("ix_nas_trials_job_front", "job_id", "on_front"),
        # Only the stored fronts' rows (revision 0003): a few pages, so the planner reads a job's
        # front through it even with stale statistics.
        sa.Index("ix_nas_trials_front", "job_id", postgresql_where=sa.text("on_front IS true"),
                 sqlite_where=sa.text("on_front IS 1")),
        sa.Index("ix_nas_trials_job_m0", "job_id", "m0"),
        sa.Index("ix_nas_trials_job_m1", "job_id", "m1"),
        sa.Index("ix_nas_trials_job_m2", "job_id", "m2"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("nas_jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(sa.Integer)
    arch_id: Mapped[str] = mapped_column(sa.String(512), index=True)
    arch: Mapped[dict[str, Any]] = mapped_column(JSONType)
    feasible: Mapped[bool] = mapped_column(sa.Boolean)
    on_front: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    cached: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    evaluation: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    finished_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    m0: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m1: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m2: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m3: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m4: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m5: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m6: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m7: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m8: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m9: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m10: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m11: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m12: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m13: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m14: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    m15: Mapped[float | None] = mapped_column(sa.Float, nullable=True)


class EvalCacheRow(Base):
    """Expensive evaluations by (evaluator fingerprint: checkpoint/table hash + data split, arch_id)."""

    __tablename__ = "nas_eval_cache"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(128), index=True)
    arch_id: Mapped[str] = mapped_column(sa.String(512))
    values: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
