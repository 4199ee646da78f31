"""The web page of the REST service: plain HTML/CSS/JS shipped in ``nas/service/static`` (no CDN;
the service may run without internet). It is a client of the ``/api`` routes like any other:
the page itself needs no token, every API call it makes sends the one stored in the browser.

Routes: ``/`` -> ``/ui/`` (the jobs list), ``/ui/jobs/{id}`` (a job's page), ``/ui/static/*``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC", "mount_web"]

STATIC = Path(__file__).resolve().parent / "static"
_HEADERS = {
    # Only our own files run; API answers are put into the page as text, never as markup.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


def mount_web(app: FastAPI) -> None:
    """Add the web page's routes to `app` (one shell page; the scripts route on the path).

    Raises:
        FileNotFoundError: the static files are missing (an install without package data).
    """
    index = STATIC / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"The web page's files are missing: no {index} (reinstall hwnas).")
    page = index.read_text(encoding="utf-8")

    def shell() -> HTMLResponse:
        return HTMLResponse(page, headers=_HEADERS)

    def to_ui() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    app.add_api_route("/", to_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui", to_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/", shell, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/jobs/{job_id}", shell, methods=["GET"], include_in_schema=False)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
