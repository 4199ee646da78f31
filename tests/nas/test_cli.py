"""The `nas` command line: spaces, demo, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import search_spaces as ss
from nas.cli import app

runner = CliRunner()


def test_spaces_lists_every_registered_space() -> None:
    result = runner.invoke(app, ["spaces", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ss.list_spaces()
    table = runner.invoke(app, ["spaces"])
    assert table.exit_code == 0 and "ofa_mbv3_w10" in table.output


def test_spaces_describes_one() -> None:
    result = runner.invoke(app, ["spaces", "nb201", "--format", "json"])
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info["name"] == "nb201" and len(info["choices"]) == 6
    assert info["largest"]["params"] == ss.get_space("nb201").cost(ss.get_space("nb201").largest())["params"]


def test_unknown_space_exits_2_with_one_line() -> None:
    result = runner.invoke(app, ["spaces", "mbv3_huge"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "mbv3_huge" in lines[0] and "mbv3_tiny" in lines[0]


def test_bad_format_exits_2() -> None:
    result = runner.invoke(app, ["spaces", "--format", "xml"])
    assert result.exit_code == 2 and "'xml'" in result.output and "table, json" in result.output


@pytest.mark.slow
def test_demo_quick_runs_the_whole_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CI-sized demo: train, search under a latency constraint, Pareto table, plot, export."""
    monkeypatch.setenv("NAS_HOME", str(tmp_path))
    monkeypatch.delenv("NAS_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["demo", "--quick"])
    assert result.exit_code == 0, result.output
    assert "Pareto front of search-" in result.output
    assert (tmp_path / "demo" / "pareto.png").stat().st_size > 1000
    bundles = list((tmp_path / "demo").glob("export-search-*"))
    assert len(bundles) == 1 and {"model.safetensors", "model.onnx", "manifest.json"} <= {
        p.name for p in bundles[0].iterdir()
    }
    from nas import load_exported

    assert load_exported(bundles[0]) is not None


def test_console_script_is_installed() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from nas.cli import app; app()", "spaces", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Unknown space 'nope'" in proc.stderr
