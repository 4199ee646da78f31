"""`export_command` mounted on a small Typer app: a bundle from a checkpoint, and one-line errors
with exit code 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import search_spaces as ss
from nas.export import load_exported, read_manifest
from nas.export_cli import export_command

SPACE = "mbv3_tiny"


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("export")(export_command)
    app.command("noop")(lambda: None)  # keep `export` a named sub-command, as under `nas`
    return app


@pytest.fixture(scope="module")
def ckpt(random_checkpoint: Callable[[str], Path]) -> Path:
    return random_checkpoint(SPACE)


@pytest.fixture(scope="module")
def space(space_overrides: dict[str, dict]) -> ss.SearchSpace:
    return ss.get_space(SPACE, **space_overrides[SPACE])


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_app(), ["export", *args])
    return result.exit_code, result.output


def test_exports_a_bundle_from_a_run_directory(ckpt: Path, space: ss.SearchSpace, tmp_path: Path) -> None:
    arch = space.sample(seed=2)
    run_dir = ckpt.parent.parent
    code, out = _run(
        str(run_dir),
        "--arch",
        json.dumps(arch),
        "-f",
        "torch,onnx,torchscript",
        "-o",
        str(tmp_path / "b"),
        "--no-measure",
    )
    assert code == 0, out
    assert f"Exported {space.arch_id(arch)}" in out and "model.torchscript.pt" in out and "accuracy" in out
    m = read_manifest(tmp_path / "b")
    assert m["arch"] == arch and m["latency"]["measured"] is None
    load_exported(tmp_path / "b")


def test_int8_and_measurement_are_reported(ckpt: Path, space: ss.SearchSpace, tmp_path: Path) -> None:
    (tmp_path / "arch.json").write_text(json.dumps(space.smallest()))
    code, out = _run(str(ckpt), "--arch", f"@{tmp_path / 'arch.json'}", "--int8", "-o", str(tmp_path / "b"))
    assert code == 0, out
    assert (
        "int8: recipe" in out
        and "int8 / fp32 ONNX latency" in out
        and "local-cpu-ort (onnx, measured)" in out
    )
    assert "model.int8.onnx" in read_manifest(tmp_path / "b")["files"]


def test_overwrite_replaces_a_bundle(ckpt: Path, space: ss.SearchSpace, tmp_path: Path) -> None:
    args = [
        str(ckpt),
        "--arch",
        json.dumps(space.smallest()),
        "-f",
        "torch",
        "-o",
        str(tmp_path / "b"),
        "--no-measure",
    ]
    assert _run(*args)[0] == 0
    code, out = _run(*args)
    assert code == 2 and "--overwrite" in out
    assert _run(*args, "--overwrite")[0] == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--arch", "{SMALLEST}", "-f", "torch,tflite"], ["'tflite'", "torch, onnx, torchscript"]),
        (["--arch", '{"ks": [3]}'], ["Invalid architecture", "mbv3_tiny"]),
        (["--arch", "not an arch"], ["Invalid architecture"]),
        (["--arch", "@nowhere.json"], ["nowhere.json"]),
        ([], ["--arch is required"]),
        (["--trial", "3"], ["--trial applies to search jobs", "--arch"]),
        (["--arch", "{SMALLEST}", "-f", "torch", "--int8"], ["'onnx'"]),
    ],
    ids=["format", "arch", "arch-text", "arch-file", "no-arch", "trial-on-checkpoint", "int8-without-onnx"],
)
def test_bad_input_exits_2_with_one_line(
    ckpt: Path, space: ss.SearchSpace, tmp_path: Path, args: list[str], words: list[str]
) -> None:
    args = [a.replace("{SMALLEST}", json.dumps(space.smallest())) for a in args]
    code, out = _run(str(ckpt), *args, "-o", str(tmp_path / "b"), "--no-measure")
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, out
    for w in words:
        assert w in lines[0]
    assert not (tmp_path / "b").exists()


def test_missing_checkpoint_exits_2(tmp_path: Path) -> None:
    code, out = _run(str(tmp_path / "no-run"), "--arch", "{}", "-o", str(tmp_path / "b"))
    assert code == 2 and "no-run" in out and len(out.strip().splitlines()) == 1


def test_trial_of_an_unknown_job_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_DATABASE_URL", f"sqlite:///{tmp_path / 'nas.db'}")
    code, out = _run("job-42", "--trial", "7", "-o", str(tmp_path / "b"))
    assert code == 2 and "Unknown job 'job-42'" in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
