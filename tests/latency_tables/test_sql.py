"""Tables through SQL (SQLAlchemy Core): SQLite always, PostgreSQL when one answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.latency_tables.test_table import make_table

sa = pytest.importorskip("sqlalchemy")
from latency_tables import _sql  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres() -> Iterator[object]:
    pytest.importorskip("psycopg")
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means: no PostgreSQL here
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}")
    schema = f"lt_test_{uuid.uuid4().hex[:10]}"  # isolated from concurrent runs and the service's tables
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    scoped = engine.execution_options(schema_translate_map={None: schema})
    try:
        yield scoped
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path) -> Iterator[object]:
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'nas.db'}")
        yield eng
        eng.dispose()
    else:
        yield from _postgres()


def test_round_trip(engine) -> None:
    _sql.create_schema(engine)
    t = make_table()
    table_id = _sql.save_table(engine, t)
    assert table_id >= 1
    back = _sql.load_table(engine, "local-cpu", "mbv3_tiny")
    assert back == t
    assert back.get(t.keys()[0]).mean == t.get(t.keys()[0]).mean  # floats survive exactly
    assert _sql.list_tables(engine) == [("local-cpu", "mbv3_tiny", 4)]


def test_save_replaces_and_spaces_are_separate(engine) -> None:
    _sql.create_schema(engine)
    t = make_table()
    _sql.save_table(engine, t)
    _sql.save_table(engine, t, space="other")
    smaller = make_table()
    smaller._parts.pop(160)
    _sql.save_table(engine, smaller)
    assert _sql.list_tables(engine) == [("local-cpu", "mbv3_tiny", 3), ("local-cpu", "other", 4)]
    assert _sql.load_table(engine, "local-cpu", "mbv3_tiny") == smaller


def test_missing_table_lists_stored(engine) -> None:
    _sql.create_schema(engine)
    _sql.save_table(engine, make_table())
    with pytest.raises(KeyError, match=r"No latency table for device 'note10'.*stored: local-cpu/mbv3_tiny"):
        _sql.load_table(engine, "note10", "ofa_mbv3_w12")
