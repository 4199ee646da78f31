"""Every registered sampler through the same contract: a small tabular search on NAS-Bench-201 that
respects its budget, indexes every trial with its metrics, stores constraints as values and keeps
a non-dominated front."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import pytest

import search_spaces as ss
from nas.search import (
    DEFAULT_SAMPLER,
    PredictorSampler,
    SamplerContext,
    create_sampler,
    job_metrics,
    list_samplers,
    parse_search_spec,
    run_search,
    search_distributions,
)
from nas.search._samplers import constraint_values

BUDGET = 12
# Small settings so that each strategy gets past its random start-up within the budget.
SMALL: dict[str, dict[str, Any]] = {
    "nsga2": {"population_size": 6},
    "nsga3": {"population_size": 6},
    "tpe": {"n_startup_trials": 5},
    "gp": {"n_startup_trials": 8},
    "predictor": {"n_init": 6, "batch": 4, "candidates": 200},
}


def test_registry() -> None:
    names = list_samplers()
    assert {"nsga2", "nsga3", "tpe", "gp", "random", "predictor"} <= set(names)
    assert names == sorted(names) and DEFAULT_SAMPLER in names


def _ctx(constraints: bool = True) -> SamplerContext:
    from nas.search import CheapMetrics

    space = ss.get_space("nb201")
    spec = parse_search_spec(
        {
            "space": {"name": "nb201"},
            "evaluator": {"kind": "table", "path": "x.csv"},
            "objectives": [
                {"name": "accuracy", "direction": "maximize"},
                {"name": "latency_ms", "device": "local-cpu", "direction": "minimize"},
            ],
            "constraints": [{"name": "latency_ms", "device": "local-cpu", "max": 5.0}] if constraints else [],
        }
    )
    defs = job_metrics(spec, ("accuracy",))
    return SamplerContext(
        space,
        [m for m in defs if m.objective],
        CheapMetrics(space, defs),
        [m for m in defs if m.max is not None or m.min is not None],
        0,
        20,
    )


def test_create_sampler_errors() -> None:
    ctx = _ctx()
    with pytest.raises(KeyError) as info:
        create_sampler("annealing", ctx)
    assert "'annealing'" in str(info.value) and "nsga2" in str(info.value) and "predictor" in str(info.value)
    with pytest.raises(ValueError, match="Bad params for sampler 'tpe'.*n_startup"):
        create_sampler("tpe", ctx, {"n_startup": 3})
    with pytest.raises(ValueError, match="Bad params for sampler 'predictor'.*warmup"):
        create_sampler("predictor", ctx, {"warmup": 3})
    for name in list_samplers():
        assert isinstance(create_sampler(name, ctx, SMALL.get(name)), optuna.samplers.BaseSampler)
    assert isinstance(create_sampler("predictor", ctx), PredictorSampler)


def test_search_distributions_follow_the_space() -> None:
    space = ss.get_space("nb201")
    dists = search_distributions(space)
    assert list(dists) == [c.name for c in space.choices()]
    for c in space.choices():
        assert tuple(dists[c.name].choices) == tuple(c.options)
    arch = space.sample(seed=4)
    assert space.from_params(space.to_params(arch)) == arch


def test_constraint_values_follow_optunas_convention() -> None:
    ctx = _ctx()
    (lat,) = ctx.constraints
    assert constraint_values(ctx.constraints, {lat.key: 4.0}) == [-1.0]
    assert constraint_values(ctx.constraints, {lat.key: 6.5}) == [1.5]
    assert constraint_values(ctx.constraints, {}) == []
    from nas.search._metrics import MetricDef

    both = MetricDef("macs", "macs", None, 2, "minimize", False, True, max=10.0, min=2.0)
    assert constraint_values([both], {"macs": 1.0}) == [-9.0, 1.0]


@pytest.mark.parametrize("name", list_samplers())
def test_every_sampler_through_the_contract(
    name: str,
    make_spec: Callable[..., dict[str, Any]],
    sqlite_url: str,
    check_job: Callable[..., list[dict[str, Any]]],
    nb201_accuracy: dict[str, float],
) -> None:
    calls: list[tuple[int, int]] = []
    result = run_search(
        make_spec(trials=BUDGET, sampler=name, params=SMALL.get(name, {}), seed=3),
        url=sqlite_url,
        progress=lambda done, total, info: calls.append((done, total)),
    )
    assert result.status == "finished" and result.evaluations == BUDGET and result.failed == 0
    rows = check_job(result.job_id, sqlite_url, BUDGET, nb201_accuracy)
    assert result.trials == len(rows)
    assert sorted(result.front) == sorted(r["number"] for r in rows if r["on_front"])
    assert calls and calls[-1] == (BUDGET, BUDGET)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    # With the bound near the median latency, both sides were seen, and a front exists.
    assert {r["feasible"] for r in rows} == {True, False} or name == "predictor"
    assert result.front
    if name == "predictor":
        n_init = SMALL["predictor"]["n_init"]
        # Never proposes an architecture twice, and after its random start only proposes
        # architectures the (free) latency bound accepts.
        assert len(rows) == BUDGET
        assert all(r["feasible"] for r in rows if r["number"] >= n_init), rows


def test_predictor_sampler_fits_its_model_on_the_chosen_target_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standardised targets by default (rank-Gauss ones capped its optimism at the best accuracy
    seen: benchmarks/search_quality.py); any predictors.TARGET_TRANSFORMS value is accepted."""
    import predictors as pr

    ctx = _ctx(constraints=False)
    with pytest.raises(ValueError, match="target_transform: unknown 'log'; allowed: rank_gauss, standard"):
        PredictorSampler(ctx, target_transform="log")
    used: list[str] = []
    real = pr.create_predictor

    def create(name: str, **kw: Any) -> Any:
        used.append(kw["target_transform"])
        return real(name, **kw)

    monkeypatch.setattr(pr, "create_predictor", create)
    for transform in ("standard", "rank_gauss"):
        params = {**SMALL["predictor"], **({} if transform == "standard" else {"target_transform": transform})}
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=create_sampler("predictor", ctx, params))
        space = ctx.space
        for _ in range(SMALL["predictor"]["n_init"] + 1):
            trial = study.ask(search_distributions(space))
            arch = space.from_params(trial.params)
            study.tell(trial, [float(sum(v == "nor_conv_3x3" for v in trial.params.values())),
                               ctx.cheap(arch)["latency_ms@local-cpu"]])
        assert used and set(used) == {transform}, used
        used.clear()


def test_predictor_sampler_splits_each_batch_between_optimism_and_thompson_draws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`thompson` picks of each batch act on posterior draws (one draw each), the rest on the
    optimistic prediction; 0 turns the draws off, and a count outside 0..batch is refused."""
    import predictors as pr

    ctx = _ctx(constraints=False)
    for bad in (-1, 9, 1.5, True):
        with pytest.raises(ValueError, match=r"thompson: must be an integer from 0 to batch \(8\)"):
            PredictorSampler(ctx, batch=8, thompson=bad)
    asked: list[int] = []
    real = pr.BasePredictor.sample

    def sample(self: Any, X: Any, n_samples: int, rng: Any = None) -> Any:
        asked.append(n_samples)
        return real(self, X, n_samples, rng)

    monkeypatch.setattr(pr.BasePredictor, "sample", sample)
    space = ctx.space
    for thompson in (0, 3):
        params = {**SMALL["predictor"], "batch": 4, "thompson": thompson}
        sampler = create_sampler("predictor", ctx, params)
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        ids = set()
        for _ in range(SMALL["predictor"]["n_init"] + 8):
            trial = study.ask(search_distributions(space))
            arch = space.from_params(trial.params)
            ids.add(space.arch_id(arch))
            study.tell(trial, [float(sum(v == "nor_conv_3x3" for v in trial.params.values())),
                               ctx.cheap(arch)["latency_ms@local-cpu"]])
        assert len(ids) == SMALL["predictor"]["n_init"] + 8  # every proposal new
        assert asked == ([] if thompson == 0 else [3, 3]), asked
        asked.clear()
