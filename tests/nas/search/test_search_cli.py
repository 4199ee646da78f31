"""`nas search / jobs / status / cancel / trials / pareto` through typer's CliRunner: output that
parses, and one line with exit code 2 for every bad input."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import Result

from nas.db import _jobs as jobs_db
from nas.db._engine import get_engine
from nas.search import run_search

LATENCY = "latency_ms@local-cpu"


@pytest.fixture
def cli(cli_job: Any) -> Any:
    return cli_job.cli


@pytest.fixture
def job(cli_job: Any) -> str:
    return cli_job.job


@pytest.fixture
def budget(cli_job: Any) -> int:
    return int(cli_job.budget)


def test_search_runs_the_overridden_spec_and_prints_the_front(cli_job: Any) -> None:
    cli, job, result, budget = cli_job.cli, cli_job.job, cli_job.result, cli_job.budget
    assert f"{budget} expensive evaluations" in result.stdout
    assert f"Pareto front of {job}" in result.stdout
    stored = jobs_db.get_job(job, engine=get_engine(cli.url))
    assert stored.spec["sampler"] == {"name": "random", "params": {}}
    assert stored.spec["budget"]["trials"] == budget and stored.spec["budget"]["seed"] == 2
    assert stored.spec["evaluator"]["path"].endswith("nb201_12epoch_acc.csv")
    assert Path(stored.spec["evaluator"]["path"]).is_absolute()
    assert stored.status == "finished" and stored.name == "cli [/x] run"


def test_jobs(cli: Any, job: str) -> None:
    rows = cli.json("jobs")
    mine = next(r for r in rows if r["id"] == job)
    assert mine["status"] == "finished" and mine["kind"] == "search" and mine["name"] == "cli [/x] run"
    assert set(mine) == {"id", "kind", "name", "status", "created_at", "error"}
    table = cli("jobs")
    assert table.exit_code == 0, table.output
    assert "[/x]" in table.stdout and "finished" in table.stdout


def test_status(cli: Any, job: str, budget: int) -> None:
    info = cli.json("status", job)
    assert info["id"] == job and info["status"] == "finished" and info["trials"] >= budget
    assert "spec" not in info
    assert [m["key"] for m in info["metrics"]] == ["accuracy", LATENCY, "macs"]
    hv = info["hypervolume_history"]
    assert hv and hv[-1][0] == budget and all(b >= a for (_, a), (_, b) in zip(hv, hv[1:], strict=False))
    text = cli("status", job)
    assert text.exit_code == 0, text.output
    assert "status: finished" in text.stdout and "name: cli [/x] run" in text.stdout
    assert (
        f"metrics: accuracy (maximize, objective), {LATENCY} (minimize, objective), macs (minimize)"
        in text.stdout
    )
    assert "hypervolume: " in text.stdout


def test_trials_in_every_format(cli: Any, job: str, budget: int) -> None:
    rows = cli.json("trials", job)
    assert len(rows) >= budget and [r["number"] for r in rows] == sorted(r["number"] for r in rows)
    assert sum(r["evaluation"] is not None for r in rows) == budget
    for r in rows:
        assert {"number", "arch_id", "feasible", "on_front", "accuracy", LATENCY, "macs", "arch"} <= set(r)
        assert r["feasible"] == (r[LATENCY] <= 6.0)
        assert r["arch_id"].startswith("nb201-") and isinstance(r["arch"], dict)

    out = cli("trials", job, "-f", "csv")
    assert out.exit_code == 0, out.output
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [int(r["number"]) for r in parsed] == [r["number"] for r in rows]
    assert [float(r["accuracy"]) for r in parsed] == [r["accuracy"] for r in rows]
    assert [json.loads(r["arch"]) for r in parsed] == [r["arch"] for r in rows]

    table = cli("trials", job)
    assert table.exit_code == 0, table.output
    assert f"Trials of {job}" in table.stdout and "accuracy" in table.stdout

    fast = cli.json("trials", job, "--where", "latency_ms < 4 or accuracy >= 80", "--limit", 100)
    assert [r["number"] for r in fast] == [r["number"] for r in rows if r[LATENCY] < 4 or r["accuracy"] >= 80]
    assert len(cli.json("trials", job, "--limit", 2)) == 2


def test_pareto(cli: Any, job: str, brute_front: Callable[[np.ndarray], np.ndarray]) -> None:
    rows = cli.json("trials", job)
    front = cli.json("pareto", job)
    assert {r["number"] for r in front} == {r["number"] for r in rows if r["on_front"]}
    assert front and all(r["feasible"] for r in front)

    where = f"{LATENCY} < 7.5 and accuracy > 30"
    got = cli.json("pareto", job, "--objectives", "accuracy,macs", "--where", where)
    pool = [r for r in rows if r["feasible"] and r[LATENCY] < 7.5 and r["accuracy"] > 30]
    want = brute_front(np.array([[-r["accuracy"], r["macs"]] for r in pool]).reshape(-1, 2))
    assert {r["number"] for r in got} == {r["number"] for r, on in zip(pool, want, strict=True) if on}
    assert [r["accuracy"] for r in got] == sorted((r["accuracy"] for r in got), reverse=True)

    everything = cli.json("pareto", job, "--objectives", "accuracy,latency_ms", "--include-infeasible")
    pts = np.array([[-r["accuracy"], r[LATENCY]] for r in rows])
    want_all = {r["number"] for r, on in zip(rows, brute_front(pts), strict=True) if on}
    assert {r["number"] for r in everything} == want_all

    table = cli("pareto", job, "--where", "latency_ms<5")
    assert table.exit_code == 0 and (f"Pareto front of {job}" in table.stdout)
    as_csv = cli("pareto", job, "-f", "csv")
    assert as_csv.exit_code == 0 and len(list(csv.DictReader(io.StringIO(as_csv.stdout)))) == len(front)


def one_line_error(result: Result, *words: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


BAD_ARGS: list[tuple[list[str], list[str]]] = [
    (["search", "{tmp}/nope.yaml"], ["nope.yaml", "not found"]),
    (["search", "{tmp}/bad.yaml"], ["budget.trails", "unknown key"]),
    (["search", "{tmp}/broken.yaml"], ["not valid YAML/JSON"]),
    (["search"], ["exactly one"]),
    (["search", "{spec}", "--resume", "{job}"], ["exactly one"]),
    (["search", "{spec}", "--sampler", "annealing"], ["Unknown sampler 'annealing'", "nsga2", "predictor"]),
    (["search", "{tmp}/bad_sampler.yaml"], ["unknown sampler 'annealing'", "nsga2"]),
    (["search", "--resume", "nope"], ["Unknown job 'nope'"]),
    (["search", "{spec_dir}/bad_device.yaml"], ["pixel-99", "local-cpu"]),
    (["search", "--resume", "{job}"], ["already finished"]),
    (["status", "nope"], ["Unknown job 'nope'", "recent jobs: "]),
    (["trials", "nope"], ["Unknown job 'nope'"]),
    (["pareto", "nope"], ["Unknown job 'nope'"]),
    (["cancel", "nope"], ["Unknown job 'nope'"]),
    (["cancel", "{job}"], ["is finished", "only pending or running"]),
    (["trials", "{job}", "--where", "accuracy > 1; DROP TABLE nas_trials"], ["unexpected ';", "position 12"]),
    (["pareto", "{job}", "--where", "accuracy > 1 or 1=1"], ["compare a name with a number"]),
    (
        ["pareto", "{job}", "--where", "energy < 1"],
        ["Unknown name 'energy'", "allowed: ", "accuracy", LATENCY],
    ),
    (["pareto", "{job}", "--where", "(accuracy > 1"], ["expected )", "at the end"]),
    (["pareto", "{job}", "--objectives", "accuracy,energy"], ["Unknown objective 'energy'", "macs"]),
    (["trials", "{job}", "-f", "xml"], ["Unknown format 'xml'", "table, csv, json"]),
    (["pareto", "{job}", "--format", "yaml"], ["Unknown format 'yaml'"]),
    (["status", "{job}", "-f", "xml"], ["Unknown format 'xml'"]),
    (["jobs", "-f", "xml"], ["Unknown format 'xml'"]),
]


@pytest.mark.parametrize(("args", "words"), BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_input_is_one_line_with_exit_code_2(
    args: list[str],
    words: list[str],
    cli_job: Any,
    tmp_path: Path,
) -> None:
    cli, job, spec_path, budget = cli_job.cli, cli_job.job, cli_job.spec_path, cli_job.budget
    good = yaml.safe_load(spec_path.read_text())
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**good, "budget": {"trails": 3}}))
    (tmp_path / "broken.yaml").write_text("space: {name: nb201\n")
    (tmp_path / "bad_sampler.yaml").write_text(
        yaml.safe_dump(
            {
                **good,
                "sampler": {"name": "annealing"},
                "evaluator": {
                    **good["evaluator"],
                    "path": str((spec_path.parent / good["evaluator"]["path"]).resolve()),
                },
            }
        )
    )
    bad_device = {
        **good,
        "objectives": [good["objectives"][0], {**good["objectives"][1], "device": "pixel-99"}],
        "constraints": [],
    }
    (spec_path.parent / "bad_device.yaml").write_text(yaml.safe_dump(bad_device))
    before = {j.id for j in jobs_db.list_jobs(engine=get_engine(cli.url))}
    fill = {"tmp": str(tmp_path), "job": job, "spec": str(spec_path), "spec_dir": str(spec_path.parent)}
    one_line_error(cli(*(a.format(**fill) for a in args)), *(w.format(**fill) for w in words))
    assert {j.id for j in jobs_db.list_jobs(engine=get_engine(cli.url))} == before, (
        "a job row was left behind"
    )
    assert len(cli.json("trials", job)) >= budget  # still there, whatever the filter said


def test_cancel_a_running_job(cli: Any) -> None:
    engine = get_engine(cli.url)
    j = jobs_db.create_job(kind="search", name="to cancel", spec={}, status="running", engine=engine)
    result = cli("cancel", j.id)
    assert result.exit_code == 0, result.output
    assert f"job {j.id}: cancelled" in result.stdout
    assert jobs_db.get_job(j.id, engine=engine).status == "cancelled"
    one_line_error(cli("cancel", j.id), "is cancelled")


def test_resume_a_failed_job(cli: Any, make_spec: Callable[..., dict[str, Any]]) -> None:
    def die(done: int, total: int, info: dict[str, Any]) -> None:
        if done == 2:
            raise RuntimeError("driver lost")

    with pytest.raises(RuntimeError):
        run_search(make_spec(trials=5), url=cli.url, job_id="cli-resume-me", progress=die)
    assert jobs_db.get_job("cli-resume-me", engine=get_engine(cli.url)).status == "failed"
    result = cli("search", "--resume", "cli-resume-me")
    assert result.exit_code == 0, result.output
    assert "job cli-resume-me: finished" in result.stdout and "5 expensive evaluations" in result.stdout
    rows = cli.json("trials", "cli-resume-me")
    assert sum(r["evaluation"] is not None for r in rows) == 5
