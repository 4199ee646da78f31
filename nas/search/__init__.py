"""Multi-objective search: an Optuna driver per job, Ray evaluators, a typed trials index in the
service database, Pareto and hypervolume queries.

>>> from nas.search import load_search_spec, run_search, pareto_front
>>> result = run_search(load_search_spec("examples/search_nb201_table.yaml"))
>>> [t["number"] for t in pareto_front(result.job_id, where="latency_ms<5")]
"""

from __future__ import annotations

from nas.search._driver import SearchResult, optuna_storage, update_front
from nas.search._evaluators import (
    EVALUATORS,
    Evaluator,
    PredictorEvaluator,
    SupernetEvaluatorKind,
    TableEvaluator,
    build_evaluator,
)
from nas.search._jobs import join_search, resume_search, run_search
from nas.search._metrics import CheapMetrics, MetricDef, job_metrics
from nas.search._pareto import hypervolume, pareto_mask, to_minimization
from nas.search._query import hypervolume_history, load_values, pareto_front, trials
from nas.search._samplers import (
    DEFAULT_SAMPLER,
    SAMPLERS,
    PredictorSampler,
    SamplerContext,
    create_sampler,
    list_samplers,
    search_distributions,
)
from nas.search._spec import SearchSpec, SearchSpecError, load_search_spec, parse_search_spec
from nas.search._where import WhereError, parse_where

__all__ = [
    "DEFAULT_SAMPLER",
    "EVALUATORS",
    "SAMPLERS",
    "CheapMetrics",
    "Evaluator",
    "MetricDef",
    "PredictorEvaluator",
    "PredictorSampler",
    "SamplerContext",
    "SearchResult",
    "SearchSpec",
    "SearchSpecError",
    "SupernetEvaluatorKind",
    "TableEvaluator",
    "WhereError",
    "build_evaluator",
    "create_sampler",
    "hypervolume",
    "hypervolume_history",
    "job_metrics",
    "join_search",
    "list_samplers",
    "load_search_spec",
    "load_values",
    "optuna_storage",
    "pareto_front",
    "pareto_mask",
    "parse_search_spec",
    "parse_where",
    "resume_search",
    "run_search",
    "search_distributions",
    "to_minimization",
    "trials",
    "update_front",
]
