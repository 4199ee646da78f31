"""The service database: SQLAlchemy 2 models, Alembic migrations, and crud functions.

The URL comes from ``NAS_DATABASE_URL`` (default ``sqlite:///$NAS_HOME/nas.db``, NAS_HOME
defaulting to ``./.nas``); ``postgresql+psycopg://...`` for a cluster. The schema changes only
through the Alembic revisions in ``nas/db/migrations/versions/``; ``nas db upgrade`` applies
them, and a fresh (empty) database is brought to the head revision on first use.

>>> from nas.db import register_artifact, list_artifacts
>>> art = register_artifact(kind="supernet_checkpoint", name="run", path="/x", sha256="ab" * 32, size_bytes=1)
>>> [a.name for a in list_artifacts(kind="supernet_checkpoint")]
['run']
"""

from __future__ import annotations

from nas.db._crud import Artifact, get_artifact, list_artifacts, register_artifact
from nas.db._engine import database_url, dispose_engines, get_engine, redact
from nas.db._migrate import SchemaOutdated, current_revision, ensure_schema, head_revision, upgrade

__all__ = [
    "Artifact",
    "SchemaOutdated",
    "current_revision",
    "database_url",
    "dispose_engines",
    "ensure_schema",
    "get_artifact",
    "get_engine",
    "head_revision",
    "list_artifacts",
    "redact",
    "register_artifact",
    "upgrade",
]
