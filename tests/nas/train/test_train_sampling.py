"""Sampling rules: sandwich, progressive-shrinking restrictions, delayed shrinking, complexity-aware."""

from __future__ import annotations

import math

import numpy as np
import pytest

import search_spaces as ss
from nas.train import Schedule, SubnetSampler, TrainingSpec, choice_groups, eps_shrink, restrict_groups

SPACES = ["mbv3_tiny", "vit_tiny", "nb201"]


@pytest.mark.parametrize("name", SPACES)
def test_sandwich_holds_largest_smallest_and_n_random(name: str) -> None:
    space = ss.get_space(name)
    sampler = SubnetSampler(space, n_random=3, seed=0)
    archs = sampler.sandwich(step=5)
    assert len(archs) == 5
    assert archs[0] == space.largest() and archs[1] == space.smallest()
    for arch in archs[2:]:
        space.validate(arch)


@pytest.mark.parametrize("mode", ["uniform", "complexity_aware"])
def test_same_step_same_subnets_on_every_worker(mode: str) -> None:
    space = ss.get_space("mbv3_tiny")
    a = SubnetSampler(space, 2, mode, seed=7)
    b = SubnetSampler(space, 2, mode, seed=7)
    for step in range(5):
        assert a.sandwich(step) == b.sandwich(step)
    assert a.sandwich(100) != a.sandwich(101)


def test_restrict_groups_keeps_others_at_largest() -> None:
    space = ss.get_space("mbv3_tiny")
    allowed = restrict_groups(space, ["ks"])
    sampler = SubnetSampler(space, 4, seed=0)
    largest = space.largest()
    seen_ks = set()
    for step in range(20):
        for arch in sampler.sandwich(step, allowed):
            assert arch["e"] == largest["e"] and arch["d"] == largest["d"] and arch["r"] == largest["r"]
            seen_ks |= set(arch["ks"])
    assert seen_ks == {3, 5, 7}
    assert sampler.smallest(allowed)["ks"] == [3] * len(largest["ks"])


def test_restrict_groups_unknown_group_names_the_groups() -> None:
    with pytest.raises(ValueError, match="groups: ks, e, d, r"):
        restrict_groups(ss.get_space("mbv3_tiny"), ["kernel"])
    assert set(choice_groups(ss.get_space("nb201"))) == {"edge"}
    assert set(choice_groups(ss.get_space("vit_tiny"))) == {"embed_dim", "depth", "heads", "mlp_ratio"}


def test_ofa_phases_kernel_then_depth_then_expand() -> None:
    space = ss.get_space("mbv3_tiny")
    t = TrainingSpec(epochs=8, progressive_shrinking="ofa")
    phases = t.phases()
    assert [p.name for p in phases] == ["kernel", "depth", "expand"]
    assert sum(p.epochs for p in phases) == 8 and phases[-1].reorder_channels
    sched = Schedule(space, t, steps_per_epoch=3, seed=0)
    largest = space.largest()
    by_phase: dict[str, list[dict]] = {}
    for step in range(sched.total_steps):
        plan = sched.plan(step)
        by_phase.setdefault(plan.phase, []).extend(plan.archs)
    assert all(a["e"] == largest["e"] and a["d"] == largest["d"] for a in by_phase["kernel"])
    assert any(a["ks"] != largest["ks"] for a in by_phase["kernel"])
    assert all(a["e"] == largest["e"] for a in by_phase["depth"])
    assert any(a["d"] != largest["d"] for a in by_phase["depth"])
    assert any(a["e"] != largest["e"] for a in by_phase["expand"])
    assert sched.reorder_before(phases[0].epochs + phases[1].epochs)
    assert not sched.reorder_before(0)


def test_delayed_shrinking_trains_full_net_first_then_widens() -> None:
    space = ss.get_space("mbv3_tiny")
    t = TrainingSpec(epochs=10, deps_start_fraction=0.5, deps_ramp_fraction=0.3)
    sched = Schedule(space, t, steps_per_epoch=10, seed=0)
    for step in range(50):
        plan = sched.plan(step)
        assert plan.phase == "full" and plan.archs == [space.largest()]
    early, late = sched.plan(50), sched.plan(99)
    assert early.phase == late.phase == "shrink"
    assert early.allowed is not None and late.allowed is None  # ramp finished: the whole space
    assert early.archs[1] != space.smallest() and late.archs[1] == space.smallest()
    assert early.archs[0] == space.largest()


def test_eps_shrink_keeps_the_largest_options() -> None:
    space = ss.get_space("mbv3_tiny")
    small = eps_shrink(space, 0.0)
    assert small["ks.0"] == (5, 7) and small["r"] == (28, 32)
    assert eps_shrink(space, 1.0)["ks.0"] == (3, 5, 7)


def _mean_log_jump(sampler: SubnetSampler, steps: int) -> tuple[float, set[int]]:
    macs = [sampler.macs(a) for s in range(steps) for a in sampler.sandwich(s)[2:]]
    jumps = [abs(math.log(a) - math.log(b)) for a, b in zip(macs, macs[1:], strict=False)]
    edges = sampler.bin_edges()
    return float(np.mean(jumps)), {sampler.bin_of(m, edges) for m in macs}


def test_complexity_aware_keeps_consecutive_macs_close() -> None:
    space = ss.get_space("mbv3_tiny")
    aware, bins_aware = _mean_log_jump(SubnetSampler(space, 2, "complexity_aware", seed=0, bins=8), 100)
    uniform, bins_uniform = _mean_log_jump(SubnetSampler(space, 2, "uniform", seed=0, bins=8), 100)
    assert aware < 0.6 * uniform, (aware, uniform)
    # The walk covers more complexity levels than uniform sampling, which piles up in the middle.
    assert len(bins_aware) >= len(bins_uniform)


def test_sampler_state_round_trips() -> None:
    space = ss.get_space("vit_tiny")
    a = SubnetSampler(space, 2, "complexity_aware", seed=3)
    for s in range(4):
        a.sandwich(s)
    b = SubnetSampler(space, 2, "complexity_aware", seed=3)
    b.load_state_dict(a.state_dict())
    assert a.sandwich(4) == b.sandwich(4)


def test_lr_warms_up_then_decays_to_zero() -> None:
    t = TrainingSpec(epochs=4, lr=0.2, warmup_epochs=1)
    sched = Schedule(ss.get_space("nb201"), t, steps_per_epoch=10)
    lrs = [sched.lr(s) for s in range(40)]
    assert lrs[0] == pytest.approx(0.02) and lrs[9] == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False)) and lrs[-1] < 0.01
