"""One contract suite, run over every registered search space."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import search_spaces as ss

SPACES = ss.list_spaces()
N_PARITY_ARCHS = 20
N_COST_ARCHS = 50


def randomize_(net: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb every weight and BN statistic so parity bugs cannot hide behind identity init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return net


@pytest.fixture(scope="module", params=SPACES)
def space(request: pytest.FixtureRequest) -> ss.SearchSpace:
    return ss.get_space(request.param)


@pytest.fixture(scope="module")
def supernet(space: ss.SearchSpace) -> nn.Module:
    torch.manual_seed(0)
    return randomize_(space.build_supernet()).eval()


def parity_archs(space: ss.SearchSpace) -> list[dict]:
    return [space.smallest(), space.largest(), *(space.sample(seed=i) for i in range(N_PARITY_ARCHS))]


def test_registry_lists_the_designed_spaces() -> None:
    assert {"mbv3_tiny", "ofa_mbv3_w10", "ofa_mbv3_w12", "vit_tiny", "nb201"} <= set(SPACES)


def test_unknown_space_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: .*mbv3_tiny"):
        ss.get_space("mbv3_huge")


def test_unknown_override_is_refused(space: ss.SearchSpace) -> None:
    with pytest.raises(ss.InvalidSpaceConfig, match="no_such_option.*allowed: .*num_classes"):
        ss.get_space(space.name, no_such_option=1)


def test_num_classes_override(space: ss.SearchSpace) -> None:
    other = ss.get_space(space.name, num_classes=7)
    assert other.spec() == {"name": space.name, "num_classes": 7}
    assert other.cost(other.largest())["params"] != space.cost(space.largest())["params"]


def test_sample_is_valid_deterministic_and_json(space: ss.SearchSpace) -> None:
    for seed in range(10):
        arch = space.sample(seed=seed)
        assert space.sample(seed=seed) == arch
        assert space.validate(arch) == arch
        assert json.loads(json.dumps(arch)) == arch
        assert space.from_str(space.arch_str(arch)) == arch
    assert len({space.arch_id(space.sample(seed=s)) for s in range(30)}) > 1


def test_arch_id_is_canonical(space: ss.SearchSpace) -> None:
    archs = [space.sample(seed=s) for s in range(50)]
    fresh = ss.get_space(space.name)
    for a in archs:
        assert space.arch_id(a) == fresh.arch_id(json.loads(json.dumps(a)))
    canon = {json.dumps(space.canonical_params(a), sort_keys=True) for a in archs}
    assert len({space.arch_id(a) for a in archs}) == len(canon)


def test_encode_is_fixed_length_and_follows_the_id(space: ss.SearchSpace) -> None:
    by_id: dict[str, np.ndarray] = {}
    for s in range(30):
        arch = space.sample(seed=s)
        vec = space.encode(arch)
        assert vec.shape == (space.encoding_length(),) and vec.dtype == np.float32
        assert np.isin(vec, (0.0, 1.0)).all()
        prev = by_id.setdefault(space.arch_id(arch), vec)
        assert np.array_equal(prev, vec)
    assert len({v.tobytes() for v in by_id.values()}) == len(by_id)


def test_mutate_and_crossover_stay_in_the_space(space: ss.SearchSpace) -> None:
    rng = np.random.default_rng(0)
    a, b = space.sample(seed=1), space.sample(seed=2)
    for _ in range(20):
        child = space.mutate(a, rng)
        assert space.validate(child) == child and space.to_params(child) != space.to_params(a)
        mix = space.crossover(a, b, rng)
        pa, pb, pm = space.to_params(a), space.to_params(b), space.to_params(space.validate(mix))
        assert all(pm[k] in (pa[k], pb[k]) for k in pm)


def test_invalid_values_name_the_field_and_the_allowed_set(space: ss.SearchSpace) -> None:
    arch = space.sample(seed=0)
    for choice in space.choices():
        params = space.to_params(arch)
        params[choice.name] = "bogus"
        with pytest.raises(ss.InvalidArch) as err:
            space.validate(space.from_params(params))
        msg = str(err.value)
        assert choice.field in msg and repr(choice.options[0]) in msg and "'bogus'" in msg
        assert err.value.field == choice.field


def test_structurally_broken_archs_are_refused(space: ss.SearchSpace) -> None:
    arch = space.sample(seed=0)
    with pytest.raises(ss.InvalidArch):
        space.validate([1, 2, 3])  # type: ignore[arg-type]
    missing = dict(arch)
    key = next(iter(missing))
    del missing[key]
    with pytest.raises(ss.InvalidArch, match=key):
        space.validate(missing)
    with pytest.raises(ss.InvalidArch, match="unexpected_key"):
        space.validate({**arch, "unexpected_key": 1})
    assert issubclass(ss.InvalidArch, ValueError)


def test_extract_matches_the_supernet(space: ss.SearchSpace, supernet: nn.Module) -> None:
    torch.manual_seed(1)
    for arch in parity_archs(space):
        x = torch.randn(2, *space.input_shape(arch))
        supernet.set_active(arch)
        sub = supernet.extract(arch).eval()
        assert not any(p is q for p in sub.parameters() for q in supernet.parameters())
        with torch.no_grad():
            diff = (supernet(x) - sub(x)).abs().max().item()
        assert diff <= 1e-5, (space.arch_str(arch), diff)
        assert supernet.active_arch == arch


def test_extract_leaves_the_active_arch_alone(space: ss.SearchSpace, supernet: nn.Module) -> None:
    a, b = space.sample(seed=3), space.sample(seed=4)
    supernet.set_active(a)
    supernet.extract(b)
    assert supernet.active_arch == a


def test_cost_matches_independent_counts(space: ss.SearchSpace, supernet: nn.Module) -> None:
    for seed in range(N_COST_ARCHS):
        arch = space.largest() if seed == 0 else space.sample(seed=100 + seed)
        # Counting needs shapes only: run the extracted module on the meta device.
        sub = supernet.extract(arch).eval().to("meta")
        cost = space.cost(arch)
        x = torch.empty(1, *space.input_shape(arch), device="meta")
        with FlopCounterMode(display=False) as counter:
            peak = _max_leaf_io_bytes(sub, x)
        assert cost["macs"] == counter.get_total_flops() // 2, space.arch_str(arch)
        assert cost["params"] == sum(p.numel() for p in sub.parameters())
        assert peak <= cost["activation_bytes"] <= 4 * peak, (peak, cost["activation_bytes"])


def _max_leaf_io_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Largest input+output of any conv or linear layer, in float32 bytes (a lower bound)."""
    seen = [0]

    def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen[0] = max(seen[0], 4 * (inputs[0].numel() + output.numel()))

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        module(x)
    for h in handles:
        h.remove()
    return seen[0]


def test_gradients_reach_the_shared_weights(space: ss.SearchSpace) -> None:
    torch.manual_seed(0)
    net = space.build_supernet().train()
    arch = space.sample(seed=5)
    net.set_active(arch)
    x = torch.randn(4, *space.input_shape(arch))
    net(x).logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_costs_grow_from_smallest_to_largest(space: ss.SearchSpace) -> None:
    small, large = space.cost(space.smallest()), space.cost(space.largest())
    assert 0 < small["macs"] < large["macs"]
    assert 0 < small["params"] <= large["params"]
    assert 0 < small["activation_bytes"] <= large["activation_bytes"]
