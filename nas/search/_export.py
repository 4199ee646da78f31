"""Exporting a trial of a finished search job: its supernet checkpoint, its architecture and its
objectives as searched go to `nas.export.export_subnet`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from nas.db import _jobs as jobs_db
from nas.search._evaluators import resolve_checkpoint
from nas.search._query import trials
from nas.search._spec import parse_search_spec

__all__ = ["export_trial", "trial_record"]


def trial_record(job_id: str, number: int, *, engine: Engine | None = None) -> dict[str, Any]:
    """One indexed trial of a job.

    Raises:
        KeyError: unknown job or trial number (the message names the job's trial range).
    """
    rows = trials(job_id, where=f"number == {int(number)}", engine=engine)
    if not rows:
        all_numbers = [r["number"] for r in trials(job_id, engine=engine)]
        span = f"{min(all_numbers)}..{max(all_numbers)}" if all_numbers else "none"
        raise KeyError(f"Job {job_id!r} has no finished trial {number}; its trials: {span} (see `nas trials`).")
    return rows[0]


def export_trial(job_id: str, number: int, out_dir: str | Path, *, engine: Engine | None = None,
                 **kwargs: Any) -> Any:
    """Export trial `number` of search job `job_id` (a supernet-evaluator job) to `out_dir`.

    Keyword arguments go to `nas.export.export_subnet` (formats, int8, overwrite, measure, ...).

    Raises:
        KeyError: unknown job or trial. ValueError: the job did not search a supernet (a table or
            predictor job has no weights to export).
    """
    from nas.export import export_subnet

    job = jobs_db.get_job(job_id, engine=engine)
    spec = parse_search_spec(job.spec, f"job {job_id}")
    if spec.evaluator.kind != "supernet":
        raise ValueError(
            f"Job {job_id!r} used a {spec.evaluator.kind!r} evaluator, which has no weights to export; "
            "export from a job whose evaluator is a supernet checkpoint."
        )
    row = trial_record(job_id, number, engine=engine)
    metric_keys = [m["key"] for m in job.metrics]
    objectives = {k: row[k] for k in metric_keys if k in row}
    return export_subnet(
        resolve_checkpoint(spec.evaluator), row["arch"], out_dir, objectives=objectives,
        origin={"job": job_id, "trial": number, "arch_id": row["arch_id"]}, **kwargs,
    )
