"""The REST API: `create_app(settings)` builds the FastAPI application.

Every route under ``/api`` except ``/api/health`` needs a bearer token (see `nas.service._auth`);
every error is JSON ``{"detail": "one line naming the bad value"}``. Jobs of another owner are
answered like unknown ones (404), so their existence is not revealed. Submitted search and train
jobs run in their own processes (`nas.service._runner`); on start the service gives pending jobs a
runner and resumes running ones whose runner is gone (`nas.service._recovery`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import sqlalchemy as sa
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from nas.service._auth import Principal, ServiceSettings
from nas.service._runner import Launcher
from nas.service._schemas import (
    ErrorBody,
    ExportRequest,
    ExportResponse,
    Health,
    JobDetail,
    JobSummary,
    LatencySummary,
)
from nas.service._web import mount_web

__all__ = ["create_app"]

QUEUE_POLL_S = 2.0
"""How often pending jobs are checked for a free runner slot."""
log = logging.getLogger("nas.service")

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_EXPORT_NAME = re.compile(r"^[0-9]+-[0-9a-f]{12}$")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid bearer token."},
    404: {"model": ErrorBody, "description": "Unknown (or another owner's) resource."},
    422: {"model": ErrorBody, "description": "Bad input; the detail names it."},
}
_EXAMPLE_SPEC = {
    "name": "nb201-table",
    "space": {"name": "nb201"},
    "evaluator": {"kind": "table", "path": "/data/nb201.csv", "columns": {"accuracy": "cifar10-val"}},
    "objectives": [
        {"name": "accuracy", "direction": "maximize"},
        {"name": "latency_ms", "device": "local-cpu", "direction": "minimize"},
    ],
    "budget": {"trials": 50, "seed": 0},
}
_EXAMPLE_TRAIN = {
    "name": "mbv3-tiny-digits",
    "space": {"name": "mbv3_tiny", "overrides": {"in_channels": 1, "resolutions": [12, 16]}},
    "data": {"kind": "digits", "max_samples": 500},
    "training": {"epochs": 2, "batch_size": 64},
    "workers": 1,
}


# ------------------------------------------------------------------------------------- plumbing
def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(
            _finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()


def _text(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


@contextmanager
def _user_errors(key_status: int = 404) -> Iterator[None]:
    """Bad input raised by the library (ValueError and kin, KeyError, missing files) -> 4xx."""
    try:
        yield
    except HTTPException:
        raise
    except KeyError as exc:
        raise HTTPException(key_status, _text(exc)) from None
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise HTTPException(422, _text(exc)) from None


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "Invalid request."
    err = errors[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "request"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    got = err.get("input")
    got_txt = (
        ""
        if err.get("type") in ("missing", "extra_forbidden") or isinstance(got, dict)
        else f" (got {got!r:.200})"
    )
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {msg}{got_txt}{more}."


_bearer = HTTPBearer(
    auto_error=False, description="`Authorization: Bearer TOKEN` (NAS_API_TOKEN / NAS_API_TOKENS)."
)


def _principal(
    request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    settings: ServiceSettings = request.app.state.settings
    challenge = {"WWW-Authenticate": "Bearer"}
    if cred is None and request.headers.get("authorization"):
        raise HTTPException(401, "The Authorization header must be 'Bearer TOKEN'.", headers=challenge)
    who = settings.authenticate(cred.credentials if cred else None)
    if who is None:
        msg = "Invalid bearer token." if cred else "Missing bearer token (Authorization: Bearer TOKEN)."
        raise HTTPException(401, msg, headers=challenge)
    return who


Who = Annotated[Principal, Depends(_principal)]


def _engine(request: Request) -> sa.Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _job(request: Request, who: Principal, job_id: str) -> Any:
    """The job, if `who` may see it; else 404 (never revealing another owner's job)."""
    from nas.db._jobs import get_job

    try:
        job = get_job(job_id, engine=_engine(request))
    except KeyError:
        job = None
    if job is None or not who.may_see(job.owner):
        raise HTTPException(404, f"Unknown job {job_id!r} (see GET /api/jobs).")
    return job


def _summary(job: Any) -> dict[str, Any]:
    d = job.to_dict()
    return {k: d[k] for k in JobSummary.model_fields}


def _trial_count(engine: sa.Engine, job_id: str) -> int:
    from nas.db._models import TrialRow

    with engine.connect() as conn:
        q = sa.select(sa.func.count()).select_from(TrialRow).where(TrialRow.job_id == job_id)
        return int(conn.scalar(q) or 0)


def _known_tables(home: Path) -> list[str]:
    import latency_tables as lt

    found = set(lt.list_shipped())
    root = home / "latency"
    if root.is_dir():
        found |= {(d.name, f.stem) for d in root.iterdir() if d.is_dir() for f in d.glob("*.json")}
    return [f"{d}/{s}" for d, s in sorted(found)]


def _validate_search(spec: Any) -> list[Any]:
    """Everything `run_search` checks before it creates a job; returns the job's metric definitions."""
    from nas.search._jobs import check_search_spec

    return check_search_spec(spec)


def _zip_dir(src: Path, root: str) -> IO[bytes]:
    tmp = tempfile.TemporaryFile()
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file() and not f.is_symlink():
                zf.write(f, f"{root}/{f.relative_to(src).as_posix()}")
    tmp.seek(0)
    return tmp


def _chunks(fh: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := fh.read(1 << 20):
            yield chunk
    finally:
        fh.close()


# ------------------------------------------------------------------------------------------ app
def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The REST API over `settings` (default: `ServiceSettings.from_env()`).

    Raises:
        ValueError: no tokens and not insecure_local (nobody could use it).
    """
    from nas.db import ensure_schema, get_engine

    settings = settings or ServiceSettings.from_env()
    settings.check()
    engine = get_engine(settings.database_url)
    launcher = Launcher(settings.home, settings.database_url, settings.max_runners)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from nas.service._recovery import recover_jobs

        ensure_schema(engine)
        recover_jobs(launcher, engine)
        queue = asyncio.create_task(_pump_queue())
        yield
        queue.cancel()
        launcher.stop_all()

    async def _pump_queue() -> None:
        """Pending jobs start as runner slots free up (see `ServiceSettings.max_runners`)."""
        from nas.service._recovery import start_pending

        while True:
            await asyncio.sleep(QUEUE_POLL_S)
            try:
                await run_in_threadpool(start_pending, launcher, engine)
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not stop the queue
                log.warning("job queue: %s: %s", type(exc).__name__, exc)

    app = FastAPI(
        title="hwnas",
        version=_version(),
        lifespan=lifespan,
        default_response_class=_JSON,
        description="Hardware-aware NAS: search spaces, device latency tables, search jobs, Pareto "
        "queries and exports. Authenticate with `Authorization: Bearer TOKEN`.",
    )
    app.state.settings, app.state.engine, app.state.launcher = settings, engine, launcher
    app.state.spaces = {}

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No such route: {request.method} {request.url.path} (see /docs)."
        elif exc.status_code == 405:
            detail = f"Method {request.method} is not allowed on {request.url.path} (see /docs)."
        return _JSON({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _JSON({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return _JSON({"detail": f"Internal error: {type(exc).__name__}: {exc}"[:2000]}, status_code=500)

    # --------------------------------------------------------------------------- service info
    @app.get("/api/health", response_model=Health, tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and the database connection (no token needed)."""
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "unhealthy"
            raise HTTPException(503, f"Database unreachable: {type(exc).__name__}") from None
        return {
            "status": "ok",
            "version": _version(),
            "database": engine.dialect.name,
            "auth": "insecure-local" if settings.insecure_local else "token",
            "runners": len(launcher.running()),
        }

    @app.get("/api/spaces", tags=["spaces"], responses=_ERRORS)
    def spaces(who: Who) -> list[dict[str, Any]]:
        """Every registered search space, described."""
        import search_spaces as ss

        return [_describe(app, n) for n in ss.list_spaces()]

    @app.get("/api/spaces/{name}", tags=["spaces"], responses=_ERRORS)
    def space(name: str, who: Who) -> dict[str, Any]:
        """One search space: its choices, size, smallest and largest members."""
        with _user_errors():
            return _describe(app, name)

    @app.get("/api/devices", tags=["latency"], responses=_ERRORS)
    def devices(who: Who) -> list[dict[str, Any]]:
        """Registered devices, each with the spaces it has a latency table for."""
        import latency_tables as lt

        tables: dict[str, list[str]] = {}
        for t in _known_tables(settings.home):
            dev, sp = t.split("/", 1)
            tables.setdefault(dev, []).append(sp)
        out = []
        for n in lt.list_devices():
            info = lt.get_device(n).to_dict()
            info["tables"] = tables.get(n, [])
            out.append(info)
        return out

    @app.get(
        "/api/latency/{device}/{space}", response_model=LatencySummary, tags=["latency"], responses=_ERRORS
    )
    def latency(device: str, space: str, who: Who) -> dict[str, Any]:
        """Summary of a device's latency table for a space (the user's, else the shipped one)."""
        import latency_tables as lt

        known = ", ".join(_known_tables(settings.home)) or "(none)"
        if not (_NAME.match(device) and _NAME.match(space)):
            raise HTTPException(404, f"No latency table {device!r}/{space!r}; known tables: {known}.")
        try:
            tab = lt.find_table(device, space)
        except FileNotFoundError:
            raise HTTPException(
                404, f"No latency table for device {device!r} and space {space!r}; known tables: {known}."
            ) from None
        except ValueError as exc:
            raise HTTPException(500, f"Latency table {device}/{space} is malformed: {exc}") from None
        return {
            "device": device,
            "space": space,
            "keys": len(tab),
            "resolution_partitions": [r for r in tab.resolutions if r is not None],
            "overhead": {k: v.to_dict() for k, v in tab.overhead.items()},
            "meta": dict(tab.meta),
        }

    # ------------------------------------------------------------------------------------ jobs
    def _launch(job: Any) -> dict[str, Any]:
        """Start runners for pending jobs (this one, unless older ones hold every free slot: then it
        waits, pending, for the queue)."""
        from nas.service._recovery import start_pending

        start_pending(launcher, engine)
        return _summary(job)

    @app.post(
        "/api/jobs/search",
        response_model=JobSummary,
        status_code=201,
        tags=["jobs"],
        responses={
            **_ERRORS,
            503: {"model": ErrorBody, "description": "The Ray cluster did not answer or refused the job."},
        },
    )
    def submit_search(
        request: Request,
        who: Who,
        spec: Annotated[
            dict[str, Any],
            Body(description="A search spec (as `nas search` reads).", examples=[_EXAMPLE_SPEC]),
        ],
    ) -> dict[str, Any]:
        """Validate a search spec completely, create the job (owned by the token's owner) and run
        it in the background (on the service's Ray cluster, if it has one). Poll `GET /api/jobs/{id}`."""
        from nas.search import parse_search_spec
        from nas.search._jobs import create_search_job

        with _user_errors(key_status=422):
            parsed = parse_search_spec(spec, "<request body>")
            metrics = _validate_search(parsed)
            job = create_search_job(
                parsed, metrics, engine=engine, status="pending", owner=who.owner,
                ray_address=settings.ray_address or None,
            )
        if job.backend == "ray":  # on the cluster, through the Ray Jobs API
            from nas.service._ray_jobs import ClusterError, submit

            try:
                submit(job, database_url=settings.database_url, home=settings.home, engine=engine)
            except ClusterError as exc:
                raise HTTPException(503, str(exc)) from None
            return _summary(job)
        return _launch(job)

    @app.post(
        "/api/jobs/train", response_model=JobSummary, status_code=201, tags=["jobs"], responses=_ERRORS
    )
    def submit_train(
        who: Who,
        spec: Annotated[
            dict[str, Any],
            Body(description="A training spec (as `nas train` reads), without `output`.",
                 examples=[_EXAMPLE_TRAIN]),
        ],
    ) -> dict[str, Any]:
        """Validate a training spec completely, create the job and train in the background; the
        detail's `train` shows progress, then the checkpoint and its artifact id."""
        from nas.service._train import create_train_job

        with _user_errors(key_status=422):
            job = create_train_job(spec, owner=who.owner, home=settings.home, engine=engine)
        return _launch(job)

    @app.get("/api/jobs", response_model=list[JobSummary], tags=["jobs"], responses=_ERRORS)
    def jobs(
        who: Who,
        kind: str | None = None,
        status: Annotated[
            str | None, Query(description="pending, running, finished, failed or cancelled")
        ] = None,
    ) -> list[dict[str, Any]]:
        """The caller's jobs (an admin: everyone's), newest first."""
        from nas.db._jobs import JOB_STATES, list_jobs
        from nas.service._ray_jobs import reconcile

        if status is not None and status not in JOB_STATES:
            raise HTTPException(422, f"Unknown status {status!r}; allowed: {', '.join(JOB_STATES)}.")
        return [
            _summary(reconcile(j, engine=engine))
            for j in list_jobs(kind=kind, status=status, engine=engine)
            if who.may_see(j.owner)
        ]

    @app.get("/api/jobs/{job_id}", response_model=JobDetail, tags=["jobs"], responses=_ERRORS)
    def job_detail(request: Request, job_id: str, who: Who) -> dict[str, Any]:
        """Status, spec, metrics, the number of finished trials and the hypervolume history;
        for a train job its progress and result (`train`)."""
        from nas.search import hypervolume_history
        from nas.service._ray_jobs import reconcile
        from nas.service._train import train_state

        # Whether the runner lives is read before the trials are counted: a runner that was gone
        # then cannot add a trial after the count, so "no runner" means the count is final.
        runner_pid = launcher.running().get(job_id)
        job = reconcile(_job(request, who, job_id), engine=engine)
        hv: list[Any] = []
        if job.kind == "search" and any(m.get("objective") for m in job.metrics):
            with _user_errors():
                hv = [(int(e), float(v)) for e, v in hypervolume_history(job.id, engine=engine)]
        return {
            **job.to_dict(),
            "trials": _trial_count(engine, job.id),
            "hypervolume_history": hv,
            "runner_pid": runner_pid,
            "train": train_state(settings.home, job.id) if job.kind == "train" else None,
        }

    @app.post(
        "/api/jobs/{job_id}/cancel",
        response_model=JobSummary,
        tags=["jobs"],
        responses={**_ERRORS, 409: {"model": ErrorBody, "description": "The job already ended."}},
    )
    def cancel(request: Request, job_id: str, who: Who) -> dict[str, Any]:
        """Ask a pending or running job to stop (after its in-flight evaluations)."""
        from nas.service._ray_jobs import cancel as cancel_job

        job = _job(request, who, job_id)
        if not cancel_job(job, engine=engine):
            now = _job(request, who, job_id)
            raise HTTPException(
                409, f"Job {job_id!r} is {now.status}; only pending or running jobs can be cancelled."
            )
        return _summary(_job(request, who, job_id))

    @app.get("/api/jobs/{job_id}/trials", tags=["jobs"], responses=_ERRORS)
    def job_trials(
        request: Request,
        job_id: str,
        who: Who,
        where: Annotated[str | None, Query(description='Filter, e.g. "latency_ms<5 and macs<3e8".')] = None,
        limit: Annotated[int | None, Query(ge=1)] = None,
    ) -> list[dict[str, Any]]:
        """Every finished trial of a job with its metrics, in number order."""
        from nas.search import trials

        job = _job(request, who, job_id)
        with _user_errors():
            return trials(job.id, where=where or None, limit=limit, engine=engine)

    @app.get("/api/jobs/{job_id}/pareto", tags=["jobs"], responses=_ERRORS)
    def job_pareto(
        request: Request,
        job_id: str,
        who: Who,
        objectives: Annotated[str | None, Query(description="Comma-separated (default: the job's).")] = None,
        where: Annotated[str | None, Query(description='Filter, e.g. "latency_ms<5".')] = None,
        include_infeasible: Annotated[bool, Query(description="Ignore the search-time constraints.")] = False,
    ) -> list[dict[str, Any]]:
        """The Pareto-optimal trials of a job over any objectives, under any filter."""
        from nas.search import pareto_front

        job = _job(request, who, job_id)
        names = [o.strip() for o in objectives.split(",") if o.strip()] if objectives else None
        with _user_errors():
            return pareto_front(
                job.id,
                objectives=names,
                where=where or None,
                include_infeasible=include_infeasible,
                engine=engine,
            )

    # --------------------------------------------------------------------------------- exports
    @app.post(
        "/api/jobs/{job_id}/exports",
        response_model=ExportResponse,
        status_code=201,
        tags=["exports"],
        responses=_ERRORS,
    )
    def export(request: Request, job_id: str, who: Who, body: ExportRequest) -> dict[str, Any]:
        """Export a trial of a supernet search job as a bundle (synchronously); download it as a .zip."""
        from nas.search._export import export_trial

        job = _job(request, who, job_id)
        name = f"{body.trial}-{uuid.uuid4().hex[:12]}"
        out = settings.home / "exports" / job.id / name
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with _user_errors():
                result = export_trial(
                    job.id,
                    body.trial,
                    out,
                    engine=engine,
                    formats=body.formats,
                    int8=body.int8,
                    measure=body.measure,
                )
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
        return {
            "id": name,
            "job": job.id,
            "trial": body.trial,
            "manifest": result.manifest,
            "download": f"/api/exports/{job.id}/{name}/download",
        }

    @app.get(
        "/api/exports/{job_id}/{name}/download",
        tags=["exports"],
        responses=_ERRORS,
        response_class=StreamingResponse,
    )
    def download(request: Request, job_id: str, name: str, who: Who) -> StreamingResponse:
        """An export bundle as a .zip."""
        job = _job(request, who, job_id)
        src = settings.home / "exports" / job.id / name
        if not _EXPORT_NAME.match(name) or not src.is_dir():
            raise HTTPException(404, f"Job {job_id!r} has no export {name!r}.")
        fh = _zip_dir(src, f"{job.id}-{name}")
        return StreamingResponse(
            _chunks(fh),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{job.id}-{name}.zip"'},
        )

    mount_web(app)  # the web page: /, /ui/
    return app


def _describe(app: FastAPI, name: str) -> dict[str, Any]:
    import search_spaces as ss

    cache: dict[str, dict[str, Any]] = app.state.spaces
    if name not in cache:
        cache[name] = ss.get_space(name).describe()
    return cache[name]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("hwnas")
    except metadata.PackageNotFoundError:
        return "unknown"
