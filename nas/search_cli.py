"""``nas search``, ``nas jobs``, ``nas status``, ``nas cancel``, ``nas trials`` and ``nas pareto``.

Mounted in `nas.cli` as top-level commands (see `register`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nas._errors import fail, user_errors

console = Console(highlight=False, soft_wrap=True)

FORMATS = ("table", "csv", "json")
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, csv or json")]


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise fail(f"Unknown format {fmt!r}; allowed: {', '.join(FORMATS)}.")


def search(
    spec_path: Annotated[Path | None, typer.Argument(metavar="SPEC", help="Search spec (YAML/JSON).")] = None,
    resume: Annotated[str | None, typer.Option(help="Finish this job instead (its drivers died or were stopped).")] = None,
    join: Annotated[str | None, typer.Option(
        help="Add a driver to this job: it runs --trials more evaluations (default: the job's budget.trials) "
             "on the job's shared study, beside its other drivers.")] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Override budget.trials (with --join: this driver's share).")] = None,
    sampler: Annotated[str | None, typer.Option(help="Override sampler.name.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override budget.seed.")] = None,
) -> None:
    """Run a multi-objective search job; prints the job id, progress and the Pareto front."""
    from nas.search import join_search, load_search_spec, pareto_front, resume_search, run_search
    from nas.search._samplers import list_samplers

    if sum(x is not None for x in (spec_path, resume, join)) != 1:
        raise fail("Give a SPEC file, --resume JOB or --join JOB (exactly one).")
    with user_errors():
        if sampler is not None and sampler not in list_samplers():
            raise ValueError(f"Unknown sampler {sampler!r}; known: {', '.join(list_samplers())}.")
        spec = None
        if spec_path is not None:
            spec = load_search_spec(spec_path)
            budget = spec.budget.model_copy(
                update={k: v for k, v in (("trials", trials), ("seed", seed)) if v is not None}
            )
            update: dict[str, Any] = {"budget": budget}
            if sampler is not None:
                update["sampler"] = spec.sampler.model_copy(update={"name": sampler, "params": {}})
            spec = spec.model_copy(update=update)
            if spec.sampler.name not in list_samplers():  # before a job row exists
                raise ValueError(
                    f"{spec_path}: sampler.name: unknown sampler {spec.sampler.name!r}; "
                    f"known: {', '.join(list_samplers())}."
                )
    # The bar appears with the first finished trial: input rejected before that (unknown job,
    # missing latency table, ...) stays the one error line.
    prog = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
    task = prog.add_task("evaluations", total=spec.budget.trials if spec else None)

    def cb(done: int, total: int, info: dict[str, Any]) -> None:
        if not prog.live.is_started:
            prog.start()
        prog.update(task, completed=done, total=total,
                    description=f"evaluations ({info['failed']} failed)" if info.get("failed") else "evaluations")

    try:
        with user_errors():
            if resume is not None:
                result = resume_search(resume, progress=cb)
            elif join is not None:
                result = join_search(join, trials=trials, progress=cb)
            else:
                assert spec is not None
                result = run_search(spec, progress=cb)
    finally:
        prog.stop()
    console.print(f"job [bold]{escape(result.job_id)}[/bold]: {result.status}, {result.trials} trials, "
                  f"{result.evaluations} expensive evaluations, {result.failed} failed, {result.seconds:.1f}s")
    if join is not None:
        console.print(f"this driver: {result.info['mine']} of its {result.info['share']} evaluations", markup=False)
    with user_errors():
        _print_rows(pareto_front(result.job_id), "table", title=f"Pareto front of {result.job_id}")


def jobs(fmt: FormatOpt = "table") -> None:
    """List jobs, newest first."""
    from nas.db._jobs import list_jobs

    _check_format(fmt)
    with user_errors():
        rows = [{k: v for k, v in j.to_dict().items() if k in ("id", "kind", "name", "status", "created_at", "error")}
                for j in list_jobs()]
    _print_rows(rows, fmt, title="Jobs")


def status(job: Annotated[str, typer.Argument(help="Job id.")], fmt: FormatOpt = "table") -> None:
    """A job's status, metrics and progress."""
    from nas.db._jobs import get_job
    from nas.search import hypervolume_history, trials
    from nas.service._ray_jobs import reconcile

    _check_format(fmt)
    with user_errors():
        j = reconcile(get_job(job))  # a ray job: its status as Ray sees it too
        n = len(trials(j.id))
        hv = hypervolume_history(j.id, points=5)
    info = {**j.to_dict(), "trials": n, "hypervolume_history": hv}
    info.pop("spec")
    if fmt == "json":
        console.print_json(json.dumps(info, default=str))
        return
    for k in ("id", "kind", "name", "status", "created_at", "updated_at", "trials", "error"):
        console.print(f"{k}: {info[k]}", markup=False)
    console.print("metrics: " + ", ".join(f"{m['key']} ({m['direction']}{', objective' if m['objective'] else ''})"
                                          for m in j.metrics), markup=False)
    if hv:
        console.print("hypervolume: " + ", ".join(f"{e} evals: {v:.4g}" for e, v in hv))


def cancel(job: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Ask a running job to stop after its in-flight evaluations."""
    from nas.db._jobs import get_job, update_job

    with user_errors():
        j = get_job(job)
        if not update_job(j.id, status="cancelled", expect=("pending", "running")):
            raise ValueError(f"Job {job!r} is {j.status}; only pending or running jobs can be cancelled.")
    console.print(f"job {job}: cancelled", markup=False)


def trials_cmd(
    job: Annotated[str, typer.Argument(help="Job id.")],
    where: Annotated[str | None, typer.Option(help='Filter, e.g. "latency_ms<5 and macs<3e8".')] = None,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Every trial of a job with its objectives and constraints."""
    from nas.search import trials

    _check_format(fmt)
    with user_errors():
        rows = trials(job, where=where, limit=limit)
    _print_rows(rows, fmt, title=f"Trials of {job}")


def pareto(
    job: Annotated[str, typer.Argument(help="Job id.")],
    objectives: Annotated[str | None, typer.Option(help="Comma-separated objectives (default: the job's).")] = None,
    where: Annotated[str | None, typer.Option(help='Filter, e.g. "latency_ms<5 and macs<3e8".')] = None,
    include_infeasible: Annotated[bool, typer.Option(help="Ignore the search-time constraints.")] = False,
    fmt: FormatOpt = "table",
) -> None:
    """The Pareto-optimal trials of a job, under any budget."""
    from nas.search import pareto_front

    _check_format(fmt)
    names = [o.strip() for o in objectives.split(",") if o.strip()] if objectives else None
    with user_errors():
        rows = pareto_front(job, objectives=names, where=where, include_infeasible=include_infeasible)
    _print_rows(rows, fmt, title=f"Pareto front of {job}")


def _print_rows(rows: list[dict[str, Any]], fmt: str, title: str) -> None:
    if fmt == "json":
        console.print_json(json.dumps(rows, default=str))
        return
    if fmt == "csv":
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
        typer.echo(buf.getvalue(), nl=False)
        return
    table = Table(title=escape(title))
    if not rows:
        console.print(f"{title}: (none)", markup=False)
        return
    cols = [c for c in rows[0] if c not in ("arch", "on_front", "cached", "seconds")]
    for c in cols:
        table.add_column(escape(c), justify="left" if c in ("arch_id", "id", "name", "status") else "right")
    for r in rows:
        table.add_row(*(escape(_fmt(r[c])) for c in cols))  # names and errors are user text, not markup
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"
    return "" if v is None else str(v)


def register(app: typer.Typer) -> None:
    """Mount the search commands on the top-level app."""
    app.command("search")(search)
    app.command("jobs")(jobs)
    app.command("status")(status)
    app.command("cancel")(cancel)
    app.command("trials")(trials_cmd)
    app.command("pareto")(pareto)
