"""Keyword-only crud functions; they take an engine (default: `get_engine()`) and return records."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nas.db._jobs import as_utc
from nas.db._migrate import ready_engine
from nas.db._models import ArtifactRow

__all__ = ["Artifact", "get_artifact", "list_artifacts", "register_artifact"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Artifact:
    """A registered artifact (see `ArtifactRow`)."""

    id: int
    kind: str
    name: str
    path: str
    sha256: str
    size_bytes: int
    created_at: dt.datetime
    meta: dict[str, Any] = field(default_factory=dict)


def _record(row: ArtifactRow) -> Artifact:
    created = as_utc(row.created_at)
    assert created is not None
    return Artifact(
        row.id, row.kind, row.name, row.path, row.sha256, int(row.size_bytes), created, dict(row.meta or {})
    )


def register_artifact(
    *,
    kind: str,
    name: str,
    path: str,
    sha256: str,
    size_bytes: int,
    meta: dict[str, Any] | None = None,
    engine: Engine | None = None,
) -> Artifact:
    """Record an artifact; registering the same (kind, path, sha256) again returns the first record.

    Raises:
        ValueError: an empty kind/name/path, a sha256 that is not 64 lowercase hex digits, or a
            negative size.
    """
    for label, value in (("kind", kind), ("name", name), ("path", path)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"`{label}` must be a non-empty string, but got {value!r}.")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ValueError(f"`sha256` must be 64 lowercase hex digits, but got {sha256!r}.")
    if size_bytes < 0:
        raise ValueError(f"`size_bytes >= 0` must hold, but got {size_bytes=}.")
    eng = ready_engine(engine)
    find = sa.select(ArtifactRow).where(
        ArtifactRow.kind == kind, ArtifactRow.path == path, ArtifactRow.sha256 == sha256
    )
    with Session(eng) as s:
        existing = s.scalars(find).first()
        if existing is not None:
            return _record(existing)
        row = ArtifactRow(
            kind=kind,
            name=name,
            path=path,
            sha256=sha256,
            size_bytes=int(size_bytes),
            created_at=dt.datetime.now(dt.timezone.utc),
            meta=dict(meta or {}),
        )
        s.add(row)
        try:
            s.commit()
        except IntegrityError:  # registered concurrently
            s.rollback()
            return _record(s.scalars(find).one())
        return _record(row)


def get_artifact(artifact_id: int, *, engine: Engine | None = None) -> Artifact:
    """The artifact with this id.

    Raises:
        KeyError: no such artifact.
    """
    with Session(ready_engine(engine)) as s:
        row = s.get(ArtifactRow, artifact_id)
        if row is None:
            raise KeyError(f"No artifact with id {artifact_id}.")
        return _record(row)


def list_artifacts(
    *,
    kind: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    engine: Engine | None = None,
) -> list[Artifact]:
    """Artifacts, newest first, optionally filtered by kind, name and content hash."""
    q = sa.select(ArtifactRow).order_by(ArtifactRow.created_at.desc(), ArtifactRow.id.desc())
    if kind is not None:
        q = q.where(ArtifactRow.kind == kind)
    if name is not None:
        q = q.where(ArtifactRow.name == name)
    if sha256 is not None:
        q = q.where(ArtifactRow.sha256 == sha256)
    with Session(ready_engine(engine)) as s:
        return [_record(r) for r in s.scalars(q)]
