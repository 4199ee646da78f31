"""``nas latency devices|measure|import|validate|show|estimate``: device latency tables.

    nas latency measure --space mbv3_tiny --device local-cpu           # resumable; progress bar
    nas latency import ../shared/data/ofa_note10_lut --device note10 --space ofa_mbv3_w12
    nas latency validate --space mbv3_tiny --device local-cpu --samples 100
    nas latency show --device local-cpu --space mbv3_tiny --keys 'expanded_conv*'
    nas latency estimate --device local-cpu --space mbv3_tiny --arch '{"ks": ..., "r": 32}'

Tables are found at ``--table PATH``, else ``$NAS_HOME/latency/<device>/<space>.json``, else
among the shipped ones. RESULT lines go to stdout; progress and notes go to stderr.
"""

from __future__ import annotations

import fnmatch
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import latency_tables as lt
import search_spaces as ss
from nas._errors import fail, user_errors

app = typer.Typer(
    name="latency",
    help="Device latency tables: measure, import, validate, show, estimate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SpaceOpt = Annotated[str, typer.Option("--space", "-s", help="Search space (see `nas spaces`).")]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="Device (see `nas latency devices`).")]
TableOpt = Annotated[
    Path | None,
    typer.Option(
        "--table", "-t", help="Table file (default: $NAS_HOME/latency/DEVICE/SPACE.json or shipped)."
    ),
]
QuickOpt = Annotated[
    bool, typer.Option("--quick", help="Cheap timing protocol (smoke tests; numbers not to be trusted).")
]


def _progress(label: str) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _callback(prog: Progress, task: TaskID) -> lt.ProgressFn:
    def cb(done: int, total: int, _last: str) -> None:
        prog.update(task, completed=done, total=total)

    return cb


def _resolutions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    out = []
    for part in text.replace(" ", "").split(","):
        if not part.isdigit():
            raise ValueError(
                f"Bad --resolutions {text!r}: expected integers separated by commas, e.g. 16,24,32."
            )
        out.append(int(part))
    return out


def _check_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise fail(f"Unknown format {fmt!r}; allowed: table, json.")


@app.command()
def devices(fmt: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table") -> None:
    """List the registered devices."""
    _check_format(fmt)
    cfgs = [lt.get_device(n) for n in lt.list_devices()]
    if fmt == "json":
        console.print_json(json.dumps([c.to_dict() for c in cfgs]))
        return
    for c in cfgs:
        how = "measurable here" if c.measurable else "import only"
        console.print(
            f"{c.name:<15s} {c.kind:<11s} {c.runtime:<12s} threads={c.threads} batch={c.batch_size} "
            f"{c.dtype}  ({how}) {c.description}",
            markup=False,
        )


@app.command()
def measure(
    space: SpaceOpt,
    device: DeviceOpt = "local-cpu",
    resolutions: Annotated[
        str | None, typer.Option(help="Comma-separated input resolutions (default: all).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Table file (default: $NAS_HOME/latency/DEVICE/SPACE.json)."),
    ] = None,
    fresh: Annotated[bool, typer.Option(help="Start afresh instead of resuming an existing --out.")] = False,
    fit_samples: Annotated[
        int, typer.Option(min=0, help="Whole networks timed to fit the overhead model (0: none).")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Interleaving seed.")] = 0,
    quick: QuickOpt = False,
) -> None:
    """Time every distinct op SPACE can produce on DEVICE; a killed run resumes where it stopped."""
    with user_errors():
        sp = ss.get_space(space)
        cfg = lt.get_device(device)
        lt.get_runtime(cfg)  # refuse unmeasurable devices before anything else
        res = _resolutions(resolutions)
        lt.all_keys(sp, res)  # refuse a bad resolution before the progress bar starts
        path = out or lt.user_table_path(device, space)
        protocol = lt.QUICK_PROTOCOL if quick else None
        t0 = time.perf_counter()
        with _progress(f"measuring {space} on {device}") as prog:
            task = prog.add_task("ops", total=None)
            result = lt.measure_table(
                sp,
                cfg,
                resolutions=res,
                out=path,
                protocol=protocol,
                resume=not fresh,
                seed=seed,
                progress=_callback(prog, task),
            )
        err.print(
            f"{len(result.measured)} keys measured, {len(result.skipped)} already in {path} "
            f"({result.seconds:.1f} s)",
            markup=False,
        )
        if fit_samples:
            with _progress(f"fitting overhead ({fit_samples} networks)") as prog:
                task = prog.add_task("nets", total=fit_samples)
                model = lt.fit_overhead(
                    result.table,
                    sp,
                    cfg,
                    samples=fit_samples,
                    protocol=protocol,
                    progress=_callback(prog, task),
                )
            result.table.save(path)
            err.print(
                f"overhead model: measured ~ {model.a:.4f} * sum + {model.b:.5f} ms * n_ops "
                f"+ {model.c:.4f} ms "
                f"(fit RMSE {model.rmse_ms:.4f} ms)",
                markup=False,
            )
    console.print(
        f"wrote {path}: {len(result.table)} entries in {time.perf_counter() - t0:.1f} s", markup=False
    )


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files (or directories of OFA R_lookup_table.yaml).")],
    device: DeviceOpt,
    fmt: Annotated[str, typer.Option("--format", "-f", help="auto, ofa-yaml or csv.")] = "auto",
    space: Annotated[
        str | None,
        typer.Option("--space", "-s", help="Check coverage of this space; names the default output."),
    ] = None,
    resolution: Annotated[
        int | None, typer.Option(help="Resolution partition for files whose name has none.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Table file (default: $NAS_HOME/latency/DEVICE/SPACE.json)."),
    ] = None,
) -> None:
    """Import tables measured elsewhere (Once-for-All YAML, or CSV of key,mean,std)."""
    if fmt not in ("auto", "ofa-yaml", "csv"):
        raise fail(f"Unknown format {fmt!r}; allowed: auto, ofa-yaml, csv.")
    with user_errors():
        lt.get_device(device)
        if out is None and space is None:
            raise ValueError(
                "Pass --out FILE or --space SPACE "
                "(the table then goes to $NAS_HOME/latency/DEVICE/SPACE.json)."
            )
        kind = fmt
        if kind == "auto":
            kind = "csv" if all(p.suffix.lower() == ".csv" for p in paths) else "ofa-yaml"
        if kind == "csv":
            if len(paths) != 1:
                raise ValueError(f"CSV import takes one file, but got {len(paths)}.")
            table = lt.import_csv(paths[0], device, resolution=resolution)
        else:
            table = lt.import_ofa_yaml(paths, device, resolution=resolution)
        if space is not None:
            sp = ss.get_space(space)
            table.meta["spaces"] = [space]
            _report_coverage(table, sp)
        path = out or lt.user_table_path(device, space or "imported")
        table.save(path)
    parts = [r for r in table.resolutions if r is not None]
    console.print(
        f"wrote {path}: {len(table)} entries" + (f" over {len(parts)} resolutions" if parts else ""),
        markup=False,
    )


def _report_coverage(table: lt.LatencyTable, sp: ss.SearchSpace) -> None:
    fam = lt.get_family(sp)
    parts = [r for r in table.resolutions if r is not None]
    res = [r for r in fam.resolutions(sp) if not parts or r in parts]
    missing = sorted({(r, k) for r in res for k in fam.all_keys(sp, [r]) if not table.has(k, r)})
    if missing:
        r, k = missing[0]
        err.print(
            f"warning: {len(missing)} op keys of {sp.name} are missing, e.g. {k!r} at resolution {r}",
            markup=False,
        )
    else:
        err.print(f"covers every op key of {sp.name} at {len(res)} resolution(s)", markup=False)


def _load(table: Path | None, device: str | None, space: str | None) -> lt.LatencyTable:
    if table is not None:
        return lt.LatencyTable.load(table, device)
    if device is None or space is None:
        raise ValueError("Pass --table FILE, or --device and --space to find a stored table.")
    lt.get_device(device)
    return lt.find_table(device, space)


@app.command()
def validate(
    space: SpaceOpt,
    device: DeviceOpt = "local-cpu",
    samples: Annotated[int, typer.Option(min=2, help="Random subnets to time end to end.")] = 100,
    table: TableOpt = None,
    plot: Annotated[
        Path | None, typer.Option(help="Predicted-vs-measured PNG (default: beside the table in $NAS_HOME).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Which subnets.")] = 0,
    quick: QuickOpt = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 when a target is missed.")] = False,
) -> None:
    """Time random subnets end to end and compare with the table's estimates (RESULT lines + PNG)."""
    with user_errors():
        sp = ss.get_space(space)
        cfg = lt.get_device(device)
        lt.get_runtime(cfg)
        tab = _load(table, device, space)
        if tab.device != device:
            raise ValueError(f"The table is for device {tab.device!r}, not {device!r}.")
        png = plot or lt.user_table_path(device, space).with_suffix(".validate.png")
        with _progress(f"timing {samples} {space} subnets on {device}") as prog:
            task = prog.add_task("nets", total=samples)
            report = lt.validate(
                tab,
                sp,
                cfg,
                samples=samples,
                seed=seed,
                protocol=lt.QUICK_PROTOCOL if quick else None,
                plot=png,
                progress=_callback(prog, task),
            )
    for line in report.result_lines():
        console.print(line, markup=False)
    err.print(f"plot: {png}", markup=False)
    if strict and not report.passed:
        raise typer.Exit(code=1)


@app.command()
def show(
    device: Annotated[str | None, typer.Option("--device", "-d", help="Device.")] = None,
    space: Annotated[str | None, typer.Option("--space", "-s", help="Space.")] = None,
    table: TableOpt = None,
    keys: Annotated[
        str | None, typer.Option(help="List the entries whose key matches this fnmatch pattern.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Describe a table (device, provenance, protocol, overhead models); list matching entries."""
    _check_format(fmt)
    with user_errors():
        if table is None and device is None and space is None:
            shipped = lt.list_shipped()
            if fmt == "json":
                console.print_json(json.dumps([{"device": d, "space": s} for d, s in shipped]))
            else:
                for d, s in shipped:
                    console.print(f"{d}/{s}  {lt.shipped_table_path(d, s)}", markup=False)
            return
        tab = _load(table, device, space)
    rows = [r for r in tab.to_rows() if keys is None or fnmatch.fnmatchcase(r["key"], keys)] if keys else []
    summary = {
        "device": tab.device,
        "entries": len(tab),
        "resolution_partitions": [r for r in tab.resolutions if r is not None],
        "overhead": {k: v.to_dict() for k, v in tab.overhead.items()},
        **{
            k: tab.meta.get(k)
            for k in ("source", "spaces", "complete", "seconds", "created", "protocol", "versions")
        },
    }
    if fmt == "json":
        console.print_json(json.dumps({**summary, "rows": rows}))
        return
    for k, v in summary.items():
        if v not in (None, [], {}):
            console.print(f"{k:<22s} {json.dumps(v) if isinstance(v, (dict, list)) else v}", markup=False)
    if rows:
        t = Table()
        for col in ("key", "res", "mean ms", "std", "p50", "p90", "count"):
            t.add_column(col)
        for r in rows:
            t.add_row(
                r["key"],
                str(r["resolution"] or "any"),
                f"{r['mean']:.4f}",
                f"{r['std']:.4f}",
                "" if r["p50"] is None else f"{r['p50']:.4f}",
                "" if r["p90"] is None else f"{r['p90']:.4f}",
                "" if r["count"] is None else str(r["count"]),
            )
        console.print(t)


@app.command()
def estimate(
    space: SpaceOpt,
    arch: Annotated[
        str, typer.Option(help="Architecture: JSON, the space's string form, 'smallest' or 'largest'.")
    ],
    device: DeviceOpt = "local-cpu",
    table: TableOpt = None,
    plain: Annotated[bool, typer.Option(help="Plain sum of entries (no overhead model).")] = False,
    detail: Annotated[bool, typer.Option(help="Print every op's entry.")] = False,
) -> None:
    """Estimate one architecture's latency from the table."""
    with user_errors():
        sp = ss.get_space(space)
        tab = _load(table, device, space)
        a = sp.smallest() if arch == "smallest" else sp.largest() if arch == "largest" else sp.from_str(arch)
        ms = lt.estimate(tab, sp, a, overhead=not plain)
        parts = lt.breakdown(tab, sp, a) if detail else []
    for key, value in parts:
        console.print(f"{value:9.4f}  {key}", markup=False)
    console.print(f"{ms:.4f} ms", markup=False)
