"""Database URL resolution, engines, and retrying a call through a lost connection.

PostgreSQL engines (ours and Optuna's) ping a pooled connection before handing it out and
recycle connections after `POOL_RECYCLE_S`, so a server restart, a proxy timeout or an
administrator's ``pg_terminate_backend`` of an idle connection costs nothing. A connection lost
in the middle of a statement surfaces as an error that `is_transient` recognises and
`retry_transient` retries on a fresh connection.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import ArgumentError

__all__ = [
    "database_url",
    "dispose_engines",
    "engine_options",
    "get_engine",
    "is_transient",
    "redact",
    "retry_transient",
]

POOL_RECYCLE_S = 300
"""PostgreSQL connections older than this are replaced (idle-timeout proxies drop older ones)."""
_ENGINES: dict[str, Engine] = {}
_log = logging.getLogger("nas.db")
T = TypeVar("T")


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


def engine_options(url: str, application_name: str | None = None) -> dict[str, Any]:
    """``create_engine`` options for `url`, shared by our engines and Optuna's storage: pre-ping
    always; on PostgreSQL also `POOL_RECYCLE_S` and the connections' ``application_name`` (what
    ``pg_stat_activity`` shows, at most 63 characters)."""
    opts: dict[str, Any] = {"pool_pre_ping": True}
    if make_url(url).get_backend_name() == "postgresql":
        opts["pool_recycle"] = POOL_RECYCLE_S
        if application_name:
            opts["connect_args"] = {"application_name": application_name[:63]}
    return opts


def get_engine(url: str | None = None, *, application_name: str | None = None, cached: bool = True,
               **kwargs: Any) -> Engine:
    """An engine for `url` (see `database_url`), shared per (URL, `application_name`) within the
    process unless `cached` is False (the caller disposes it).

    A SQLite file's directory is created if missing. `application_name` names the connections
    on PostgreSQL (ignored elsewhere). Extra `kwargs` go to ``create_engine`` and bypass the cache.

    Raises:
        ValueError: the URL is malformed or names a driver that is not installed.
    """
    resolved = database_url(url)
    key = resolved if not application_name else f"{resolved}#application_name={application_name}"
    cached = cached and not kwargs
    if cached and key in _ENGINES:
        return _ENGINES[key]
    try:
        parsed = make_url(resolved)
    except ArgumentError as exc:
        raise ValueError(
            f"Bad database URL {redact(resolved)!r}: {exc}. Example: sqlite:///.nas/nas.db"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(resolved, **{**engine_options(resolved, application_name), **kwargs})
    except (ImportError, ArgumentError) as exc:
        hint = (
            ' (`pip install "psycopg[binary]"` for postgresql+psycopg)'
            if parsed.get_backend_name() == "postgresql"
            else ""
        )
        raise ValueError(f"Cannot use database URL {redact(resolved)!r}: {exc}{hint}.") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if cached:
        _ENGINES[key] = engine
    return engine


def dispose_engines() -> None:
    """Close every cached engine (tests; before forking)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def _transient_cause(exc: BaseException) -> BaseException | None:
    """The lost connection (or busy database) behind `exc`, if any (see `is_transient`)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, sa_exc.DBAPIError) and (
            e.connection_invalidated or isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError))
        ):
            return e
        if isinstance(e, sa_exc.PendingRollbackError):  # a connection invalidated mid-transaction
            return e
        if type(e).__module__.startswith("psycopg") and type(e).__name__ in ("OperationalError", "InterfaceError"):
            return e
        e = e.__cause__ or e.__context__
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from, e.g. inside Optuna's
    ``StorageInternalError``) is a lost or refused connection, a lock timeout or a busy SQLite
    file: worth retrying on a fresh connection, unlike bad SQL or a constraint violation."""
    return _transient_cause(exc) is not None


def retry_transient(
    fn: Callable[[], T],
    *,
    what: str = "database call",
    attempts: int = 8,
    backoff_s: float = 0.05,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """``fn()``, called again after a transient error (`is_transient`) up to `attempts` times in
    all, waiting `backoff_s`, doubling up to 2 s (about 7 s in all by default). `fn` must be
    safe to repeat: the first call may have committed before its connection was lost.

    Raises:
        The last error once `attempts` are spent, and any non-transient error at once.
    """
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered by is_transient
            cause = _transient_cause(exc)
            if attempt == attempts - 1 or cause is None:
                raise
            first_line = (str(cause).splitlines() or [""])[0][:200]
            _log.warning("%s failed (%s: %s); retrying (%d/%d)", what, type(cause).__name__, first_line,
                         attempt + 1, attempts - 1)
            if on_retry is not None:
                on_retry(exc)
            time.sleep(min(2.0, backoff_s * 2**attempt))
    raise AssertionError("unreachable")
