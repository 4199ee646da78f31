"""Database URL resolution and engines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["database_url", "dispose_engines", "get_engine", "redact"]

_ENGINES: dict[str, Engine] = {}


def database_url(url: str | None = None) -> str:
    """`url`, else ``NAS_DATABASE_URL``, else ``sqlite:///$NAS_HOME/nas.db`` (NAS_HOME: ``./.nas``)."""
    if url:
        return url
    env = os.environ.get("NAS_DATABASE_URL")
    if env:
        return env
    home = Path(os.environ.get("NAS_HOME", ".nas"))
    return f"sqlite:///{home / 'nas.db'}"


def redact(url: str) -> str:
    """The URL with any password hidden (for messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def get_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for `url` (see `database_url`), shared per URL within the process.

    A SQLite file's directory is created if missing. Extra `kwargs` go to ``create_engine`` and
    bypass the cache.

    Raises:
        ValueError: the URL is malformed or names a driver that is not installed.
    """
    resolved = database_url(url)
    if not kwargs and resolved in _ENGINES:
        return _ENGINES[resolved]
    try:
        parsed = make_url(resolved)
    except ArgumentError as exc:
        raise ValueError(
            f"Bad database URL {redact(resolved)!r}: {exc}. Example: sqlite:///.nas/nas.db"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(resolved, pool_pre_ping=True, **kwargs)
    except (ImportError, ArgumentError) as exc:
        hint = (
            ' (`pip install "psycopg[binary]"` for postgresql+psycopg)'
            if parsed.get_backend_name() == "postgresql"
            else ""
        )
        raise ValueError(f"Cannot use database URL {redact(resolved)!r}: {exc}{hint}.") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if not kwargs:
        _ENGINES[resolved] = engine
    return engine


def dispose_engines() -> None:
    """Close every cached engine (tests; before forking)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
