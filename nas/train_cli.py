"""``nas train SPEC.yaml`` (supernet training) and ``nas db upgrade|current`` (the service database).

Mount in `nas.cli`::

    from nas.train_cli import db_app, train_command
    app.command("train")(train_command)
    app.add_typer(db_app, name="db")
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nas._errors import fail, user_errors

console = Console(highlight=False, soft_wrap=True)

db_app = typer.Typer(
    name="db",
    help="The service database (NAS_DATABASE_URL; default sqlite:///$NAS_HOME/nas.db).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def train_command(
    spec: Annotated[Path, typer.Argument(help="Training spec (YAML or JSON).", show_default=False)],
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Override the spec's data-parallel workers.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Override the spec's run directory.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override training.epochs.")] = None,
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Do not register the checkpoint in the database.")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train a weight-sharing supernet (sandwich rule, in-place distillation) on Ray workers.

    Rerunning the same spec with the same output directory resumes from its last checkpoint.
    """
    from nas.train import RichSink, SpecError, load_spec, parse_spec, train

    with user_errors():
        s = load_spec(spec)
        if workers is not None or output is not None or epochs is not None:
            data = s.model_dump(mode="json")
            if workers is not None:
                data["workers"] = workers
            if output is not None:
                data["output"] = str(output)
            if epochs is not None:
                data["training"]["epochs"] = epochs
            s = parse_spec(data, str(spec))
    try:
        with RichSink(console, enabled=progress and console.is_terminal) as sink:
            result = train(s, sink, register=False if no_register else None)
    except SpecError as exc:
        raise fail(str(exc)) from None
    except (ValueError, KeyError, FileNotFoundError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise fail(str(text)) from None
    except RuntimeError as exc:
        console.print(f"error: {exc}", markup=False)
        raise typer.Exit(code=1) from None
    m = result.metrics
    console.print(
        f"Done: largest acc {m.get('largest_accuracy', float('nan')):.4f}, smallest acc "
        f"{m.get('smallest_accuracy', float('nan')):.4f} (after BN recalibration); "
        f"checkpoint {result.checkpoint} sha256 {result.sha256[:16]}..."
        + (f", artifact #{result.artifact_id}" if result.artifact_id is not None else ""),
        markup=False,
    )


@db_app.command()
def upgrade(
    url: Annotated[str | None, typer.Option(help="Database URL (default: NAS_DATABASE_URL).")] = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from nas.db import current_revision, database_url, get_engine, redact
    from nas.db import upgrade as do_upgrade

    with user_errors():
        engine = get_engine(url)
        try:
            before = current_revision(engine)
            after = do_upgrade(engine, revision)
        except Exception as exc:  # driver errors: unreachable server, bad credentials, unknown revision
            if isinstance(exc, (ValueError, KeyError)):
                raise
            raise fail(
                f"Cannot upgrade {redact(database_url(url))}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from None
    console.print(
        f"Database {redact(database_url(url))}: revision {before or '(empty)'} -> {after}.", markup=False
    )


@db_app.command()
def current(
    url: Annotated[str | None, typer.Option(help="Database URL (default: NAS_DATABASE_URL).")] = None,
) -> None:
    """Show the database's schema revision and the newest this version knows."""
    from nas.db import current_revision, database_url, get_engine, head_revision, redact

    with user_errors():
        rev = current_revision(get_engine(url))
    head = head_revision()
    state = "up to date" if rev == head else "run `nas db upgrade`"
    console.print(
        f"Database {redact(database_url(url))}: revision {rev or '(empty)'}, head {head} ({state}).",
        markup=False,
    )


__all__ = ["db_app", "train_command"]
