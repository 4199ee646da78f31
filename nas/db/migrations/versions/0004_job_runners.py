"""where a job runs: its backend (a local runner process or a Ray cluster job) and runner

``backend`` is ``local`` (a runner process started by the service or the CLI on ``runner_host``
with ``runner_pid``) or ``ray`` (a Ray Jobs API submission whose id is the job id, on the cluster
whose dashboard is ``ray_address``). The service uses them to reconcile a job's status with what
actually runs it, and to resume jobs whose runner is gone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nas_jobs") as batch:
        batch.add_column(sa.Column("backend", sa.String(16), nullable=False, server_default="local"))
        batch.add_column(sa.Column("ray_address", sa.String(255), nullable=True))
        batch.add_column(sa.Column("runner_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("runner_pid", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nas_jobs") as batch:
        for name in ("runner_pid", "runner_host", "ray_address", "backend"):
            batch.drop_column(name)
