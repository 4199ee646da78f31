"""Alembic, run programmatically: the migration environment lives inside this package."""

from __future__ import annotations

import weakref
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from nas.db._engine import get_engine, redact

__all__ = [
    "SchemaOutdated",
    "alembic_config",
    "current_revision",
    "ensure_schema",
    "head_revision",
    "upgrade",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "nas_alembic_version"
"""Our Alembic version table (Optuna's storage owns ``alembic_version`` in the same database)."""


class SchemaOutdated(RuntimeError):
    """The database's schema is older (or newer) than this code's head revision."""


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest revision id of the packaged migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine | None = None) -> str | None:
    """The database's revision (None for a database never migrated)."""
    engine = engine or get_engine()
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine | None = None, revision: str = "head") -> str | None:
    """Apply the migrations up to `revision`; returns the revision afterwards."""
    engine = engine or get_engine()
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(engine)


def downgrade(engine: Engine, revision: str) -> str | None:
    """Revert to `revision` (``base``: drop everything the migrations created)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    return current_revision(engine)


_CHECKED: weakref.WeakSet[Engine] = weakref.WeakSet()
"""Engines already at head (weak: a disposed engine's id may be reused by a new one)."""


def ready_engine(engine: Engine | None = None) -> Engine:
    """`engine` (default: `get_engine()`) with its schema at head (see `ensure_schema`)."""
    engine = engine or get_engine()
    ensure_schema(engine)
    return engine


def ensure_schema(engine: Engine | None = None) -> None:
    """Bring a fresh database to head; refuse one at another revision.

    Raises:
        SchemaOutdated: the database holds tables at another revision (message names the fix).
    """
    engine = engine or get_engine()
    if engine in _CHECKED:
        return
    current, head = current_revision(engine), head_revision()
    if current is None:
        tables = set(sa.inspect(engine).get_table_names())
        if tables & {"artifacts", "nas_jobs", "nas_trials", "nas_eval_cache"}:
            raise SchemaOutdated(
                f"Database {redact(str(engine.url))} has service tables but no Alembic revision; "
                "it was not created by `nas db upgrade`. Use another NAS_DATABASE_URL."
            )
        upgrade(engine)
    elif current != head:
        raise SchemaOutdated(
            f"Database {redact(str(engine.url))} is at schema revision {current} but this version "
            f"needs {head}; "
            "run `nas db upgrade` (back it up first)."
        )
    _CHECKED.add(engine)
