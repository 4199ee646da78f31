"""``nas predictor fit|eval``: fit a predictor on a CSV of architectures, evaluate it on another.

A CSV has an architecture column (``arch``: the space's string form, e.g. NAS-Bench-201's cell
string) and one column per objective. ``fit`` writes a predictor directory (JSON + safetensors,
no pickle); ``eval`` loads it and prints rank metrics on a second CSV.

    nas predictor fit train.csv --space nb201 --target cifar10-val -o gp_dir
    nas predictor eval gp_dir test.csv --target cifar10-val
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

import predictors as pr
import search_spaces as ss
from nas._errors import fail, user_errors

app = typer.Typer(
    name="predictor",
    help="Fit and evaluate predictors of expensive objectives (accuracy, latency).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)

TargetOpt = Annotated[str, typer.Option("--target", "-t", help="Column holding the objective.")]
ArchColOpt = Annotated[str, typer.Option("--arch-column", help="Column holding architecture strings.")]


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is parsed as JSON when it can be (numbers, lists, booleans)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"Bad --param {item!r}; expected KEY=VALUE, e.g. --param n_members=5.")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@app.command()
def fit(
    data: Annotated[Path, typer.Argument(help="Training CSV.")],
    space: Annotated[str, typer.Option("--space", "-s", help="Search space name (see `nas spaces`).")],
    target: TargetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the fitted predictor to.")],
    predictor: Annotated[
        str, typer.Option("--predictor", "-p", help="Registered predictor name.")
    ] = pr.DEFAULT_PREDICTOR,
    features: Annotated[str, typer.Option(help="encoding, cost or encoding+cost.")] = "encoding",
    log_target: Annotated[
        bool, typer.Option(help="Fit on log(target) (positive targets, e.g. latency).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the predictor.")] = 0,
    param: Annotated[list[str], typer.Option(help="Hyper-parameter KEY=VALUE (repeatable).")] = [],  # noqa: B006
    arch_column: ArchColOpt = "arch",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
) -> None:
    """Fit a predictor on DATA and save it (JSON + safetensors) to --out."""
    with user_errors():
        if out.exists() and not overwrite:
            raise ValueError(f"Output {str(out)!r} already exists; pass --overwrite to replace it.")
        if features not in pr.FEATURE_SETS:
            raise ValueError(f"Unknown feature set {features!r}; allowed: {', '.join(pr.FEATURE_SETS)}.")
        sp = ss.get_space(space)
        model = pr.ArchPredictor(
            sp, predictor, features=features, log_target=log_target, seed=seed, **_parse_params(param)
        )
        archs, y = pr.read_arch_table(data, sp, target, arch_column=arch_column)
        model.fit(archs, y)
        # Write next to the destination, then move into place: no half-written directory remains.
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp"))
        try:
            model.save(tmp)
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            tmp.rename(out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    console.print(
        f"fitted {predictor} on {len(archs)} rows of {data} ({space}, target {target}) -> {out}", markup=False
    )


@app.command("eval")
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Directory written by `nas predictor fit`.")],
    data: Annotated[Path, typer.Argument(help="Evaluation CSV.")],
    target: TargetOpt,
    arch_column: ArchColOpt = "arch",
    pct: Annotated[float, typer.Option(help="Tolerance for the within-percent share.")] = 10.0,
    min_tau: Annotated[
        float | None, typer.Option(help="Also print a RESULT line checking Kendall tau >= this.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Load a fitted predictor and report rank metrics on DATA."""
    if fmt not in ("table", "json"):
        raise fail(f"Unknown format {fmt!r}; allowed: table, json.")
    with user_errors():
        model = pr.ArchPredictor.load(model_dir)
        archs, y = pr.read_arch_table(data, model.space, target, arch_column=arch_column)
        if len(archs) < 2:
            raise ValueError(f"{data} has {len(archs)} row; rank metrics need at least 2.")
        pred = model.predict(archs)
        metrics: dict[str, Any] = {"n": len(archs), **pr.rank_metrics(pred.mean, y, pct=pct)}
    if fmt == "json":
        console.print_json(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            console.print(f"{key:<14s} {value:.4g}" if isinstance(value, float) else f"{key:<14s} {value}")
    if min_tau is not None:
        tau = metrics["kendall_tau"]
        verdict = "PASS" if tau >= min_tau else "MISS"
        console.print(
            f"RESULT predictor_kendall_tau[{model.space.name}/{target}] {tau:.3f} "
            f"target >={min_tau:g} {verdict}",
            markup=False,
        )
