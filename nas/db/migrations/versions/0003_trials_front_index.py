"""a partial index over the stored Pareto fronts of the trials index (``on_front`` rows only)

Pareto queries read a job's stored front (``job_id = ? AND on_front``). The composite
(job_id, on_front) index serves that with fresh statistics, but with stale ones (a job just
bulk-loaded, autovacuum behind or off) the planner saw every (job_id, ...) index as equally cheap
and could pick (job_id, m2): 1,000,000 rows read instead of 155 (4.8 s instead of ~1 ms). This
index holds only the front rows of all jobs, so it stays a few pages and always costs least.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The predicates are written as the queries render ``TrialRow.on_front.is_(True)``, so that
# SQLite (which matches partial-index predicates by their terms) uses the index too.
PG_WHERE = "on_front IS true"
SQLITE_WHERE = "on_front IS 1"


def upgrade() -> None:
    op.create_index(
        "ix_nas_trials_front", "nas_trials", ["job_id"], unique=False,
        postgresql_where=sa.text(PG_WHERE), sqlite_where=sa.text(SQLITE_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_nas_trials_front", table_name="nas_trials")
