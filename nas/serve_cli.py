"""``nas serve``: the REST API (and its OpenAPI docs at /docs) under uvicorn.

Mount in `nas.cli`::

    from nas.serve_cli import serve_command
    app.command("serve")(serve_command)

Also runnable alone: ``python -m nas.serve_cli --port 8000``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from nas._errors import fail, user_errors

__all__ = ["serve_command"]

console = Console(highlight=False, soft_wrap=True, stderr=True)


def serve_command(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8000,
    insecure_local: Annotated[
        bool,
        typer.Option(
            "--insecure-local", help="Serve without tokens (owner 'local'); loopback addresses only."
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            envvar="NAS_RAY_ADDRESS",
            help="Run submitted search jobs on this Ray cluster (its dashboard, http://HEAD:8265).",
        ),
    ] = None,
) -> None:
    """Serve the REST API: spaces, devices, latency tables, search jobs, trials, Pareto fronts and
    exports. Needs NAS_API_TOKEN (one admin token) or NAS_API_TOKENS (token:owner[:admin],...)
    unless --insecure-local; jobs run in their own processes against NAS_DATABASE_URL, or on a Ray
    cluster through its Jobs API with --ray-address."""
    try:
        import uvicorn

        from nas.service import ServiceSettings, check_loopback, create_app
    except ImportError as exc:
        raise fail(f"`nas serve` needs fastapi and uvicorn ({exc}); pip install fastapi uvicorn.") from None
    with user_errors():
        settings = ServiceSettings.from_env(insecure_local=insecure_local, ray_address=ray_address)
        if insecure_local:
            check_loopback(host)
        settings.check()
        app = create_app(settings)
    how = "without tokens (--insecure-local)" if insecure_local else f"{len(settings.tokens)} token(s)"
    if settings.ray_address:
        how += f", jobs on the Ray cluster at {settings.ray_address}"
    shown = f"[{host}]" if ":" in host else host
    console.print(f"nas serve: http://{shown}:{port}/docs, {how}", markup=False)
    uvicorn.run(app, host=host, port=port, log_level="info")


if __name__ == "__main__":
    typer.run(serve_command)
