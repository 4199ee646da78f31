"""The ``nas`` command line."""

from __future__ import annotations

import json
import time
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

import search_spaces as ss
from nas._errors import fail, user_errors

app = typer.Typer(
    name="nas",
    help="Hardware-aware neural architecture search: supernets, latency tables, multi-objective search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table or json")]


def _check_format(fmt: str, allowed: tuple[str, ...] = ("table", "json")) -> None:
    if fmt not in allowed:
        raise fail(f"Unknown format {fmt!r}; allowed: {', '.join(allowed)}.")


@app.command()
def spaces(
    name: Annotated[str | None, typer.Argument(help="Describe this space (default: list all).")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """List the registered search spaces, or describe one."""
    _check_format(fmt)
    with user_errors():
        if name is not None:
            info = ss.get_space(name).describe()
            if fmt == "json":
                console.print_json(json.dumps(info))
                return
            _print_space(info)
            return
        rows = [ss.get_space(n).describe() for n in ss.list_spaces()]
    if fmt == "json":
        console.print_json(json.dumps(rows))
        return
    table = Table(title="Search spaces")
    for col in ("name", "choices", "size", "MACs (min-max)", "params (min-max)"):
        table.add_column(col)
    for info in rows:
        s, lg = info["smallest"], info["largest"]
        table.add_row(
            info["name"],
            str(len(info["choices"])),
            f"{info['size']:.3g}",
            f"{_si(s['macs'])} - {_si(lg['macs'])}",
            f"{_si(s['params'])} - {_si(lg['params'])}",
        )
    console.print(table)


def _print_space(info: dict) -> None:
    console.print(f"[bold]{info['name']}[/bold]  ({info['size']:.3g} architectures, encoding length "
                  f"{info['encoding_length']})")
    table = Table()
    table.add_column("choice")
    table.add_column("options")
    for c in info["choices"]:
        table.add_row(c["name"], ", ".join(map(str, c["options"])))
    console.print(table)
    for end in ("smallest", "largest"):
        e = info[end]
        console.print(f"{end}: MACs {_si(e['macs'])}, params {_si(e['params'])}, "
                      f"peak activations {_si(e['activation_bytes'])}B")


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(int(value))


@app.command()
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="CI-sized: 2 epochs on 600 images, 12 trials.")] = False,
    trials: Annotated[int | None, typer.Option(min=2, help="Expensive evaluations of the search.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Supernet training epochs.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Latency constraint (local-cpu table).")] = None,
) -> None:
    """The whole pipeline on embedded defaults: train a supernet on digits, search accuracy vs
    local-cpu latency under a latency constraint, print the Pareto table, plot it, export the knee."""
    import dataclasses

    from nas import demo as d
    from nas.search import pareto_front, run_search
    from nas.search import trials as all_trials
    from nas.search_cli import _print_rows
    from nas.train import RichSink, parse_spec, train

    cfg = d.DemoConfig.quick() if quick else d.DemoConfig()
    cfg = dataclasses.replace(cfg, **{k: v for k, v in (("trials", trials), ("epochs", epochs),
                                                      ("max_latency_ms", max_latency_ms)) if v is not None})
    home = d.home_dir()
    t0 = time.perf_counter()
    console.print(f"[bold]1/4 Training[/bold] a mbv3_tiny supernet on digits ({cfg.epochs} epochs) ...")
    with user_errors(), RichSink(console) as sink:
        result = train(parse_spec(d.train_spec(cfg, home)), sink)
    m = result.metrics
    console.print(f"    largest subnet {m.get('largest_accuracy', float('nan')):.3f}, smallest "
                  f"{m.get('smallest_accuracy', float('nan')):.3f} validation accuracy; checkpoint {result.checkpoint}")
    console.print(f"[bold]2/4 Searching[/bold] accuracy vs latency on local-cpu (shipped table), latency <= "
                  f"{cfg.max_latency_ms} ms, {cfg.trials} evaluations ...")
    with user_errors():
        res = run_search(d.search_spec(cfg, result.run_dir))
        front = pareto_front(res.job_id)
        rows = all_trials(res.job_id)
    console.print(f"    job {res.job_id}: {res.trials} trials, {res.evaluations} evaluations in {res.seconds:.1f}s")
    console.print("[bold]3/4 Pareto front[/bold]")
    _print_rows([{k: v for k, v in r.items() if k not in ("feasible", "evaluation")} for r in front],
                "table", title=f"Pareto front of {res.job_id} (feasible: latency <= {cfg.max_latency_ms} ms)")
    lat = "latency_ms@local-cpu"
    knee = front[d.knee_point(np.array([[-r["accuracy"], r[lat]] for r in front]))] if front else None
    plot = d.pareto_plot(rows, front, lat, "accuracy", home / "demo" / "pareto.png",
                         f"{res.job_id}: accuracy vs local-cpu latency", knee)
    console.print(f"    plot: {plot}")
    if knee is None:
        raise fail("No feasible trial; loosen --max-latency-ms.")
    console.print(f"[bold]4/4 Exporting[/bold] the knee subnet (trial {knee['number']}) ...")
    from nas.search._export import export_trial

    with user_errors():
        bundle = export_trial(res.job_id, knee["number"], home / "demo" / f"export-{res.job_id}",
                              formats="torch,onnx", measure=not quick)
    acc = bundle.manifest["accuracy"]
    console.print(f"    bundle {bundle.path}: files {', '.join(bundle.manifest['files'])}; accuracy "
                  f"torch {acc.get('torch', float('nan')):.3f}, onnx {acc.get('onnx', float('nan')):.3f}")
    console.print(f"Done in {time.perf_counter() - t0:.0f}s. Next: `nas pareto {res.job_id} --where "
                  f"\"latency_ms<1.5\"`, `nas export {res.job_id} --trial N -o DIR`.")


# Sub-commands owned by their own modules.
from nas.export_cli import export_command  # noqa: E402
from nas.latency_cli import app as latency_app  # noqa: E402
from nas.predictor_cli import app as predictor_app  # noqa: E402
from nas.search_cli import register as register_search  # noqa: E402
from nas.serve_cli import serve_command  # noqa: E402
from nas.submit_cli import submit_command  # noqa: E402
from nas.train_cli import db_app, train_command  # noqa: E402

app.add_typer(predictor_app, name="predictor", help="Accuracy and latency predictors: fit, eval.")
app.add_typer(latency_app, name="latency", help="Device latency tables: measure, import, estimate, validate.")
app.add_typer(db_app, name="db", help="The service database: upgrade, current.")
app.command("train")(train_command)
register_search(app)
app.command("export")(export_command)
app.command("serve")(serve_command)
app.command("submit")(submit_command)


def main() -> None:  # pragma: no cover - console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
