"""``nas export SOURCE --arch ARCH -o DIR`` (a subnet of a supernet checkpoint as a bundle).

Mount in `nas.cli`::

    from nas.export_cli import export_command
    app.command("export")(export_command)

``SOURCE`` is a supernet checkpoint (a training run directory or one of its step directories).
Exporting a search job's trial (``nas export JOB --trial N``) needs the search service, which
wires itself in front of this command.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from nas._errors import fail, user_errors

console = Console(highlight=False, soft_wrap=True)

__all__ = ["export_command"]


def _is_checkpoint(source: str) -> bool:
    from nas.export import resolve_checkpoint

    try:
        resolve_checkpoint(source)
    except FileNotFoundError:
        return False
    return True


def export_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A search job id (with --trial), or a supernet checkpoint: a training run or step directory.", show_default=False
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle directory to create.", show_default=False)],
    trial: Annotated[
        int | None, typer.Option("--trial", "-t", help="Trial number of a search job (SOURCE is the job).")
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option("--arch", "-a", help="Architecture: JSON, the space's arch string, or @FILE."),
    ] = None,
    formats: Annotated[
        str, typer.Option("--format", "-f", help="Comma-separated: torch, onnx, torchscript.")
    ] = "torch,onnx",
    int8: Annotated[bool, typer.Option("--int8", help="Also write an INT8 (QDQ) ONNX model.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty output directory.")
    ] = False,
    measure: Annotated[
        bool, typer.Option("--measure/--no-measure", help="Re-measure the exported files' latency here.")
    ] = True,
) -> None:
    """Export a subnet as a standalone bundle: safetensors + arch.json, ONNX, optional TorchScript and
    INT8, with a manifest of hashes, costs, accuracy and latency. Outputs are checked against the
    supernet-at-arch before anything is written."""
    from nas.export import ExportParityError, export_subnet

    if trial is not None:
        if _is_checkpoint(source):
            raise fail(
                f"--trial applies to search jobs, but {source!r} is a supernet checkpoint; "
                "pass the subnet with --arch instead."
            )
        if arch is not None:
            raise fail("Give --trial (with a job) or --arch (with a checkpoint), not both.")
        from nas.search._export import export_trial

        run = functools.partial(export_trial, source, trial)
    else:
        if arch is None:
            raise fail("--arch is required with a checkpoint (JSON, the space's arch string, or @FILE).")
        run = functools.partial(export_subnet, source, arch)
    try:
        with user_errors():
            result = run(out, formats=formats, int8=int8, overwrite=overwrite, measure=measure)
    except ExportParityError as exc:
        console.print(f"error: {exc}", markup=False)
        raise typer.Exit(code=1) from None
    _summary(result.path, result.manifest)


def _summary(path: Path, m: dict[str, Any]) -> None:
    acc = m["accuracy"]
    parts = [f"{k} {acc[k]:.4f}" for k in ("supernet", "torch", "onnx", "int8") if k in acc]
    console.print(f"Exported {m['arch_id']} ({m['space']['name']}) to {path}", markup=False)
    console.print(f"  files: {', '.join(m['files'])}, manifest.json", markup=False)
    console.print(f"  accuracy ({acc['split']}, {acc['images']} images): {', '.join(parts)}", markup=False)
    if m.get("int8"):
        console.print(
            f"  int8: recipe {m['int8']['recipe']}, drop {m['int8']['accuracy_drop_points']:+.2f} points "
            f"(target <= {m['int8']['max_drop_points']:g})",
            markup=False,
        )
    lat = m["latency"]
    for device, e in lat["estimated_ms"].items():
        console.print(f"  latency {device} (table estimate): {e['ms']:.3f} ms", markup=False)
    if lat.get("measured"):
        for k, r in lat["measured"]["results"].items():
            console.print(f"  latency {r['device']} ({k}, measured): {r['ms']:.3f} ms", markup=False)
    if "int8_vs_fp32_onnx_ratio" in lat:
        console.print(f"  int8 / fp32 ONNX latency: {lat['int8_vs_fp32_onnx_ratio']:.2f}x", markup=False)
