"""Elastic MobileNetV3 spaces: exact agreement with Once-for-All, elastic ops, channel sorting."""

from __future__ import annotations

import re
import sys
import types

import pytest
import torch

import search_spaces as ss
from search_spaces._elastic import make_divisible

OFA_EXAMPLE = {
    "ks": [5, 7, 5, 5, 3, 3, 3, 7, 5, 5, 3, 7, 7, 3, 3, 3, 5, 5, 5, 5],
    "e": [4, 3, 4, 4, 4, 6, 3, 4, 4, 3, 4, 3, 3, 6, 6, 6, 4, 3, 4, 4],
    "d": [2, 3, 2, 4, 3],
    "r": [224],
}


def test_issue_example_counts_exactly_as_ofa() -> None:
    space = ss.get_space("ofa_mbv3_w10")
    arch = space.from_ofa({"wid": None, **OFA_EXAMPLE})
    cost = space.cost(arch)
    assert cost["params"] == 5_029_656
    assert cost["macs"] == 255_502_624


def test_ofa_layouts() -> None:
    w10, w12 = ss.get_space("ofa_mbv3_w10").cfg, ss.get_space("ofa_mbv3_w12").cfg
    assert (w10.stem_width, w10.first_block_width, w10.stage_widths) == (16, 16, (24, 40, 80, 112, 160))
    assert (w12.stem_width, w12.first_block_width, w12.stage_widths) == (24, 24, (32, 48, 96, 136, 192))
    assert (w10.final_expand_width, w10.last_channel, w12.final_expand_width, w12.last_channel) == (960, 1280, 1152, 1536)
    assert w10.resolutions == tuple(range(128, 225, 4)) and w12.resolutions == tuple(range(160, 225, 4))
    assert w10.stage_se == (False, True, False, True, True)
    assert w10.stage_acts == ("relu", "relu", "h_swish", "h_swish", "h_swish")


def test_make_divisible_matches_ofa() -> None:
    assert [make_divisible(v) for v in (19.2, 28.8, 134.4, 72, 4)] == [24, 32, 136, 72, 8]


def test_from_ofa_and_back() -> None:
    space = ss.get_space("ofa_mbv3_w12")
    arch = space.from_ofa({"wid": None, **OFA_EXAMPLE})
    assert arch["r"] == 224 and space.to_ofa(arch) == {"wid": None, **OFA_EXAMPLE}
    with pytest.raises(ss.InvalidArch, match=r"ks\[3\] = 4; allowed: 3, 5, 7"):
        space.from_ofa({**OFA_EXAMPLE, "ks": [*OFA_EXAMPLE["ks"][:3], 4, *OFA_EXAMPLE["ks"][4:]]})
    with pytest.raises(ss.InvalidArch, match="r = 128; allowed: 160"):
        space.from_ofa({**OFA_EXAMPLE, "r": [128]})
    with pytest.raises(ss.InvalidArch, match="wid"):
        space.from_ofa({**OFA_EXAMPLE, "wid": 1})
    with pytest.raises(ss.InvalidArch, match="single resolution"):
        space.from_ofa({**OFA_EXAMPLE, "r": [160, 224]})
    with pytest.raises(ss.InvalidArch, match="a list of 20 values"):
        space.from_ofa({**OFA_EXAMPLE, "e": [3] * 19})


def test_inactive_blocks_do_not_change_id_or_encoding() -> None:
    space = ss.get_space("mbv3_tiny")
    arch = space.smallest()  # depth 1 everywhere: blocks 1, 2 of each stage are inactive
    other = {**arch, "ks": [arch["ks"][0], 7, 7, *arch["ks"][3:]]}
    assert space.arch_id(arch) == space.arch_id(other)
    assert (space.encode(arch) == space.encode(other)).all()
    deeper = {**other, "d": [2, *arch["d"][1:]]}
    assert space.arch_id(deeper) != space.arch_id(arch)


def test_layers_follow_ofa_block_shapes() -> None:
    space = ss.get_space("ofa_mbv3_w12")
    arch = space.from_ofa({"wid": None, **OFA_EXAMPLE})
    layers = space.layers(arch)
    assert [lay.kind for lay in layers[:2]] == ["first_conv", "expanded_conv"]
    assert layers[0].in_shape == (224, 224, 3) and layers[0].out_shape == (112, 112, 24)
    assert layers[2].in_shape == (112, 112, 24) and layers[2].out_shape == (56, 56, 32)
    assert layers[2].mid == make_divisible(round(24 * 4)) and layers[2].stride == 2 and not layers[2].idskip
    assert [lay.kind for lay in layers[-4:]] == ["final_expand", "pool", "feature_mix", "logits"]
    assert len(layers) == 2 + sum(arch["d"]) + 4
    assert layers[-4].in_shape == (7, 7, 192) and layers[-1].out_shape == (1, 1, 1000)


@pytest.mark.parametrize("name", ["mbv3_tiny", "ofa_mbv3_w10"])
def test_reorder_channels_keeps_the_largest_subnet(name: str) -> None:
    space = ss.get_space(name, resolutions=[32]) if name == "mbv3_tiny" else ss.get_space(name, resolutions=[128])
    torch.manual_seed(0)
    net = space.build_supernet().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, *space.input_shape(space.largest()))
    small = space.sample(seed=0)
    net.set_active(space.largest())
    with torch.no_grad():
        before = net(x)
        net.set_active(small)
        small_before = net(x)
        net.reorder_channels()
        net.set_active(space.largest())
        after = net(x)
        net.set_active(small)
        small_after = net(x)
    assert (before - after).abs().max() <= 1e-5
    assert (small_before - small_after).abs().max() > 1e-4  # smaller subnets now keep other channels
    for block in net.blocks:
        imp = block.pl_conv.conv.weight.abs().sum(dim=(0, 2, 3))
        assert (imp[:-1] >= imp[1:]).all()


def test_eval_cache_follows_weight_updates() -> None:
    space = ss.get_space("mbv3_tiny")
    torch.manual_seed(0)
    net = space.build_supernet()
    arch = space.sample(seed=2)
    net.set_active(arch)
    x = torch.randn(2, *space.input_shape(arch))
    net.eval()
    with torch.no_grad():
        first = net(x)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net(x).sum().backward()
    opt.step()
    net.eval()
    with torch.no_grad():
        second = net(x)
        reference = net.extract(arch).eval()(x)
    assert (first - second).abs().max() > 1e-4
    assert (second - reference).abs().max() <= 1e-5


def test_smaller_kernels_come_from_the_transformed_centre() -> None:
    space = ss.get_space("mbv3_tiny")
    net = space.build_supernet()
    dw = net.blocks[0].dw_conv
    with torch.no_grad():
        dw.transforms["7to5"].copy_(2 * torch.eye(25))
        dw.transforms["5to3"].copy_(3 * torch.eye(9))
    f3 = dw.active_filter(8, 3)
    assert torch.allclose(f3, 6 * dw.conv.weight[:8, :, 2:5, 2:5])


# ---------------------------------------------------------------------------------------------
# Cross-check against Once-for-All's own code (the `ofa` package from PyPI).


def _import_ofa() -> types.ModuleType:
    """Import OFA's network and counting code. Its data-loader subpackage targets an old torch
    (``torch._six``) and torchvision, neither of which the networks need, so it is replaced by an
    empty module before import; nothing that builds or counts networks is touched."""
    pytest.importorskip("ofa")
    sys.modules.setdefault("ofa.utils.my_dataloader", types.ModuleType("ofa.utils.my_dataloader"))
    from ofa.imagenet_classification.elastic_nn import networks

    return networks


def _ofa_to_ours(key: str) -> str:
    """Map an OFAMobileNetV3 state-dict key to ours."""
    rules = [
        (r"^blocks\.0\.conv\.", "first_block."),
        (r"^blocks\.(\d+)\.conv\.", lambda m: f"blocks.{int(m.group(1)) - 1}."),
        (r"inverted_bottleneck\.conv\.conv\.", "ib_conv.conv."),
        (r"inverted_bottleneck\.bn\.bn\.", "ib_bn.bn."),
        (r"depth_conv\.conv\.(\d+to\d+)_matrix", r"dw_conv.transforms.\1"),
        (r"depth_conv\.conv\.conv\.", "dw_conv.conv."),
        (r"depth_conv\.bn\.bn\.", "dw_bn.bn."),
        (r"depth_conv\.se\.fc\.", "se."),
        (r"point_linear\.conv\.conv\.", "pl_conv.conv."),
        (r"point_linear\.bn\.bn\.", "pl_bn.bn."),
        (r"^final_expand_layer\.", "head.final_expand_layer."),
        (r"^feature_mix_layer\.", "head.feature_mix_layer."),
        (r"^classifier\.linear\.", "head.classifier."),
    ]
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


@pytest.mark.slow
@pytest.mark.parametrize("name,width", [("ofa_mbv3_w10", 1.0), ("ofa_mbv3_w12", 1.2)])
def test_against_the_ofa_package(name: str, width: float) -> None:
    networks = _import_ofa()
    from ofa.utils import count_net_flops, count_parameters

    torch.manual_seed(0)
    ofa = networks.OFAMobileNetV3(
        n_classes=1000, width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    with torch.no_grad():  # non-trivial kernel transforms and BN statistics
        for k, t in ofa.state_dict().items():
            if k.endswith("_matrix"):
                t.add_(0.1 * torch.randn_like(t))
            elif k.endswith("running_var"):
                t.copy_(0.5 + torch.rand_like(t))
            elif k.endswith("running_mean"):
                t.copy_(0.1 * torch.randn_like(t))
    ofa.eval()
    space = ss.get_space(name)
    ours = space.build_supernet().eval()
    mapped = {_ofa_to_ours(k): v for k, v in ofa.state_dict().items()}
    assert set(mapped) == set(ours.state_dict())
    ours.load_state_dict(mapped, strict=True)

    for seed in range(6):
        arch = space.sample(seed=seed) if seed else space.largest()
        ofa_cfg = space.to_ofa(arch)
        ofa.set_active_subnet(ks=ofa_cfg["ks"], e=ofa_cfg["e"], d=ofa_cfg["d"])
        ours.set_active(arch)
        r = 128 if seed % 2 else arch["r"]  # networks are resolution-agnostic; keep it quick
        x = torch.randn(1, 3, r, r)
        with torch.no_grad():
            assert (ofa(x) - ours(x)).abs().max() <= 1e-5
        sub = ofa.get_active_subnet(preserve_weight=True)
        cost = space.cost(arch)
        assert cost["params"] == count_parameters(sub)
        # OFA sums its counts in float32 tensors, so large totals carry rounding of ~1e-7; the exact
        # integer count is checked against torch's FlopCounterMode in the contract suite.
        assert cost["macs"] == pytest.approx(count_net_flops(sub, (1, 3, arch["r"], arch["r"])), rel=1e-6, abs=0)
