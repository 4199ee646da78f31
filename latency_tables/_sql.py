"""Latency tables in a SQL database (SQLAlchemy 2 Core; SQLite and PostgreSQL tested).

Two tables, the ones the service's storage layer will own (through its alembic revisions):

``latency_tables``  id, device, space, meta (JSON), overhead (JSON); unique (device, space)
``latency_entries`` table_id -> latency_tables.id, resolution (0: any), op_key, count, mean,
                    std, p50, p90, min; primary key (table_id, resolution, op_key)

SQLAlchemy is imported lazily: ``import latency_tables`` does not need it.
"""

from __future__ import annotations

import functools
from typing import Any

from latency_tables._table import LatencyTable, OverheadModel


def _sa() -> Any:
    try:
        import sqlalchemy  # noqa: PLC0415
    except ImportError:
        raise ImportError(
            "Storing tables in a database needs SQLAlchemy: `pip install sqlalchemy`."
        ) from None
    return sqlalchemy


@functools.lru_cache(maxsize=1)
def schema() -> tuple[Any, Any, Any]:
    """(MetaData, latency_tables Table, latency_entries Table)."""
    sa = _sa()
    md = sa.MetaData()
    tables = sa.Table(
        "latency_tables",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("space", sa.String(128), nullable=False, server_default=""),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("overhead", sa.JSON, nullable=False),
        sa.UniqueConstraint("device", "space", name="uq_latency_tables_device_space"),
    )
    entries = sa.Table(
        "latency_entries",
        md,
        sa.Column(
            "table_id", sa.Integer, sa.ForeignKey("latency_tables.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("resolution", sa.Integer, primary_key=True),
        sa.Column("op_key", sa.String(512), primary_key=True),
        sa.Column("count", sa.Integer, nullable=True),
        sa.Column("mean", sa.Float, nullable=False),
        sa.Column("std", sa.Float, nullable=False),
        sa.Column("p50", sa.Float, nullable=True),
        sa.Column("p90", sa.Float, nullable=True),
        sa.Column("min", sa.Float, nullable=True),
    )
    return md, tables, entries


def _engine(bind: Any) -> Any:
    return _sa().create_engine(bind) if isinstance(bind, str) else bind


def create_schema(bind: Any) -> None:
    """Create both tables if missing (`bind`: an Engine or a database URL)."""
    md, _, _ = schema()
    md.create_all(_engine(bind))


def _default_space(table: LatencyTable) -> str:
    spaces = table.meta.get("spaces") or []
    return str(spaces[0]) if len(spaces) == 1 else ""


def save_table(bind: Any, table: LatencyTable, space: str | None = None) -> int:
    """Store `table` under (device, `space`), replacing what was there, in one transaction.

    Args:
        space: Name of the table within its device (default: its single measured space, else "").

    Returns:
        The row id in ``latency_tables``.
    """
    sa = _sa()
    _, tables, entries = schema()
    space = _default_space(table) if space is None else space
    engine = _engine(bind)
    with engine.begin() as conn:
        old = conn.execute(
            sa.select(tables.c.id).where(tables.c.device == table.device, tables.c.space == space)
        ).scalar_one_or_none()
        if old is not None:
            conn.execute(sa.delete(entries).where(entries.c.table_id == old))
            conn.execute(sa.delete(tables).where(tables.c.id == old))
        overhead = {k: v.to_dict() for k, v in table.overhead.items()}
        table_id = conn.execute(
            sa.insert(tables).values(device=table.device, space=space, meta=table.meta, overhead=overhead)
        ).inserted_primary_key[0]
        rows = [
            {
                "table_id": table_id,
                "resolution": row["resolution"] or 0,
                "op_key": row["key"],
                **{f: row[f] for f in ("count", "mean", "std", "p50", "p90", "min")},
            }
            for row in table.to_rows()
        ]
        if rows:
            conn.execute(sa.insert(entries), rows)
    return int(table_id)


def load_table(bind: Any, device: str, space: str = "") -> LatencyTable:
    """Read the table stored under (`device`, `space`).

    Raises:
        KeyError: no such table (the message lists the stored ones).
    """
    sa = _sa()
    _, tables, entries = schema()
    with _engine(bind).connect() as conn:
        head = (
            conn.execute(sa.select(tables).where(tables.c.device == device, tables.c.space == space))
            .mappings()
            .one_or_none()
        )
        if head is None:
            stored = ", ".join(f"{d}/{s or '-'}" for d, s, _ in list_tables(conn)) or "(none)"
            raise KeyError(
                f"No latency table for device {device!r}, space {space!r} in the database; stored: {stored}."
            )
        rows = (
            conn.execute(
                sa.select(entries)
                .where(entries.c.table_id == head["id"])
                .order_by(entries.c.resolution, entries.c.op_key)
            )
            .mappings()
            .all()
        )
    return LatencyTable.from_rows(
        [
            {
                "device": device,
                "key": r["op_key"],
                **{k: r[k] for k in ("resolution", "count", "mean", "std", "p50", "p90", "min")},
            }
            for r in rows
        ],
        device,
        dict(head["meta"]),
        {k: OverheadModel.from_dict(v) for k, v in (head["overhead"] or {}).items()},
    )


def list_tables(bind: Any) -> list[tuple[str, str, int]]:
    """(device, space, number of entries) of every stored table."""
    sa = _sa()
    _, tables, entries = schema()
    stmt = (
        sa.select(tables.c.device, tables.c.space, sa.func.count(entries.c.op_key))
        .select_from(tables.outerjoin(entries, entries.c.table_id == tables.c.id))
        .group_by(tables.c.id, tables.c.device, tables.c.space)
        .order_by(tables.c.device, tables.c.space)
    )
    if hasattr(bind, "execute") and not hasattr(bind, "connect"):  # a Connection
        return [(d, s, int(n)) for d, s, n in bind.execute(stmt)]
    with _engine(bind).connect() as conn:
        return [(d, s, int(n)) for d, s, n in conn.execute(stmt)]
