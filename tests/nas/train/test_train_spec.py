"""Bad specs: one line naming the field and what is allowed; exit code 2; nothing written."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from nas.train import SpecError, check_spec, load_spec, parse_spec
from nas.train_cli import db_app, train_command

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _set(d: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(d)
    *parents, leaf = dotted.split(".")
    node = d
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return d


BAD = [
    ("training.sandwich_n", -1, ["training.sandwich_n", "greater than or equal to 0", "-1"]),
    ("data.kind", "tfrecord", ["data.kind", "'digits', 'npz' or 'imagefolder'", "tfrecord"]),
    ("training.sampling", "greedy", ["training.sampling", "'uniform' or 'complexity_aware'"]),
    ("training.optimizer", "lamb", ["training.optimizer", "'sgd' or 'adamw'"]),
    ("training.lr", 0, ["training.lr", "greater than 0"]),
    ("data.val_fraction", 1.5, ["data.val_fraction", "less than 1"]),
    ("training.deps_start_fraction", 1.0, ["training.deps_start_fraction", "less than 1"]),
    (
        "training.progressive_shrinking",
        "bfa",
        ["training.progressive_shrinking", "'ofa' or a list of phases"],
    ),
    (
        "training.progressive_shrinking",
        [{"elastic": ["ks"], "epochs": 0}],
        ["progressive_shrinking.0.epochs", ">= 1"],
    ),
    (
        "training.progressive_shrinking",
        [{"elastic": ["ks"], "epochs": 1}],
        ["must add up to training.epochs (2)"],
    ),
    ("training.epochz", 3, ["training.epochz", "unknown key", "allowed keys: epochs, batch_size"]),
    ("workers", 0, ["workers", "greater than or equal to 1"]),
    ("data.path", "x.npz", ["`path` must be empty for kind 'digits'"]),
]


@pytest.mark.parametrize(("field", "value", "needles"), BAD, ids=[b[0] + "=" + repr(b[1]) for b in BAD])
def test_bad_spec_names_field_and_rule(
    tmp_path: Path, field: str, value: Any, needles: list[str], tiny_dict: Callable[..., dict]
) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_set(tiny_dict(tmp_path / "run"), field, value), "spec.yaml")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("Bad training spec spec.yaml")
    for needle in needles:
        assert needle.replace(">= 1", "greater than or equal to 1") in msg, msg


SEMANTIC = [
    ("space.name", "mbv3_huge", "known: mbv3_tiny"),
    ("space.overrides", {"in_channel": 1}, "Unknown override(s) 'in_channel'"),
    ("training.progressive_shrinking", [{"elastic": ["kernel"], "epochs": 2}], "groups: ks, e, d, r"),
    ("training.batch_size", 1000, "exceeds the"),
    ("data", {"kind": "npz", "path": "/nonexistent.npz"}, "not found"),
]


@pytest.mark.parametrize(("field", "value", "needle"), SEMANTIC, ids=[s[0] for s in SEMANTIC])
def test_semantic_errors_before_anything_is_written(
    tmp_path: Path, field: str, value: Any, needle: str, tiny_dict: Callable[..., dict]
) -> None:
    spec = parse_spec(_set(tiny_dict(tmp_path / "run"), field, value))
    with pytest.raises(SpecError, match="Bad training spec") as err:
        check_spec(spec)
    assert needle in str(err.value)
    assert not (tmp_path / "run").exists()


def test_batch_per_worker_rule(tmp_path: Path, tiny_dict: Callable[..., dict]) -> None:
    spec = parse_spec({**tiny_dict(tmp_path / "run"), "workers": 12})
    with pytest.raises(SpecError, match="at least 2"):
        check_spec(spec)


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("train")(train_command)
    app.add_typer(db_app, name="db")
    return app


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("space: {name: mbv3_tiny}\ntraining: {sandwich_n: -1}\n", "training.sandwich_n"),
        ("space: {name: mbv3_tiny\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping"),
        ("space: {name: nope}\n", "Unknown space 'nope'"),
    ],
)
def test_cli_bad_spec_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(_app(), ["train", str(path), "--output", str(out)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output
    assert not out.exists()


def test_cli_missing_spec_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["train", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "not found" in result.output


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("train_*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem or spec.name
    assert check_spec(spec.model_copy(update={"output": None})) >= 0


def test_resume_refuses_a_different_spec(tmp_path: Path, tiny_dict: Callable[..., dict]) -> None:
    from nas.train import train

    spec = parse_spec(tiny_dict(tmp_path / "run", epochs=1))
    train(spec, stop_after_steps=2)
    changed = parse_spec(tiny_dict(tmp_path / "run", epochs=1, lr=0.5))
    with pytest.raises(SpecError, match="different spec .*'training'"):
        check_spec(changed)
