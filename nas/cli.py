"""The ``nas`` command line."""

from __future__ import annotations

import json
import time
from typing import Annotated

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
    space: Annotated[str, typer.Option(help="Search space to demonstrate.")] = "mbv3_tiny",
    samples: Annotated[int, typer.Option(min=1, max=1000, help="Random subnets to sample.")] = 8,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Build a supernet, sample subnets, extract one and check it against the supernet."""
    import torch

    with user_errors():
        sp = ss.get_space(space)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    net = sp.build_supernet().eval()
    n_params = sum(p.numel() for p in net.parameters())
    console.print(f"Supernet for [bold]{sp.name}[/bold]: {n_params:,} shared parameters "
                  f"(built in {time.perf_counter() - t0:.2f}s)")
    table = Table(title=f"{samples} random subnets")
    for col in ("arch_id", "MACs", "params", "peak act. bytes"):
        table.add_column(col, justify="right" if col != "arch_id" else "left")
    archs = [sp.sample(seed=seed + i) for i in range(samples)]
    for arch in archs:
        c = sp.cost(arch)
        table.add_row(sp.arch_id(arch), f"{c['macs']:,}", f"{c['params']:,}", f"{c['activation_bytes']:,}")
    console.print(table)

    arch = max(archs, key=lambda a: sp.cost(a)["macs"])
    t0 = time.perf_counter()
    sub = net.extract(arch).eval()
    extract_ms = 1000 * (time.perf_counter() - t0)
    x = torch.randn(2, *sp.input_shape(arch))
    net.set_active(arch)
    with torch.no_grad():
        diff = (net(x) - sub(x)).abs().max().item()
    console.print(f"Extracted {sp.arch_id(arch)} in {extract_ms:.1f} ms: "
                  f"{sum(p.numel() for p in sub.parameters()):,} parameters, "
                  f"max |supernet - extracted| = {diff:.2e}")
    console.print(f"arch: {sp.arch_str(arch)}")


# Sub-commands owned by their own modules.
from nas.predictor_cli import app as predictor_app  # noqa: E402

app.add_typer(predictor_app, name="predictor", help="Accuracy and latency predictors: fit, eval.")


def main() -> None:  # pragma: no cover - console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
