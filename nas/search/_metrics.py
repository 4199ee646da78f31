"""The metrics of a search job: which are objectives or constraints, which column each is stored
in, and how the free ones (latency from device tables, analytic costs) are computed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import latency_tables as lt
from nas.db._models import METRIC_SLOTS
from nas.search._spec import ANALYTIC_METRICS, EXPENSIVE_METRICS, TABLE_METRICS, SearchSpec, metric_key
from search_spaces import SearchSpace

__all__ = ["CheapMetrics", "MetricDef", "job_metrics"]


@dataclass(frozen=True)
class MetricDef:
    """One stored metric of a job.

    Attributes:
        key: Stored name (``latency_ms@local-cpu``); what queries and filters use.
        name: Metric name (``latency_ms``). device: its device, if any.
        slot: Trials column index (``m<slot>``).
        direction: ``minimize`` / ``maximize`` (display and Pareto order for non-objectives too).
        objective: Searched on. cheap: Free to compute (not counted by the budget).
        max / min: The search-time constraint bounds (None: unconstrained).
    """

    key: str
    name: str
    device: str | None
    slot: int
    direction: str
    objective: bool
    cheap: bool
    max: float | None = None
    min: float | None = None

    @property
    def column(self) -> str:
        return f"m{self.slot}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricDef:
        return cls(**dict(data))


def _default_direction(name: str) -> str:
    return "maximize" if name == "accuracy" else "minimize"


def job_metrics(spec: SearchSpec, evaluator_metrics: tuple[str, ...]) -> list[MetricDef]:
    """Objectives first (in spec order), then constrained or extra metrics, one slot each.

    Args:
        evaluator_metrics: Names the evaluator can produce (its `metrics`).

    Raises:
        ValueError: an unknown metric name (naming the allowed ones), or more metrics than slots.
    """
    allowed = (*evaluator_metrics, *TABLE_METRICS, *ANALYTIC_METRICS)
    out: dict[str, MetricDef] = {}

    def add(name: str, device: str | None, direction: str, objective: bool, cheap: bool | None) -> None:
        if name not in allowed:
            raise ValueError(
                f"Unknown metric {name!r} for evaluator with metrics {list(evaluator_metrics)}; "
                f"allowed: {', '.join(allowed)}."
            )
        key = metric_key(name, device)
        if key in out:
            return
        free = name in TABLE_METRICS or name in ANALYTIC_METRICS
        if name in EXPENSIVE_METRICS or name in evaluator_metrics:
            free = bool(cheap) if cheap is not None else free
        out[key] = MetricDef(key, name, device, len(out), direction, objective, free)

    for o in spec.objectives:
        add(o.name, o.device, o.direction, True, o.cheap)
    for c in spec.constraints:
        add(c.name, c.device, _default_direction(c.name), False, None)
    for m in spec.metrics:
        add(m.name, m.device, m.direction, False, m.cheap)
    if len(out) > METRIC_SLOTS:
        raise ValueError(f"A job stores at most {METRIC_SLOTS} metrics, but the spec names {len(out)}.")
    bounds: dict[str, dict[str, float]] = {}
    for c in spec.constraints:
        b = bounds.setdefault(c.key, {})
        if c.max is not None:
            b["max"] = min(c.max, b.get("max", c.max))
        if c.min is not None:
            b["min"] = max(c.min, b.get("min", c.min))
    return [MetricDef(**{**asdict(m), **bounds.get(m.key, {})}) for m in out.values()]


class CheapMetrics:
    """Computes the free metrics of an architecture: analytic costs and table latencies.

    Tables are looked up once (`latency_tables.find_table`); a missing table or key fails before
    the search starts (`check`), naming the device and the command that measures it.
    """

    def __init__(self, space: SearchSpace, metrics: list[MetricDef]) -> None:
        self.space = space
        self.metrics = [m for m in metrics if m.name in TABLE_METRICS or m.name in ANALYTIC_METRICS]
        self.tables: dict[str, lt.LatencyTable] = {}
        self._memo: dict[str, dict[str, float]] = {}
        for m in self.metrics:
            if m.name in TABLE_METRICS and m.device and m.device not in self.tables:
                lt.get_device(m.device)  # KeyError listing the known devices
                self.tables[m.device] = lt.find_table(m.device, space.name)

    def check(self) -> None:
        """Every op key an architecture of the space can use is in each table, and the smallest
        and largest subnets estimate (raises MissingOpKey early, naming the first missing key).

        The smallest and largest subnets alone do not cover categorical choices (NAS-Bench-201's
        avg_pool_3x3 is in neither), and a key missing mid-search would kill the driver.
        """
        for device, table in self.tables.items():
            for r in lt.get_family(self.space).resolutions(self.space):
                for key in lt.all_keys(self.space, [r]):
                    if not table.has(key, r):
                        raise lt.MissingOpKey(key, device, r, self.space.name)
        for arch in (self.space.smallest(), self.space.largest()):
            self(arch)

    def __call__(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """The free metrics of `arch` (memoised by arch_id: samplers score the same candidates
        many times)."""
        aid = self.space.arch_id(arch)
        if aid in self._memo:
            return dict(self._memo[aid])
        out: dict[str, float] = {}
        cost: Mapping[str, int] | None = None
        for m in self.metrics:
            if m.name in ANALYTIC_METRICS:
                cost = cost if cost is not None else self.space.cost(arch)
                out[m.key] = float(cost[m.name])
            else:
                assert m.device is not None
                out[m.key] = float(lt.estimate(self.tables[m.device], self.space, arch))
        if len(self._memo) < 1_000_000:
            self._memo[aid] = out
        return dict(out)
