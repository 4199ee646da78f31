"""Search specs: what loads, and one-line errors naming the bad field for what does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from nas.search import SearchSpec, SearchSpecError, load_search_spec, parse_search_spec

REPO = Path(__file__).resolve().parents[3]

BASE: dict[str, Any] = {
    "space": {"name": "nb201"},
    "evaluator": {"kind": "table", "path": "bench.csv"},
    "objectives": [
        {"name": "accuracy", "direction": "maximize"},
        {"name": "latency_ms", "device": "local-cpu", "direction": "minimize"},
    ],
}


def spec(**over: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(BASE)), **over}


def error_of(data: Any) -> str:
    with pytest.raises(SearchSpecError) as info:
        parse_search_spec(data, "s.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("Bad search spec s.yaml: "), msg
    return msg


def test_defaults_and_keys() -> None:
    s = parse_search_spec(spec())
    assert isinstance(s, SearchSpec)
    assert s.sampler.name == "predictor" and s.budget.trials == 100 and s.budget.parallelism == 1
    assert [o.key for o in s.objectives] == ["accuracy", "latency_ms@local-cpu"]
    assert s.evaluator.key == "arch" and s.constraints == [] and s.metrics == []
    with pytest.raises(Exception):  # noqa: B017 - frozen: specs are values
        s.budget.trials = 3  # type: ignore[misc]


def test_shipped_example_loads_and_points_at_the_shared_table() -> None:
    s = load_search_spec(REPO / "examples" / "search_nb201_table.yaml")
    assert s.name == "search_nb201_table"
    path = Path(s.evaluator.path or "")
    assert path.is_absolute() and path.name == "nb201_12epoch_acc.csv"
    assert s.constraints[0].key == "latency_ms@local-cpu" and s.constraints[0].max == 8.0
    assert [m.name for m in s.metrics] == ["macs", "params"]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (spec(sampler={"name": "tpe", "n": 3}), "sampler.n", ["unknown key"]),
        (spec(colour="red"), "colour", ["unknown key"]),
        (
            spec(objectives=[{"name": "accuracy", "direction": "maximize", "weight": 2}]),
            "objectives.0.weight",
            ["unknown key"],
        ),
        (
            spec(objectives=[{"name": "latency_ms", "direction": "minimize"}]),
            "objectives.0",
            ["'latency_ms'", "device"],
        ),
        (spec(constraints=[{"name": "latency_ms", "max": 5}]), "constraints.0", ["'latency_ms'", "device"]),
        (spec(metrics=[{"name": "latency_ms", "direction": "minimize"}]), "metrics.0", ["device"]),
        (spec(constraints=[{"name": "macs"}]), "constraints.0", ["`max` or `min`"]),
        (spec(constraints=[{"name": "macs", "min": 5, "max": 1}]), "constraints.0", ["min", "max"]),
        (
            spec(metrics=[{"name": "macs", "device": "local-cpu", "direction": "minimize"}]),
            "metrics.0",
            ["'macs'", "remove `device`"],
        ),
        # A device on an evaluator metric would be stored as `accuracy@local-cpu`, which nothing
        # computes: the bound would silently never apply.
        (
            spec(constraints=[{"name": "accuracy", "device": "local-cpu", "min": 50}]),
            "constraints.0",
            ["'accuracy'", "remove `device`"],
        ),
        (spec(objectives=[{"name": "accuracy", "direction": "up"}]), "objectives.0.direction", ["'up'"]),
        (spec(objectives=[]), "objectives", ["at least 1"]),
        (spec(objectives=[{"name": "accuracy", "direction": "maximize"}] * 2), "(top level)", ["repeat"]),
        (spec(budget={"trials": 0}), "budget.trials", ["(got 0)"]),
        (spec(budget={"parallelism": 65}), "budget.parallelism", ["65"]),
        (spec(budget={"timeout_s": -1}), "budget.timeout_s", ["-1"]),
        (spec(evaluator={"kind": "table"}), "evaluator", ["`path` is required"]),
        (spec(evaluator={"kind": "supernet"}), "evaluator", ["`checkpoint` is required"]),
        (spec(evaluator={"kind": "oracle", "path": "x"}), "evaluator.kind", ["'oracle'", "'table'"]),
        ({k: v for k, v in spec().items() if k != "space"}, "space", ["Field required"]),
    ],
)
def test_errors_are_one_line_naming_the_field(data: dict[str, Any], field: str, words: list[str]) -> None:
    msg = error_of(data)
    assert f": {field}: " in msg, msg
    for w in words:
        assert w in msg, msg


def test_several_errors_report_the_first_and_count_the_rest() -> None:
    msg = error_of(spec(budget={"trials": 0, "parallelism": 0}, colour=1))
    assert "(+2 more)" in msg


def test_not_a_mapping() -> None:
    assert "expected a mapping, but got list" in error_of([1, 2])


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_search_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: {name: nb201\nobjectives: [\n")
    with pytest.raises(SearchSpecError, match="not valid YAML/JSON") as info:
        load_search_spec(bad)
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SearchSpecError, match="expected a mapping"):
        load_search_spec(empty)
    broken = tmp_path / "broken.json"
    broken.write_text('{"space": ')
    with pytest.raises(SearchSpecError, match="not valid YAML/JSON"):
        load_search_spec(broken)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump(spec(budget={"trails": 3})))
    with pytest.raises(SearchSpecError, match=r"unknown\.yaml: budget\.trails: unknown key"):
        load_search_spec(unknown)


def test_json_spec_and_name_from_file(tmp_path: Path) -> None:
    p = tmp_path / "my-run.json"
    p.write_text(json.dumps(spec()))
    assert load_search_spec(p).name == "my-run"
    p.write_text(json.dumps(spec(name="named")))
    assert load_search_spec(p).name == "named"


def test_relative_evaluator_paths_resolve_against_the_spec_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_dir = tmp_path / "specs" / "deep"
    (spec_dir / "data").mkdir(parents=True)
    (spec_dir / "data" / "bench.csv").write_text("arch,accuracy\n")
    (tmp_path / "specs" / "ckpt").mkdir()
    # A decoy with the same relative path under the working directory must not win.
    cwd = tmp_path / "elsewhere"
    (cwd / "data").mkdir(parents=True)
    (cwd / "data" / "bench.csv").write_text("decoy\n")
    monkeypatch.chdir(cwd)

    p = spec_dir / "s.yaml"
    p.write_text(yaml.safe_dump(spec(evaluator={"kind": "table", "path": "data/bench.csv"})))
    assert load_search_spec(p).evaluator.path == str((spec_dir / "data" / "bench.csv").resolve())

    p.write_text(yaml.safe_dump(spec(evaluator={"kind": "supernet", "checkpoint": "../ckpt"})))
    assert load_search_spec(p).evaluator.checkpoint == str((tmp_path / "specs" / "ckpt").resolve())

    absolute = str(cwd / "data" / "bench.csv")
    p.write_text(yaml.safe_dump(spec(evaluator={"kind": "table", "path": absolute})))
    assert load_search_spec(p).evaluator.path == absolute

    # Loading from another working directory (relative spec path) gives the same answer.
    monkeypatch.chdir(tmp_path / "specs")
    p.write_text(yaml.safe_dump(spec(evaluator={"kind": "table", "path": "data/bench.csv"})))
    assert load_search_spec(Path("deep/s.yaml")).evaluator.path == str(
        (spec_dir / "data" / "bench.csv").resolve()
    )
