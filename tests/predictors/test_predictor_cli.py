"""`nas predictor fit|eval` end to end on small NB201 CSVs, and its one-line errors (exit 2)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

ss = pytest.importorskip("search_spaces")
pytestmark = pytest.mark.skipif("nb201" not in ss.list_spaces(), reason="nb201 space not available")

from nas.predictor_cli import app  # noqa: E402

runner = CliRunner()


def _csv(path, n: int, seed: int) -> None:
    space = ss.get_space("nb201")
    lines = ["arch,acc"]
    for i in range(n):
        a = space.sample(seed=seed * 1000 + i)
        lines.append(f"{space.arch_str(a)},{50 + 5 * sum(o == 'nor_conv_3x3' for o in a['edges'])}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def csvs(tmp_path):
    _csv(tmp_path / "train.csv", 40, 0)
    _csv(tmp_path / "test.csv", 40, 1)
    return tmp_path


def test_fit_then_eval(csvs) -> None:
    out = csvs / "model"
    r = runner.invoke(
        app,
        [
            "fit",
            str(csvs / "train.csv"),
            "--space",
            "nb201",
            "--target",
            "acc",
            "-o",
            str(out),
            "--predictor",
            "gp",
            "--param",
            "n_restarts=0",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (out / "arch_predictor.json").is_file() and (out / "model" / "state.safetensors").is_file()
    r = runner.invoke(app, ["eval", str(out), str(csvs / "test.csv"), "--target", "acc", "--min-tau", "0.3"])
    assert r.exit_code == 0, r.output
    assert "kendall_tau" in r.output and "RESULT predictor_kendall_tau[nb201/acc]" in r.output
    assert "PASS" in r.output
    r = runner.invoke(app, ["eval", str(out), str(csvs / "test.csv"), "--target", "acc", "-f", "json"])
    assert r.exit_code == 0 and '"n": 40' in r.output


@pytest.mark.parametrize(
    "args, match",
    [
        (
            ["fit", "{d}/train.csv", "--space", "nb999", "--target", "acc", "-o", "{d}/m"],
            "Unknown space 'nb999'",
        ),
        (["fit", "{d}/train.csv", "--space", "nb201", "--target", "lat", "-o", "{d}/m"], "no column 'lat'"),
        (
            ["fit", "{d}/train.csv", "--space", "nb201", "--target", "acc", "-o", "{d}/m", "-p", "svm"],
            "Unknown predictor 'svm'",
        ),
        (
            ["fit", "{d}/train.csv", "--space", "nb201", "--target", "acc", "-o", "{d}/m", "--param", "x"],
            "KEY=VALUE",
        ),
        (["fit", "{d}/nope.csv", "--space", "nb201", "--target", "acc", "-o", "{d}/m"], "No such CSV file"),
        (
            [
                "fit",
                "{d}/train.csv",
                "--space",
                "nb201",
                "--target",
                "acc",
                "-o",
                "{d}",
            ],
            "already exists",
        ),
        (["eval", "{d}", "{d}/test.csv", "--target", "acc"], "arch_predictor.json not found"),
    ],
)
def test_errors_are_one_line_exit_2(csvs, args, match) -> None:
    r = runner.invoke(app, [a.format(d=csvs) for a in args])
    assert r.exit_code == 2, r.output
    assert match in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (csvs / "m").exists()
