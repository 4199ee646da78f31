"""NAS-Bench-201 space: benchmark strings, supernet/extract parity, analytic costs, errors."""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import search_spaces as ss
from search_spaces import InvalidArch, InvalidSpaceConfig
from search_spaces._nb201 import EDGES, OPS, NB201Space, NB201Supernet

# shared/ lies beside the checkout (as in CI).
CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "nb201_12epoch" / "nb201_12epoch_acc.csv"
SMALL = {"C": 4, "N": 2, "resolution": 8}
# Node 3 gets only 'none' edges: the cell outputs zeros although nodes 1 and 2 compute.
NONE_OUT = {"edges": ["nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "none", "none", "none"]}
# Every node reaches the output and both conv kinds appear.
LIVE = {
    "edges": ["nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1"]
}


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return ss.get_space("nb201")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def small() -> NB201Space:
    return ss.get_space("nb201", **SMALL)  # type: ignore[return-value]


def _warmed_supernet(space: ss.SearchSpace, seed: int = 0) -> NB201Supernet:
    """A supernet whose BN statistics and affine parameters are not at their init values."""
    torch.manual_seed(seed)
    net = space.build_supernet()
    assert isinstance(net, NB201Supernet)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        net.train()
        for i in range(6):
            net.set_active(space.sample(seed=seed + i))
            net(torch.randn(4, *space.input_shape(space.largest())))
    return net.eval()


def _flops_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2


def _numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----- registry, choices, strings ---------------------------------------------------------------
def test_registered_with_benchmark_choices(space: NB201Space) -> None:
    assert "nb201" in ss.list_spaces()
    names = [c.name for c in space.choices()]
    assert names == ["edge.1<-0", "edge.2<-0", "edge.2<-1", "edge.3<-0", "edge.3<-1", "edge.3<-2"]
    assert [c.field for c in space.choices()] == [f"edges[{k}]" for k in range(6)]
    assert all(c.options == OPS for c in space.choices())
    assert OPS[0] == "none" and OPS[-1] == "nor_conv_3x3"
    assert space.input_shape(space.largest()) == (3, 32, 32)
    assert ss.get_space(**space.spec()).cost(space.largest()) == space.cost(space.largest())


def test_example_string_maps_to_edge_order(space: NB201Space) -> None:
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    arch = space.from_str(s)
    assert arch == {
        "edges": [
            "nor_conv_3x3",
            "nor_conv_3x3",
            "avg_pool_3x3",
            "skip_connect",
            "nor_conv_3x3",
            "skip_connect",
        ]
    }
    assert space.arch_str(arch) == s
    assert space.from_str(" " + s + "\n") == arch
    assert space.from_str('{"edges": ' + str(arch["edges"]).replace("'", '"') + "}") == arch


def test_all_benchmark_strings_round_trip(space: NB201Space) -> None:
    with CSV.open(newline="") as fh:
        strings = [row["arch"] for row in csv.DictReader(fh)]
    assert len(strings) == 15_625
    ids = set()
    for s in strings:
        arch = space.from_str(s)
        assert space.arch_str(arch) == s
        ids.add(space.arch_id(arch))
    assert len(ids) == 15_625 == len(OPS) ** len(EDGES)


def test_base_methods(small: NB201Space) -> None:
    rng = np.random.default_rng(0)
    a, b = small.sample(rng), small.sample(rng)
    assert small.validate(a) == a
    assert small.encode(a).shape == (30,) and small.encode(a).sum() == 6
    assert small.arch_id(small.mutate(a, seed=1)) != small.arch_id(a)
    child = small.crossover(a, b, seed=2)
    assert all(x in (p, q) for x, p, q in zip(child["edges"], a["edges"], b["edges"], strict=True))
    assert small.describe()["size"] == 15_625


# ----- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "field", "allowed"),
    [
        ({"edges": ["nor_conv_3x3"] * 5 + ["conv_5x5"]}, "edges[5]", "'nor_conv_3x3'"),
        ({"edges": ["none"] * 5}, "edges", "a list of 6 values"),
        ({"edges": "none"}, "edges", "a list of 6 values"),
        ({}, "edges", "the keys edges"),
        ({"edges": ["none"] * 6, "ks": [3]}, "ks", "only the keys edges"),
        (["none"] * 6, "arch", "JSON object"),
        ({"edges": ["none", 3, "none", "none", "none", "none"]}, "edges[1]", "'avg_pool_3x3'"),
    ],
)
def test_invalid_arch(small: NB201Space, arch: Any, field: str, allowed: str) -> None:
    with pytest.raises(InvalidArch) as err:
        small.validate(arch)
    assert err.value.field == field
    assert allowed in str(err.value)
    with pytest.raises(InvalidArch):
        small.cost(arch)
    with pytest.raises(InvalidArch):
        small.build_supernet().set_active(arch)


@pytest.mark.parametrize(
    ("text", "field", "allowed"),
    [
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "edges[0] (1<-0)", "'nor_conv_3x3'"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|max_pool~2|", "edges[5] (3<-2)", "'skip_connect'"),
        ("|none~0|+|none~0|none~1|", "arch", "3 nodes"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2", "<op>~1"),
        ("|none~0|+|none~0|none~1|+|none~0|none~2|none~1|", "node 3 input 1", "<op>~0|<op>~1|<op>~2"),
        ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "node 1", "|<op>~0|"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 input 0", "<op>~0"),
        ("", "arch", "3 nodes"),
        ("{not json", "arch", "JSON object"),
    ],
)
def test_invalid_strings(small: NB201Space, text: str, field: str, allowed: str) -> None:
    with pytest.raises(InvalidArch) as err:
        small.from_str(text)
    assert err.value.field == field
    assert allowed in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"width_mult": 2}, "allowed: C, N, in_channels, num_classes, resolution"),
        ({"resolution": 30}, "resolution % 4 == 0"),
        ({"C": 0}, "`C` must be a positive int"),
        ({"N": True}, "`N` must be a positive int"),
        ({"num_classes": 10.0}, "`num_classes` must be a positive int"),
    ],
)
def test_bad_overrides(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidSpaceConfig, match=match):
        ss.get_space("nb201", **overrides)


# ----- supernet and extraction -------------------------------------------------------------------
def test_extract_matches_supernet(small: NB201Space) -> None:
    net = _warmed_supernet(small)
    rng = np.random.default_rng(1)
    archs = [small.sample(rng) for _ in range(20)] + [small.smallest(), small.largest(), NONE_OUT, LIVE]
    x = torch.randn(3, *small.input_shape(small.largest()))
    with torch.no_grad():
        for arch in archs:
            net.set_active(arch)
            assert net.active_arch == arch
            sub = net.extract()
            assert not sub.training
            torch.testing.assert_close(sub(x), net(x), atol=1e-5, rtol=0)


def test_extract_matches_supernet_at_defaults(space: NB201Space) -> None:
    net = _warmed_supernet(space)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for arch in (space.largest(), space.sample(seed=3)):
            net.set_active(arch)
            torch.testing.assert_close(net.extract(arch)(x), net(x), atol=1e-5, rtol=0)


def test_none_only_output_cell_is_zeros(small: NB201Space) -> None:
    net = _warmed_supernet(small)
    net.set_active(NONE_OUT)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(net.cells[0](x), torch.zeros_like(x))
        assert torch.equal(net.extract().cells[0](x), torch.zeros_like(x))


def test_extract_is_standalone(small: NB201Space) -> None:
    net = _warmed_supernet(small)
    sub = net.extract(LIVE)
    assert net.active_arch != LIVE  # extract(arch) does not change the active arch
    super_ptrs = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers()]}
    assert not any(t.untyped_storage().data_ptr() in super_ptrs for t in [*sub.parameters(), *sub.buffers()])
    assert not any(isinstance(m, NB201Supernet) or hasattr(m, "edges") for m in sub.modules())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = sub(x)
        for p in net.parameters():
            p.add_(1.0)
        assert torch.equal(sub(x), before)
        assert torch.equal(copy.deepcopy(sub)(x), before)
    assert _numel(sub) == small.cost(LIVE)["params"]


def test_extracted_keys_follow_benchmark(space: NB201Space) -> None:
    keys = set(space.build_supernet().extract(LIVE).state_dict())
    for key in (
        "stem.0.weight",
        "cells.0.layers.0.op.1.weight",  # nor_conv_3x3 on edge 1<-0
        "cells.0.layers.5.op.2.running_var",
        "cells.5.conv_a.op.1.weight",
        "cells.5.conv_b.op.2.bias",
        "cells.5.downsample.1.weight",
        "cells.16.layers.2.op.1.weight",
        "lastact.0.weight",
        "classifier.bias",
    ):
        assert key in keys
    assert not any(k.startswith("cells.0.layers.3.") or k.startswith("cells.0.layers.4.") for k in keys)
    assert max(int(k.split(".")[1]) for k in keys if k.startswith("cells.")) == 16  # 3N + 2 - 1


def test_matches_xautodl_reference(space: NB201Space) -> None:
    """Same outputs and parameter count as the benchmark's own TinyNetwork (when xautodl is installed)."""
    tiny = pytest.importorskip("xautodl.models.cell_infers.tiny_network")
    genotypes = pytest.importorskip("xautodl.models.cell_searchs.genotypes")
    net = _warmed_supernet(space)
    x = torch.randn(2, 3, 32, 32)
    for seed in range(3):
        arch = space.sample(seed=seed)
        ref = tiny.TinyNetwork(16, 5, genotypes.Structure.str2structure(space.arch_str(arch)), 10)
        sub = net.extract(arch)
        ref.load_state_dict(sub.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(ref.eval()(x)[1], sub(x), atol=1e-5, rtol=0)
        assert _numel(ref) == space.cost(arch)["params"]


def test_training_step_updates_only_selected_ops(small: NB201Space) -> None:
    torch.manual_seed(0)
    net = small.build_supernet().train()
    net.set_active(LIVE)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    after = net.state_dict()
    for i, cell in enumerate(net.cells):
        if not hasattr(cell, "edges"):
            key = f"cells.{i}.conv_a.op.1.weight"
            assert not torch.equal(after[key], before[key])
            continue
        for k, selected in enumerate(LIVE["edges"]):
            for name in ("nor_conv_1x1", "nor_conv_3x3"):
                prefix = f"cells.{i}.edges.{k}.{name}."
                keys = [key for key in before if key.startswith(prefix)]
                assert keys
                for key in keys:
                    changed = not torch.equal(after[key], before[key])
                    assert changed == (name == selected), key
    assert not torch.equal(after["stem.0.weight"], before["stem.0.weight"])
    assert not torch.equal(after["classifier.weight"], before["classifier.weight"])


# ----- costs -------------------------------------------------------------------------------------
def test_cost_matches_flop_counter_and_numel(small: NB201Space) -> None:
    net = small.build_supernet()
    rng = np.random.default_rng(2)
    archs = [small.sample(rng) for _ in range(50)] + [small.smallest(), small.largest(), NONE_OUT]
    shape = small.input_shape(small.largest())
    for arch in archs:
        sub = net.extract(arch).eval()
        cost = small.cost(arch)
        assert cost["macs"] == _flops_macs(sub, shape), arch
        assert cost["params"] == _numel(sub), arch


def test_cost_at_defaults_matches_benchmark(space: NB201Space) -> None:
    """NAS-Bench-201 reports 220.11 MFLOPs / 1.5315 M params (largest), 7.78 / 0.0733 (smallest)."""
    net = space.build_supernet()
    expected = ((space.largest(), 220_119_680, 1_531_546), (space.smallest(), 7_783_040, 73_306))
    for arch, macs, params in expected:
        sub = net.extract(arch).eval()
        assert space.cost(arch)["macs"] == macs == _flops_macs(sub, (3, 32, 32))
        assert space.cost(arch)["params"] == params == _numel(sub)
    arch = space.sample(seed=5)
    assert space.cost(arch)["macs"] == _flops_macs(net.extract(arch), (3, 32, 32))


def _hook_peak_bytes(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Largest (input + output) bytes of any leaf module in one batch-1 forward."""
    peak = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal peak
        peak = max(peak, sum(t.numel() * 4 for t in inputs) + output.numel() * 4)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return peak


def test_activation_bytes_consistent_with_hooks(small: NB201Space, space: NB201Space) -> None:
    for sp in (small, space):
        net = sp.build_supernet().eval()
        shape = sp.input_shape(sp.largest())
        for arch in [sp.sample(seed=s) for s in range(8)] + [sp.smallest(), sp.largest(), NONE_OUT]:
            measured = _hook_peak_bytes(net.extract(arch), shape)
            modelled = sp.cost(arch)["activation_bytes"]
            assert measured <= modelled <= 3 * measured, (arch, measured, modelled)
    c, r = 16, 32
    assert space.cost(space.largest())["activation_bytes"] == 5 * c * r * r * 4  # 3 nodes + sum + op output
    assert space.cost(space.largest())["activation_bytes"] > space.cost(space.smallest())["activation_bytes"]


def test_extract_keeps_dtype_and_mode(small: NB201Space) -> None:
    net = _warmed_supernet(small).double().train()
    sub = net.extract(LIVE)
    assert sub.training and all(p.dtype == torch.float64 and p.requires_grad for p in sub.parameters())
    net.eval()
    net.set_active(LIVE)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(sub.eval()(x), net(x), atol=1e-10, rtol=0)
