"""`nas latency ...` end to end on cheap inputs, and its one-line errors (exit code 2)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nas.latency_cli import app
from tests.latency_tables.conftest import OFA_LUT

runner = CliRunner()


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(autouse=True)
def nas_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_devices() -> None:
    r = runner.invoke(app, ["devices"])
    assert r.exit_code == 0 and "local-cpu-ort" in r.output and "note10" in r.output
    rows = json.loads(runner.invoke(app, ["devices", "--format", "json"]).output)
    assert [d["name"] for d in rows][:2] == ["local-cpu", "local-cpu-ort"]


def test_import_show_estimate_note10(nas_home) -> None:
    if not OFA_LUT.is_dir():
        pytest.skip("Once-for-All tables not available")
    r = runner.invoke(app, ["import", str(OFA_LUT), "--device", "note10", "--space", "ofa_mbv3_w12"])
    assert r.exit_code == 0, r.output
    assert "1632 entries over 17 resolutions" in r.output and "covers every op key" in r.output
    assert (nas_home / "latency" / "note10" / "ofa_mbv3_w12.json").is_file()
    r = runner.invoke(
        app, ["show", "--device", "note10", "--space", "ofa_mbv3_w12", "--keys", "Logits*", "-f", "json"]
    )
    info = json.loads(r.output)
    assert info["entries"] == 1632 and len(info["rows"]) == 17
    r = runner.invoke(
        app, ["estimate", "--device", "note10", "--space", "ofa_mbv3_w12", "--arch", "smallest", "--detail"]
    )
    assert (
        r.exit_code == 0
        and r.output.strip().endswith("ms")
        and "Logits-input:1x1x1536-output:1000" in r.output
    )


def test_import_csv(tmp_path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("key,mean,std\nnb201_add-input:8x8x64,0.01,0.001\n")
    out = tmp_path / "t.json"
    r = runner.invoke(app, ["import", str(csv), "--device", "local-cpu", "--out", str(out)])
    assert r.exit_code == 0 and "1 entries" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("nb201_add-input:8x8x64,0.01,0.001\nTeleport-input:1x1x1,1,1\n")
    one_line_error(
        runner.invoke(app, ["import", str(bad), "--device", "local-cpu", "-o", str(out)]),
        "bad.csv: line 2",
        "Unknown op 'Teleport'",
    )


@pytest.mark.slow
def test_measure_validate_show_nb201(nas_home, tmp_path) -> None:
    r = runner.invoke(
        app, ["measure", "--space", "nb201", "--device", "local-cpu", "--quick", "--fit-samples", "3"]
    )
    assert r.exit_code == 0, r.output
    path = nas_home / "latency" / "local-cpu" / "nb201.json"
    assert path.is_file() and "19 keys measured" in r.output and "overhead model" in r.output
    again = runner.invoke(app, ["measure", "--space", "nb201", "--quick", "--fit-samples", "0"])
    assert again.exit_code == 0 and "0 keys measured, 19 already" in again.output
    png = tmp_path / "v.png"
    r = runner.invoke(app, ["validate", "--space", "nb201", "--samples", "3", "--quick", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    results = [ln for ln in r.output.splitlines() if ln.startswith("RESULT ")]
    assert results[0].startswith("RESULT lut_within_10pct[local-cpu/nb201] ") and png.is_file()
    r = runner.invoke(app, ["show", "--device", "local-cpu", "--space", "nb201"])
    assert r.exit_code == 0 and "overhead" in r.output and "entries" in r.output


@pytest.mark.parametrize(
    "args, needles",
    [
        (["measure", "--space", "nb201", "--device", "pixel"], ["Unknown device 'pixel'", "local-cpu"]),
        (["measure", "--space", "nb999"], ["Unknown space 'nb999'"]),
        (["measure", "--space", "nb201", "--device", "note10"], ["cannot be measured"]),
        (["measure", "--space", "mbv3_tiny", "--resolutions", "16,99", "--quick"], ["Resolution 99"]),
        (["measure", "--space", "mbv3_tiny", "--resolutions", "16;20"], ["Bad --resolutions"]),
        (
            ["validate", "--space", "vit_tiny", "--device", "local-cpu-ort"],
            ["No latency table", "nas latency measure"],
        ),
        (["show", "--device", "local-cpu"], ["Pass --table FILE, or --device and --space"]),
        (["show", "--table", "missing.json"], ["No latency table file"]),
        (["show", "-f", "xml"], ["Unknown format 'xml'"]),
        (["import", "nothing.yaml", "--device", "note10", "--space", "ofa_mbv3_w12"], ["No such file"]),
        (["import", "x.yaml", "--device", "note10"], ["Pass --out FILE or --space"]),
        (["import", "x.yaml", "--device", "note10", "--format", "tflite"], ["Unknown format 'tflite'"]),
        (
            ["estimate", "--space", "mbv3_tiny", "--arch", "{bad", "--table", "missing.json"],
            ["No latency table file"],
        ),
    ],
)
def test_errors_are_one_line(args, needles) -> None:
    one_line_error(runner.invoke(app, args), *needles)


def test_estimate_missing_key_and_bad_arch(tmp_path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("nb201_add-input:8x8x64,0.01,0.001\n")
    out = tmp_path / "t.json"
    assert runner.invoke(app, ["import", str(csv), "--device", "local-cpu", "-o", str(out)]).exit_code == 0
    one_line_error(
        runner.invoke(app, ["estimate", "--space", "nb201", "--arch", "largest", "--table", str(out)]),
        "No entry for op key 'nb201_stem-input:32x32x3-output:32x32x16'",
    )
    one_line_error(
        runner.invoke(app, ["estimate", "--space", "nb201", "--arch", "|x~0|", "--table", str(out)]), "nb201"
    )
