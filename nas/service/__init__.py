"""The REST service: search spaces, devices and latency tables, search jobs (run in their own
processes), trials and Pareto queries, and exports, behind bearer tokens with owners.

>>> from nas.service import ServiceSettings, create_app
>>> app = create_app(ServiceSettings.from_env())      # NAS_API_TOKEN(S), NAS_HOME, NAS_DATABASE_URL
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)   # or: nas serve

Deployment without the CLI: ``uvicorn --factory nas.service:app_from_env``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas.service._auth import LOCAL, Principal, ServiceSettings, check_loopback, parse_tokens

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "LOCAL",
    "Principal",
    "ServiceSettings",
    "app_from_env",
    "check_loopback",
    "create_app",
    "parse_tokens",
]


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """See `nas.service._app.create_app` (imported lazily: fastapi loads only when serving)."""
    from nas.service._app import create_app as _create

    return _create(settings)


def app_from_env() -> FastAPI:
    """The app configured from the environment (tokens required), for ``uvicorn --factory``."""
    return create_app(ServiceSettings.from_env())
