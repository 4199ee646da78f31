"""Which subnets train at each step: the sandwich rule, restrictions from the shrinking schedule,
and uniform or complexity-aware sampling.

Everything is a pure function of (seed, step) plus the tiny sampler state (the last complexity
bin), so all data-parallel workers draw the same subnets at the same step and a resumed run draws
what the interrupted one would have drawn.

* Sandwich rule (BigNAS / AttentiveNAS): the largest subnet, the smallest, and `n_random` random
  subnets every step, all within the current restriction.
* Progressive shrinking (Once-for-All): a phase makes some choice groups elastic (e.g. ``ks``);
  the others stay at their largest option.
* Delayed shrinking (DεpS): the full network trains alone until `deps_start_fraction` of the
  steps, then the allowed options of every choice widen from the largest ones to all of them
  over `deps_ramp_fraction` of training (ε-shrinking).
* Complexity-aware sampling (ElasticViT): MACs are split into log-spaced bins between the
  restricted smallest and largest subnets; each random subnet's bin is a random walk step
  (-1, 0, +1) from the previous one's, so consecutive subnets have similar MACs and every
  complexity level is visited, instead of uniform sampling's pile-up at medium sizes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.train._spec import ShrinkPhase, TrainingSpec
from search_spaces import Arch, SearchSpace

__all__ = [
    "Allowed",
    "Schedule",
    "StepPlan",
    "SubnetSampler",
    "choice_groups",
    "eps_shrink",
    "restrict_groups",
]

Allowed = dict[str, tuple[Any, ...]]
"""Per choice name, the options that may be sampled (cheapest first)."""

_SAMPLE_TAG = 0x5A4D  # separates the sampler's RNG stream from other per-step streams


def choice_groups(space: SearchSpace) -> dict[str, list[str]]:
    """Choice names grouped by prefix (``ks.3`` -> ``ks``; ``edge.1<-0`` -> ``edge``)."""
    out: dict[str, list[str]] = {}
    for c in space.choices():
        out.setdefault(c.name.split(".")[0], []).append(c.name)
    return out


def restrict_groups(space: SearchSpace, elastic: Sequence[str]) -> Allowed:
    """Choices in the `elastic` groups keep all options; the rest only their largest.

    Raises:
        ValueError: an unknown group, naming the space's groups.
    """
    groups = choice_groups(space)
    unknown = [g for g in elastic if g not in groups]
    if unknown:
        raise ValueError(
            f"Unknown choice group {unknown[0]!r} for space {space.name!r}; groups: {', '.join(groups)}."
        )
    elastic_names = {n for g in elastic for n in groups[g]}
    return {c.name: c.options if c.name in elastic_names else c.options[-1:] for c in space.choices()}


def eps_shrink(space: SearchSpace, eps: float) -> Allowed:
    """DεpS's ε-shrinking: each choice allows its ``max(2, ceil(eps * n))`` largest options."""
    out: Allowed = {}
    for c in space.choices():
        n = len(c.options)
        k = n if eps >= 1.0 else min(n, max(2, math.ceil(eps * n)))
        out[c.name] = c.options[n - k :]
    return out


class SubnetSampler:
    """Draws the subnets of one sandwich step.

    Args:
        space: The search space.
        n_random: Random subnets per step besides the largest and the smallest.
        mode: ``uniform`` or ``complexity_aware``.
        seed: Base seed; step `s` uses a generator seeded with ``(seed, s)``.
        bins: Complexity bins (complexity_aware only).
        max_tries: Candidates drawn per random subnet while looking for the target bin.
    """

    def __init__(
        self,
        space: SearchSpace,
        n_random: int = 2,
        mode: str = "uniform",
        seed: int = 0,
        bins: int = 8,
        max_tries: int = 32,
    ) -> None:
        if mode not in ("uniform", "complexity_aware"):
            raise ValueError(f"Unknown sampling mode {mode!r}; allowed: uniform, complexity_aware.")
        self.space, self.n_random, self.mode, self.seed = space, n_random, mode, seed
        self.bins, self.max_tries = bins, max_tries
        self.prev_bin: int | None = None
        self._edges: dict[tuple, np.ndarray] = {}
        self._full: Allowed = {c.name: c.options for c in space.choices()}

    # ----- state (kept in checkpoints) ---------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"prev_bin": self.prev_bin}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.prev_bin = state.get("prev_bin")

    # ----- basic draws -------------------------------------------------------------------------
    def largest(self, allowed: Allowed | None = None) -> Arch:
        a = allowed or self._full
        return self.space.from_params({name: opts[-1] for name, opts in a.items()})

    def smallest(self, allowed: Allowed | None = None) -> Arch:
        a = allowed or self._full
        return self.space.from_params({name: opts[0] for name, opts in a.items()})

    def uniform(self, rng: np.random.Generator, allowed: Allowed | None = None) -> Arch:
        a = allowed or self._full
        return self.space.from_params({name: opts[int(rng.integers(len(opts)))] for name, opts in a.items()})

    def macs(self, arch: Arch) -> int:
        return int(self.space.cost(arch)["macs"])

    def bin_edges(self, allowed: Allowed | None = None) -> np.ndarray:
        """Log-spaced MAC bin edges between the restricted smallest and largest subnets."""
        a = allowed or self._full
        key = tuple((k, tuple(v)) for k, v in a.items())
        if key not in self._edges:
            lo, hi = self.macs(self.smallest(a)), self.macs(self.largest(a))
            self._edges[key] = np.geomspace(max(lo, 1), max(hi, lo + 1), self.bins + 1)
        return self._edges[key]

    def bin_of(self, macs: int, edges: np.ndarray) -> int:
        return int(np.clip(np.searchsorted(edges, macs, side="right") - 1, 0, len(edges) - 2))

    def complexity_aware(self, rng: np.random.Generator, allowed: Allowed | None = None) -> Arch:
        """A subnet whose MACs fall in the bin one random-walk step from the previous one's."""
        edges = self.bin_edges(allowed)
        n_bins = len(edges) - 1
        prev = self.prev_bin if self.prev_bin is not None else int(rng.integers(n_bins))
        target = int(np.clip(prev + int(rng.integers(-1, 2)), 0, n_bins - 1))
        centre = math.sqrt(edges[target] * edges[target + 1])
        best, best_dist = None, math.inf
        for _ in range(self.max_tries):
            cand = self.uniform(rng, allowed)
            m = self.macs(cand)
            if self.bin_of(m, edges) == target:
                best = cand
                break
            dist = abs(math.log(m) - math.log(centre))
            if dist < best_dist:
                best, best_dist = cand, dist
        assert best is not None
        self.prev_bin = self.bin_of(self.macs(best), edges)
        return best

    def random(self, rng: np.random.Generator, allowed: Allowed | None = None) -> Arch:
        if self.mode == "complexity_aware":
            return self.complexity_aware(rng, allowed)
        return self.uniform(rng, allowed)

    def step_rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, step, _SAMPLE_TAG])

    def sandwich(self, step: int, allowed: Allowed | None = None) -> list[Arch]:
        """``[largest, smallest, *n_random random]`` within `allowed`, the same for a given step."""
        rng = self.step_rng(step)
        return [
            self.largest(allowed),
            self.smallest(allowed),
            *(self.random(rng, allowed) for _ in range(self.n_random)),
        ]


@dataclass(frozen=True)
class StepPlan:
    """What one training step does.

    Attributes:
        phase: Phase name (``full``, ``shrink``, ``sandwich`` or a progressive-shrinking phase).
        archs: Subnets to train, the first being the teacher (the restricted largest).
        allowed: The restriction the subnets were drawn from (None: the whole space).
    """

    phase: str
    archs: list[Arch]
    allowed: Allowed | None


class Schedule:
    """Maps a global step to its phase, subnets and learning rate.

    Args:
        space: The search space.
        training: The training section of the spec.
        steps_per_epoch: Optimiser steps per epoch.
        seed: Sampling seed.
    """

    def __init__(
        self, space: SearchSpace, training: TrainingSpec, steps_per_epoch: int, seed: int = 0
    ) -> None:
        self.space, self.training, self.steps_per_epoch = space, training, steps_per_epoch
        self.total_steps = training.epochs * steps_per_epoch
        self.phases: list[ShrinkPhase] = training.phases()
        self._phase_allowed = [restrict_groups(space, p.elastic) for p in self.phases]
        self.sampler = SubnetSampler(
            space, training.sandwich_n, training.sampling, seed=seed, bins=training.complexity_bins
        )

    def phase_index(self, epoch: int) -> int | None:
        """Index of the progressive-shrinking phase covering `epoch` (None without phases)."""
        if not self.phases:
            return None
        end = 0
        for i, p in enumerate(self.phases):
            end += p.epochs
            if epoch < end:
                return i
        return len(self.phases) - 1

    def reorder_before(self, epoch: int) -> bool:
        """Whether the phase starting exactly at `epoch` asks for channel reordering."""
        start = 0
        for p in self.phases:
            if epoch == start:
                return p.reorder_channels
            start += p.epochs
        return False

    def plan(self, step: int) -> StepPlan:
        t = self.training
        epoch = step // self.steps_per_epoch
        idx = self.phase_index(epoch)
        if idx is not None:
            allowed: Allowed | None = self._phase_allowed[idx]
            return StepPlan(self.phases[idx].name, self.sampler.sandwich(step, allowed), allowed)
        if t.deps_start_fraction is not None:
            progress = step / max(self.total_steps, 1)
            if progress < t.deps_start_fraction:
                return StepPlan("full", [self.sampler.largest()], None)
            ramp = t.deps_ramp_fraction
            eps = 1.0 if ramp <= 0 else (progress - t.deps_start_fraction) / ramp
            allowed = None if eps >= 1.0 else eps_shrink(self.space, eps)
            return StepPlan("shrink", self.sampler.sandwich(step, allowed), allowed)
        return StepPlan("sandwich", self.sampler.sandwich(step), None)

    def lr(self, step: int) -> float:
        """Linear warm-up then cosine decay to zero over the whole run."""
        t = self.training
        warm = int(round(t.warmup_epochs * self.steps_per_epoch))
        if step < warm:
            return t.lr * (step + 1) / warm
        span = max(self.total_steps - warm, 1)
        return 0.5 * t.lr * (1.0 + math.cos(math.pi * min(step - warm, span) / span))
