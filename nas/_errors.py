"""Turning user errors into one clear line and exit code 2 at the CLI boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, FileNotFoundError)
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print `message` as one line on stderr and return the exit (code 2) to raise."""
    _stderr.print(f"error: {message}", markup=False)
    return typer.Exit(code=2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Report bad input (ValueError, KeyError, missing files) as one line with exit code 2."""
    try:
        yield
    except USER_ERRORS as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise fail(str(text)) from None
