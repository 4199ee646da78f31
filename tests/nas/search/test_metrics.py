"""A job's metrics: slots, flags and bounds from the spec; free metrics from tables and the cost model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import latency_tables as lt
import search_spaces as ss
from nas.db._models import METRIC_SLOTS
from nas.search import CheapMetrics, MetricDef, job_metrics, parse_search_spec

TABLE = {"kind": "table", "path": "bench.csv"}


def spec(**over: Any) -> Any:
    data: dict[str, Any] = {
        "space": {"name": "nb201"},
        "evaluator": TABLE,
        "objectives": [
            {"name": "accuracy", "direction": "maximize"},
            {"name": "latency_ms", "device": "local-cpu", "direction": "minimize"},
        ],
    }
    data.update(over)
    return parse_search_spec(data)


def by_key(defs: list[MetricDef]) -> dict[str, MetricDef]:
    return {m.key: m for m in defs}


def test_objectives_first_then_constraints_then_extras() -> None:
    defs = job_metrics(
        spec(
            constraints=[
                {"name": "params", "max": 1e6},
                {"name": "latency_ms", "device": "local-cpu", "max": 5},
            ],
            metrics=[
                {"name": "macs", "direction": "minimize"},
                {"name": "params", "direction": "minimize"},
                {"name": "latency_ms", "device": "local-cpu-ort", "direction": "minimize"},
            ],
        ),
        ("accuracy",),
    )
    assert [(m.key, m.slot) for m in defs] == [
        ("accuracy", 0),
        ("latency_ms@local-cpu", 1),
        ("params", 2),
        ("macs", 3),
        ("latency_ms@local-cpu-ort", 4),
    ]
    assert [m.column for m in defs] == ["m0", "m1", "m2", "m3", "m4"]
    k = by_key(defs)
    assert [m.objective for m in defs] == [True, True, False, False, False]
    assert k["accuracy"].direction == "maximize" and not k["accuracy"].cheap
    assert k["latency_ms@local-cpu"].cheap and k["latency_ms@local-cpu"].device == "local-cpu"
    assert k["latency_ms@local-cpu"].name == "latency_ms"
    # A constraint on an objective bounds that objective's slot; a constrained extra gets a slot.
    assert k["latency_ms@local-cpu"].max == 5 and k["latency_ms@local-cpu"].min is None
    assert k["params"].max == 1e6 and k["params"].direction == "minimize" and k["params"].cheap
    assert k["macs"].max is None and k["macs"].min is None
    assert k["accuracy"].max is None


def test_tightest_bounds_win_and_constraint_directions_default() -> None:
    defs = by_key(
        job_metrics(
            spec(
                constraints=[
                    {"name": "macs", "max": 3e8},
                    {"name": "macs", "max": 2e8, "min": 1e7},
                    {"name": "macs", "min": 5e7},
                    {"name": "accuracy", "min": 60},
                    {"name": "accuracy", "min": 65},
                ]
            ),
            ("accuracy",),
        )
    )
    assert (defs["macs"].min, defs["macs"].max) == (5e7, 2e8)
    assert defs["accuracy"].min == 65 and defs["accuracy"].objective
    assert len(defs) == 3


def test_cheap_flags() -> None:
    defs = by_key(
        job_metrics(
            spec(
                objectives=[
                    {"name": "accuracy", "direction": "maximize", "cheap": True},
                    {"name": "macs", "direction": "minimize", "cheap": False},
                ],
                metrics=[{"name": "loss", "direction": "minimize"}],
            ),
            ("accuracy", "loss"),
        )
    )
    assert defs["accuracy"].cheap  # a predictor's accuracy may be declared free
    assert defs["macs"].cheap  # analytic metrics are always free
    assert not defs["loss"].cheap


def test_unknown_metric_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError) as info:
        job_metrics(spec(objectives=[{"name": "energy_mj", "direction": "minimize"}]), ("accuracy",))
    msg = str(info.value)
    assert "'energy_mj'" in msg and "['accuracy']" in msg
    assert "allowed: accuracy, latency_ms, macs, params, activation_bytes" in msg
    with pytest.raises(ValueError, match="'loss'"):
        job_metrics(spec(constraints=[{"name": "loss", "max": 1}]), ("accuracy",))
    # An evaluator column with another name is a metric like any other.
    assert (
        by_key(
            job_metrics(
                spec(metrics=[{"name": "energy_mj", "direction": "minimize"}]), ("accuracy", "energy_mj")
            )
        )["energy_mj"].slot
        == 2
    )


def test_more_metrics_than_slots() -> None:
    extra = [
        {"name": "latency_ms", "device": f"dev{i}", "direction": "minimize"} for i in range(METRIC_SLOTS - 1)
    ]
    assert len(job_metrics(spec(metrics=extra[: METRIC_SLOTS - 2]), ("accuracy",))) == METRIC_SLOTS
    with pytest.raises(ValueError, match=f"at most {METRIC_SLOTS} metrics"):
        job_metrics(spec(metrics=extra), ("accuracy",))


def test_metric_def_round_trips_through_json() -> None:
    for m in job_metrics(spec(constraints=[{"name": "macs", "min": 1, "max": 2}]), ("accuracy",)):
        assert MetricDef.from_dict(json.loads(json.dumps(m.to_dict()))) == m


# ----------------------------------------------------------------------------------- CheapMetrics
def test_cheap_metrics_match_the_latency_table_and_the_cost_model() -> None:
    space = ss.get_space("nb201")
    defs = job_metrics(
        spec(
            metrics=[
                {"name": "macs", "direction": "minimize"},
                {"name": "params", "direction": "minimize"},
                {"name": "activation_bytes", "direction": "minimize"},
            ]
        ),
        ("accuracy",),
    )
    cheap = CheapMetrics(space, defs)
    cheap.check()
    assert [m.key for m in cheap.metrics] == ["latency_ms@local-cpu", "macs", "params", "activation_bytes"]
    table = lt.find_table("local-cpu", "nb201")
    for seed in range(25):
        arch = space.sample(seed=seed)
        got = cheap(arch)
        cost = space.cost(arch)
        assert set(got) == {"latency_ms@local-cpu", "macs", "params", "activation_bytes"}
        assert got["latency_ms@local-cpu"] == pytest.approx(lt.estimate(table, space, arch), rel=1e-12)
        assert got["latency_ms@local-cpu"] > 0
        for k in ("macs", "params", "activation_bytes"):
            assert got[k] == float(cost[k]) and isinstance(got[k], float)
    assert cheap(space.smallest())["latency_ms@local-cpu"] < cheap(space.largest())["latency_ms@local-cpu"]


def test_cheap_metrics_without_tables() -> None:
    space = ss.get_space("mbv3_tiny")
    defs = job_metrics(
        spec(
            space={"name": "mbv3_tiny"},
            objectives=[
                {"name": "accuracy", "direction": "maximize"},
                {"name": "macs", "direction": "minimize"},
            ],
        ),
        ("accuracy",),
    )
    cheap = CheapMetrics(space, defs)
    assert cheap.tables == {}
    arch = space.sample(seed=3)
    assert cheap(arch) == {"macs": float(space.cost(arch)["macs"])}


def test_unknown_device_lists_known_ones() -> None:
    defs = job_metrics(
        spec(objectives=[{"name": "latency_ms", "device": "pixel-99", "direction": "minimize"}]),
        ("accuracy",),
    )
    with pytest.raises(KeyError) as info:
        CheapMetrics(ss.get_space("nb201"), defs)
    assert "pixel-99" in str(info.value) and "local-cpu" in str(info.value)


def test_missing_table_names_the_command_that_measures_it(tableless_device: str) -> None:
    defs = job_metrics(
        spec(objectives=[{"name": "latency_ms", "device": tableless_device, "direction": "minimize"}]),
        ("accuracy",),
    )
    with pytest.raises(
        FileNotFoundError, match=f"nas latency measure --device {tableless_device} --space nb201"
    ):
        CheapMetrics(ss.get_space("nb201"), defs)


@pytest.mark.parametrize("op", ["nor_conv_3x3", "avg_pool_3x3"])
def test_a_table_missing_an_op_fails_the_check(op: str, tmp_path: Path) -> None:
    """A user table ($NAS_HOME/latency/...) wins over the shipped one; one lacking any op the
    space can use fails `check` before a search starts: the largest subnet's (nor_conv_3x3) and
    ops in neither the smallest nor the largest subnet (avg_pool_3x3)."""
    space = ss.get_space("nb201")
    shipped = json.loads(lt.shipped_table_path("local-cpu", "nb201").read_text())
    shipped["entries"] = [e for e in shipped["entries"] if op not in e["key"]]
    user = lt.user_table_path("local-cpu", "nb201")
    assert str(user).startswith(str(tmp_path))  # NAS_HOME points into the test's directory
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps(shipped))
    defs = job_metrics(spec(), ("accuracy",))
    cheap = CheapMetrics(space, defs)
    with pytest.raises(lt.MissingOpKey, match=f"{op}.*nas latency measure --device local-cpu --space nb201"):
        cheap.check()
    assert any(op in space.arch_str(space.sample(seed=s)) for s in range(20))
