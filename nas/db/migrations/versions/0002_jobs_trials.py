"""jobs, the typed trials index (one float column per metric slot) and the evaluation cache

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SLOTS = 16


def upgrade() -> None:
    op.create_table(
        "nas_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("study_name", sa.String(length=255), nullable=False),
        sa.Column("versions", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nas_jobs")),
    )
    for col in ("kind", "name", "status"):
        op.create_index(op.f(f"ix_nas_jobs_{col}"), "nas_jobs", [col], unique=False)
    op.create_table(
        "nas_trials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("arch_id", sa.String(length=512), nullable=False),
        sa.Column("arch", JSON, nullable=False),
        sa.Column("feasible", sa.Boolean(), nullable=False),
        sa.Column("on_front", sa.Boolean(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("evaluation", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(f"m{i}", sa.Float(), nullable=True) for i in range(SLOTS)),
        sa.ForeignKeyConstraint(["job_id"], ["nas_jobs.id"], name=op.f("fk_nas_trials_job_id_nas_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nas_trials")),
        sa.UniqueConstraint("job_id", "number", name=op.f("uq_nas_trials_job_id_number")),
    )
    op.create_index(op.f("ix_nas_trials_arch_id"), "nas_trials", ["arch_id"], unique=False)
    op.create_index("ix_nas_trials_job_feasible", "nas_trials", ["job_id", "feasible"], unique=False)
    op.create_index("ix_nas_trials_job_front", "nas_trials", ["job_id", "on_front"], unique=False)
    for i in range(3):
        op.create_index(f"ix_nas_trials_job_m{i}", "nas_trials", ["job_id", f"m{i}"], unique=False)
    op.create_table(
        "nas_eval_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("arch_id", sa.String(length=512), nullable=False),
        sa.Column("values", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_nas_eval_cache")),
    )
    op.create_index(op.f("ix_nas_eval_cache_fingerprint"), "nas_eval_cache", ["fingerprint"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_nas_eval_cache_fingerprint"), table_name="nas_eval_cache")
    op.drop_table("nas_eval_cache")
    for i in range(3):
        op.drop_index(f"ix_nas_trials_job_m{i}", table_name="nas_trials")
    op.drop_index("ix_nas_trials_job_front", table_name="nas_trials")
    op.drop_index("ix_nas_trials_job_feasible", table_name="nas_trials")
    op.drop_index(op.f("ix_nas_trials_arch_id"), table_name="nas_trials")
    op.drop_table("nas_trials")
    for col in ("kind", "name", "status"):
        op.drop_index(op.f(f"ix_nas_jobs_{col}"), table_name="nas_jobs")
    op.drop_table("nas_jobs")
