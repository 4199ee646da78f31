"""The elastic ViT space: schema, validation errors, analytic costs, supernet slicing and extraction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import search_spaces as ss
from search_spaces import InvalidArch, InvalidSpaceConfig
from search_spaces._vit import ViTSpace, ViTSubnet, ViTSupernet


@pytest.fixture(scope="module")
def space() -> ViTSpace:
    s = ss.get_space("vit_tiny")
    assert isinstance(s, ViTSpace)
    return s


@pytest.fixture
def net(space: ViTSpace) -> Iterator[ViTSupernet]:
    """A supernet with weights far from init, so parity checks compare non-trivial outputs."""
    torch.manual_seed(0)
    supernet = space.build_supernet()
    _perturb(supernet)
    yield supernet.eval()


@torch.no_grad()
def _perturb(module: nn.Module) -> None:
    for name, p in module.named_parameters():
        if name.endswith(("ln1.weight", "ln2.weight", "norm.weight")):
            p.copy_(1.0 + 0.3 * torch.randn_like(p))
        else:
            p.copy_(0.15 * torch.randn_like(p))


def _archs(space: ViTSpace, n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [space.smallest(), space.largest(), *(space.sample(rng) for _ in range(n))]


def _input(space: ViTSpace, arch: dict[str, Any], batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *space.input_shape(arch))


# ----- schema and validation -------------------------------------------------------------------
def test_registered_with_documented_defaults(space: ViTSpace) -> None:
    assert "vit_tiny" in ss.list_spaces("vit_*")
    names = [c.name for c in space.choices()]
    assert names[:2] == ["embed_dim", "depth"]
    assert names[2:] == [f"heads.{i}" for i in range(4)] + [f"mlp_ratio.{i}" for i in range(4)]
    assert space.choices()[4].field == "heads[2]"
    assert space.largest() == {"embed_dim": 96, "depth": 4, "heads": [4] * 4, "mlp_ratio": [4] * 4}
    assert space.smallest() == {"embed_dim": 48, "depth": 2, "heads": [1] * 4, "mlp_ratio": [2] * 4}
    assert space.input_shape(space.largest()) == (3, 16, 16)
    assert json.loads(json.dumps(space.describe()))["name"] == "vit_tiny"


def test_json_round_trip_and_ids(space: ViTSpace) -> None:
    for arch in _archs(space, 10):
        back = json.loads(json.dumps(arch))
        assert space.validate(back) == arch
        assert space.from_str(space.arch_str(arch)) == arch
        assert space.arch_id(back) == space.arch_id(arch)
        assert space.encode(arch).shape == (space.encoding_length(),)


def test_inactive_layers_do_not_change_id_encoding_or_network(space: ViTSpace, net: ViTSupernet) -> None:
    a = {"embed_dim": 64, "depth": 2, "heads": [2, 4, 1, 1], "mlp_ratio": [3, 2, 2, 2]}
    b = {"embed_dim": 64, "depth": 2, "heads": [2, 4, 4, 2], "mlp_ratio": [3, 2, 4, 3]}
    c = {**a, "heads": [2, 1, 1, 1]}  # an active layer differs
    assert space.arch_id(a) == space.arch_id(b) != space.arch_id(c)
    np.testing.assert_array_equal(space.encode(a), space.encode(b))
    assert space.cost(a) == space.cost(b)
    assert space.inactive(space.to_params(a)) == {"heads.2", "heads.3", "mlp_ratio.2", "mlp_ratio.3"}
    x = _input(space, a)
    with torch.no_grad():
        net.set_active(a)
        ya = net(x)
        net.set_active(b)
        torch.testing.assert_close(net(x), ya, rtol=0, atol=0)


_BAD_ARCHS = [
    pytest.param({"embed_dim": 50}, "embed_dim", "48, 64, 96", id="bad-embed-dim"),
    pytest.param({"embed_dim": "64"}, "embed_dim", "48, 64, 96", id="string-not-int"),
    pytest.param({"depth": True}, "depth", "2, 3, 4", id="bool-not-int"),
    pytest.param({"depth": 5}, "depth", "2, 3, 4", id="bad-depth"),
    pytest.param({"heads": [4, 4, 3, 4]}, "heads[2]", "1, 2, 4", id="bad-heads"),
    pytest.param({"mlp_ratio": [4, 4, 4, 4.0]}, "mlp_ratio[3]", "2, 3, 4", id="float-ratio"),
    pytest.param({"heads": [4, 4, 4]}, "heads", "a list of 4 values", id="short-list"),
    pytest.param({"mlp_ratio": 4}, "mlp_ratio", "a list of 4 values", id="scalar-not-list"),
    pytest.param({"extra": 1}, "extra", "only the keys embed_dim, depth, heads, mlp_ratio", id="unknown-key"),
]


@pytest.mark.parametrize(("patch", "field", "allowed"), _BAD_ARCHS)
def test_invalid_arch_names_field_and_allowed_values(
    space: ViTSpace, patch: dict[str, Any], field: str, allowed: str
) -> None:
    arch = {**space.largest(), **patch}
    with pytest.raises(InvalidArch) as err:
        space.validate(arch)
    assert err.value.field == field
    assert f"{field} = " in str(err.value) and allowed in str(err.value)


def test_missing_key_and_non_mapping(space: ViTSpace) -> None:
    arch = space.largest()
    del arch["depth"]
    with pytest.raises(InvalidArch, match="depth = '<missing>'; allowed: the keys embed_dim, depth"):
        space.validate(arch)
    with pytest.raises(InvalidArch, match="arch = "):
        space.validate([96, 4])  # type: ignore[arg-type]
    with pytest.raises(InvalidArch):
        space.cost(arch)


def test_set_active_validates_and_keeps_previous(space: ViTSpace, net: ViTSupernet) -> None:
    net.set_active(space.smallest())
    with pytest.raises(InvalidArch, match="embed_dim"):
        net.set_active({**space.largest(), "embed_dim": 80})
    assert net.active_arch == space.smallest()


def test_unknown_override_lists_allowed_keys() -> None:
    with pytest.raises(InvalidSpaceConfig, match="'widths'.*allowed: depths, embed_dims, head_dim, heads"):
        ss.get_space("vit_tiny", widths=(8,))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"resolution": 18}, "resolution % patch_size == 0"),
        ({"embed_dims": [96, 64]}, "embed_dims must be .*strictly increasing"),
        ({"heads": []}, "heads must be a non-empty"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"mlp_ratios": (2, 3.5)}, "mlp_ratios must be"),
    ],
)
def test_bad_override_values(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidSpaceConfig, match=match):
        ss.get_space("vit_tiny", **overrides)


def test_overrides_reshape_the_space() -> None:
    s = ss.get_space("vit_tiny", num_classes=5, resolution=32, in_channels=1, depths=[1, 2], embed_dims=[32])
    arch = s.sample(seed=1)
    assert s.input_shape(arch) == (1, 32, 32) and len(arch["heads"]) == 2
    assert s.spec() == {"name": "vit_tiny", "num_classes": 5, "resolution": 32, "in_channels": 1,
                        "depths": [1, 2], "embed_dims": [32]}  # fmt: skip
    net = s.build_supernet().eval()
    net.set_active(arch)
    with torch.no_grad():
        assert net(torch.randn(3, 1, 32, 32)).shape == (3, 5)


# ----- costs -----------------------------------------------------------------------------------
def test_cost_matches_flop_counter_and_numel(space: ViTSpace) -> None:
    torch.manual_seed(0)
    net = space.build_supernet().eval()
    for arch in _archs(space, 50, seed=1):
        sub = net.extract(arch).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            sub(torch.randn(1, *space.input_shape(arch)))
        cost = space.cost(arch)
        assert cost["macs"] == counter.get_total_flops() // 2, arch
        assert cost["params"] == sum(p.numel() for p in sub.parameters()), arch


def test_activation_bytes_consistent_with_hooks(space: ViTSpace) -> None:
    """The model counts every op's inputs and outputs plus the residual stream, so it lies
    between the largest leaf module's in+out bytes and twice that."""
    torch.manual_seed(0)
    net = space.build_supernet().eval()
    for arch in _archs(space, 10, seed=2):
        sub = net.extract(arch).eval()
        seen: list[int] = []

        def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            seen.append(4 * (sum(t.numel() for t in inputs) + output.numel()))

        handles = [m.register_forward_hook(hook) for m in sub.modules() if not list(m.children())]
        with torch.no_grad():
            sub(torch.randn(1, *space.input_shape(arch)))
        for h in handles:
            h.remove()
        measured, modelled = max(seen), space.cost(arch)["activation_bytes"]
        assert measured <= modelled <= 2 * measured, (arch, measured, modelled)
    assert space.cost(space.smallest())["activation_bytes"] < space.cost(space.largest())["activation_bytes"]


# ----- supernet --------------------------------------------------------------------------------
def test_extract_matches_supernet(space: ViTSpace, net: ViTSupernet) -> None:
    for arch in _archs(space, 20, seed=3):
        sub = net.extract(arch)
        assert isinstance(sub, ViTSubnet) and not sub.training
        assert len(sub.blocks) == arch["depth"]
        x = _input(space, arch)
        net.set_active(arch)
        with torch.no_grad():
            ref = sub(x)
            assert ref.abs().max() > 1e-2  # the comparison is not between near-zero outputs
            torch.testing.assert_close(net(x), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(net(x), ref, rtol=0, atol=1e-5)  # autograd on: uncached views
        again = net.extract()  # default: the active arch
        assert again is not sub and again.blocks[0].q.out_features == sub.blocks[0].q.out_features


def test_extracted_module_is_static_and_independent(space: ViTSpace, net: ViTSupernet) -> None:
    arch = {"embed_dim": 64, "depth": 3, "heads": [2, 1, 4, 4], "mlp_ratio": [3, 4, 2, 2]}
    sub = net.extract(arch)
    kinds = {type(m) for m in sub.modules()}
    plain = {nn.Conv2d, nn.Linear, nn.LayerNorm, nn.GELU}
    assert kinds <= {ViTSubnet, type(sub.blocks), type(sub.blocks[0]), *plain}
    supernet_ptrs = {p.untyped_storage().data_ptr() for p in net.parameters()}
    assert not any(p.untyped_storage().data_ptr() in supernet_ptrs for p in sub.parameters())
    assert sub.blocks[1].q.weight.shape == (16, 64) and sub.blocks[1].fc1.weight.shape == (256, 64)
    before = net.blocks[0].q.weight.clone()
    with torch.no_grad():
        sub.blocks[0].q.weight.add_(1.0)
    torch.testing.assert_close(net.blocks[0].q.weight, before, rtol=0, atol=0)
    clone = ViTSubnet(3, 10, 16, 4, 64, (2, 1, 4), (192, 256, 128), 16)
    clone.load_state_dict(sub.state_dict())  # rebuilds from plain constructor args


def test_reorder_channels_keeps_largest_subnet(space: ViTSpace, net: ViTSupernet) -> None:
    x = _input(space, space.largest(), batch=4)
    net.set_active(space.largest())
    small = {"embed_dim": 96, "depth": 4, "heads": [1] * 4, "mlp_ratio": [2] * 4}
    with torch.no_grad():
        before = net(x)
        net.set_active(small)
        small_before = net(x)
        net.reorder_channels()
        small_after = net(x)
        net.set_active(space.largest())
        torch.testing.assert_close(net(x), before, rtol=0, atol=1e-5)
    assert not torch.allclose(small_before, small_after)  # smaller subnets now keep other units
    for blk in net.blocks:
        imp = blk.fc2.weight.abs().sum(dim=0)
        assert bool((imp[:-1] >= imp[1:]).all())
        head_imp = blk.proj.weight.abs().view(96, 4, 16).sum(dim=(0, 2))
        assert bool((head_imp[:-1] >= head_imp[1:]).all())


def test_training_steps_update_shared_slices(space: ViTSpace) -> None:
    torch.manual_seed(0)
    net = space.build_supernet().train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    arch = {"embed_dim": 48, "depth": 2, "heads": [2, 1, 4, 4], "mlp_ratio": [2, 3, 4, 4]}
    net.set_active(arch)
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    x, y = _input(space, arch, batch=8), torch.randint(0, 10, (8,))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    q, fc1 = net.blocks[0].q.weight, net.blocks[0].fc1.weight
    assert not torch.equal(q[:32, :48], start["blocks.0.q.weight"][:32, :48])  # active slice trained
    assert torch.equal(q[32:], start["blocks.0.q.weight"][32:])  # inactive heads untouched
    assert torch.equal(q[:, 48:], start["blocks.0.q.weight"][:, 48:])  # inactive width untouched
    assert not torch.equal(fc1[:96, :48], start["blocks.0.fc1.weight"][:96, :48])
    assert torch.equal(fc1[96:], start["blocks.0.fc1.weight"][96:])
    assert torch.equal(net.blocks[2].fc1.weight, start["blocks.2.fc1.weight"])  # inactive layer
    assert net.blocks[3].q.weight.grad is None or not net.blocks[3].q.weight.grad.any()


def test_cached_weights_follow_updates_and_loads(space: ViTSpace, net: ViTSupernet) -> None:
    arch = {"embed_dim": 64, "depth": 3, "heads": [2, 2, 1, 4], "mlp_ratio": [2, 3, 4, 4]}
    net.set_active(arch)
    x = _input(space, arch)
    with torch.no_grad():
        net(x)  # fills the cache
        net.blocks[1].fc1.weight.mul_(0.5)  # in-place update bumps the version counter
        torch.testing.assert_close(net(x), net.extract().eval()(x), rtol=0, atol=1e-5)
        other = space.build_supernet().eval()
        other.set_active(arch)
        other(x)
        other.load_state_dict(net.state_dict())
        torch.testing.assert_close(other(x), net(x), rtol=0, atol=1e-5)
        net.double()
        assert net(x.double()).dtype == torch.float64
