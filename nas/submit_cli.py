"""``nas submit SPEC --address http://HEAD:8265``: a search job on a Ray cluster, through the Ray
Jobs API. The job id is the Ray submission id; the cluster's driver writes to the same database
(``NAS_DATABASE_URL``, PostgreSQL for a remote cluster), where `nas status`, `nas trials`,
`nas pareto` and the REST API find it.

Mount in `nas.cli`::

    from nas.submit_cli import submit_command
    app.command("submit")(submit_command)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nas._errors import fail, user_errors

__all__ = ["submit_command"]

console = Console(highlight=False, soft_wrap=True)
_ENDED = ("finished", "failed", "cancelled")


def submit_command(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Search spec (YAML/JSON).")],
    address: Annotated[
        str,
        typer.Option(
            "--address",
            envvar="NAS_RAY_ADDRESS",
            help="The Ray cluster's dashboard (Jobs API), e.g. http://HEAD:8265.",
        ),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job until it ends; print its front.")
    ] = False,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between status checks with --wait.")] = 1.0,
) -> None:
    """Run a search job on a Ray cluster; prints the job id (= the Ray submission id)."""
    from nas.db import ensure_schema, get_engine
    from nas.search import load_search_spec
    from nas.search._jobs import check_search_spec, create_search_job
    from nas.service._ray_jobs import ClusterError, cluster_database_url, connect, normalize_address, submit

    try:
        with user_errors():
            url = normalize_address(address)
            spec = load_search_spec(spec_path)
            metrics = check_search_spec(spec)  # everything the service checks, before a job exists
            cluster_database_url(None, url)
            connect(url)  # an unreachable cluster leaves no job behind
            engine = get_engine()
            ensure_schema(engine)
            job = create_search_job(spec, metrics, engine=engine, status="pending", ray_address=url)
            submit(job, engine=engine)
    except ClusterError as exc:
        raise fail(str(exc)) from None
    console.print(f"job {job.id}: submitted to the Ray cluster at {url} (Ray submission id {job.id})",
                  markup=False)
    if wait:
        _follow(job.id, poll)


def _follow(job_id: str, poll: float) -> None:
    """Print each status change until the job ends, then its summary and front."""
    from nas.db._jobs import get_job
    from nas.search import pareto_front, trials
    from nas.search_cli import _print_rows
    from nas.service._ray_jobs import reconcile

    shown, t0 = "", time.monotonic()
    while True:
        job = reconcile(get_job(job_id))
        if job.status != shown:
            shown = job.status
            console.print(f"job {job_id}: {shown} ({time.monotonic() - t0:.0f}s)", markup=False)
        if job.status in _ENDED:
            break
        time.sleep(poll)
    n = len(trials(job_id))
    console.print(f"job {job_id}: {job.status}, {n} trials", markup=False)
    if job.status == "failed":
        console.print(f"error: {job.error}", markup=False)
        raise typer.Exit(code=1)
    with user_errors():
        _print_rows(pareto_front(job_id), "table", title=f"Pareto front of {job_id}")
