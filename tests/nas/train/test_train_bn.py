"""BN recalibration writes the calibration data's statistics for the active channels."""

from __future__ import annotations

import torch
from torch import nn

import search_spaces as ss
from nas.train import batchnorm_layers, recalibrate_bn
from search_spaces._elastic import DynamicBatchNorm2d


def _capture_inputs(net: nn.Module) -> tuple[dict[str, list[torch.Tensor]], list]:
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, DynamicBatchNorm2d):
            hooks.append(
                m.register_forward_hook(
                    lambda mod, inp, out, n=name: seen.setdefault(n, []).append(inp[0].detach())
                )
            )
    return seen, hooks


def test_recalibrated_stats_are_the_calibration_batch_statistics() -> None:
    torch.manual_seed(0)
    space = ss.get_space("mbv3_tiny", in_channels=1, resolutions=[12])
    net = space.build_supernet()
    arch = space.sample(seed=3)
    arch["e"] = [3] * len(arch["e"])  # the narrowest middle width: a slice of every shared BN
    batches = [torch.randn(16, 1, 12, 12) for _ in range(3)]
    seen, hooks = _capture_inputs(net)
    assert recalibrate_bn(net, batches, arch) == 3
    for h in hooks:
        h.remove()
    assert not net.training
    checked = 0
    for name, inputs in seen.items():
        bn = net.get_submodule(name).bn
        c = inputs[0].shape[1]
        mean = torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0)
        var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs]).mean(0)
        torch.testing.assert_close(bn.running_mean[:c], mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var[:c], var, rtol=1e-4, atol=1e-5)
        if c < bn.num_features:  # channels outside the subnet are reset, not left stale
            assert torch.all(bn.running_mean[c:] == 0) and torch.all(bn.running_var[c:] == 1)
            checked += 1
        assert bn.momentum == space.cfg.bn_momentum  # restored
    assert checked > 0


def test_single_batch_gives_exact_statistics_and_changes_eval_outputs() -> None:
    torch.manual_seed(1)
    space = ss.get_space("nb201", in_channels=1, resolution=8, C=8, N=1)
    net = space.build_supernet()
    x = torch.randn(32, 1, 8, 8) * 3 + 2
    before = [bn.running_mean.clone() for bn in batchnorm_layers(net)]
    recalibrate_bn(net, [x], space.largest())
    stem_bn = net.stem[1]
    h = net.stem[0](x)
    torch.testing.assert_close(stem_bn.running_mean, h.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stem_bn.running_var, h.var((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert any(
        not torch.equal(b, bn.running_mean) for b, bn in zip(before, batchnorm_layers(net), strict=True)
    )


def test_no_batchnorm_is_a_no_op() -> None:
    space = ss.get_space("vit_tiny", in_channels=1)
    net = space.build_supernet()
    assert recalibrate_bn(net, [torch.randn(2, 1, 16, 16)], space.smallest()) == 0
    assert net.active_arch == space.smallest()
