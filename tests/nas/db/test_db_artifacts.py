"""The service database: migrations, the artifacts table and its crud functions (SQLite + PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from nas import db
from nas.db._migrate import _CHECKED, downgrade
from nas.train_cli import db_app

SHA = "0123456789abcdef" * 4


def test_upgrade_creates_artifacts_and_downgrade_removes_it(engine: sa.Engine) -> None:
    assert db.current_revision(engine) is None
    assert db.upgrade(engine) == db.head_revision()
    insp = sa.inspect(engine)
    assert {"artifacts", "nas_jobs", "nas_trials", "nas_eval_cache", "nas_alembic_version"} <= set(
        insp.get_table_names()
    )
    cols = {c["name"] for c in insp.get_columns("artifacts")}
    assert cols == {"id", "kind", "name", "path", "sha256", "size_bytes", "created_at", "meta"}
    assert {i["name"] for i in insp.get_indexes("artifacts")} >= {"ix_artifacts_kind", "ix_artifacts_sha256"}
    assert downgrade(engine, "base") is None
    assert "artifacts" not in sa.inspect(engine).get_table_names()
    assert db.upgrade(engine) == db.head_revision()  # and back up


def test_register_get_list(engine: sa.Engine) -> None:
    a = db.register_artifact(
        kind="supernet_checkpoint", name="run1", path="/r/1", sha256=SHA, size_bytes=123,
        meta={"metrics": {"acc": 0.98}, "space": {"name": "mbv3_tiny"}}, engine=engine,
    )  # fmt: skip
    assert a.id >= 1 and a.meta["metrics"]["acc"] == 0.98
    assert (
        a.created_at.tzinfo is not None
        and abs(a.created_at - dt.datetime.now(dt.timezone.utc)).total_seconds() < 60
    )
    assert db.get_artifact(a.id, engine=engine) == a
    again = db.register_artifact(
        kind="supernet_checkpoint", name="other", path="/r/1", sha256=SHA, size_bytes=123, engine=engine
    )
    assert again.id == a.id  # same kind, path and content: the same artifact
    b = db.register_artifact(
        kind="export", name="run1", path="/r/2", sha256="f" * 64, size_bytes=5, engine=engine
    )
    assert [x.id for x in db.list_artifacts(engine=engine)] == [b.id, a.id]
    assert [x.id for x in db.list_artifacts(kind="export", engine=engine)] == [b.id]
    assert [x.id for x in db.list_artifacts(sha256=SHA, engine=engine)] == [a.id]
    assert db.list_artifacts(name="nope", engine=engine) == []
    with pytest.raises(KeyError, match="No artifact with id 999"):
        db.get_artifact(999, engine=engine)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("sha256", "XYZ", "64 lowercase hex"),
        ("kind", "", "`kind` must be"),
        ("size_bytes", -1, "size_bytes >= 0"),
    ],
)
def test_bad_artifacts_are_refused(engine: sa.Engine, field: str, value: object, needle: str) -> None:
    args = {"kind": "k", "name": "n", "path": "/p", "sha256": SHA, "size_bytes": 1, field: value}
    with pytest.raises(ValueError, match=needle):
        db.register_artifact(**args, engine=engine)  # type: ignore[arg-type]


def test_outdated_schema_names_the_upgrade_command(engine: sa.Engine) -> None:
    db.upgrade(engine)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE nas_alembic_version SET version_num = 'ffff'"))
    _CHECKED.discard(engine)
    with pytest.raises(db.SchemaOutdated, match="nas db upgrade"):
        db.ensure_schema(engine)


def test_database_url_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NAS_DATABASE_URL", raising=False)
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    assert db.database_url() == f"sqlite:///{tmp_path / 'home' / 'nas.db'}"
    monkeypatch.setenv("NAS_DATABASE_URL", "postgresql+psycopg://u:secret@h/db")
    assert db.database_url() == "postgresql+psycopg://u:secret@h/db"
    assert "secret" not in db.redact(db.database_url())
    with pytest.raises(ValueError, match="Bad database URL"):
        db.get_engine("not a url")


def test_cli_upgrade_and_current(tmp_path: Path) -> None:
    app = typer.Typer(add_completion=False)
    app.add_typer(db_app, name="db")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    r = runner.invoke(app, ["db", "upgrade", "--url", url])
    head = db.head_revision()
    assert r.exit_code == 0 and f"(empty) -> {head}" in r.output, r.output
    r = runner.invoke(app, ["db", "current", "--url", url])
    assert r.exit_code == 0 and f"revision {head}, head {head} (up to date)" in r.output
    r = runner.invoke(app, ["db", "upgrade", "--url", "nonsense://"])
    assert r.exit_code == 2 and len([ln for ln in r.output.splitlines() if ln.strip()]) == 1, r.output
    db.dispose_engines()
