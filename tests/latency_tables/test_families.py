"""Which op keys an architecture is made of, for every supported space family."""

from __future__ import annotations

import pytest
import torch

import latency_tables as lt
import search_spaces as ss
from tests.latency_tables.conftest import OFA_LUT

SPACES = [n for n in ("mbv3_tiny", "ofa_mbv3_w12", "nb201", "vit_tiny") if n in ss.list_spaces()]


@pytest.mark.parametrize("name", SPACES)
def test_all_keys_cover_random_archs(name: str) -> None:
    space = ss.get_space(name)
    keys = set(lt.all_keys(space))
    assert len(keys) == len(lt.all_keys(space))
    for seed in range(20):
        arch = space.sample(seed=seed)
        used = lt.op_keys(space, arch)
        assert used and set(used) <= keys
        assert lt.op_keys(space, arch) == used  # deterministic
    for arch in (space.smallest(), space.largest()):
        assert set(lt.op_keys(space, arch)) <= keys


def test_mbv3_keys_follow_layers() -> None:
    space = ss.get_space("mbv3_tiny")
    arch = space.smallest()
    keys = lt.op_keys(space, arch)
    assert len(keys) == len(space.layers(arch))
    assert keys[0] == "Conv-input:16x16x3-output:16x16x16"
    assert (
        keys[1]
        == "expanded_conv-input:16x16x16-output:16x16x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0"
    )
    assert (
        keys[2] == "expanded_conv-input:16x16x16-output:8x8x24-expand:48-kernel:3-stride:2-idskip:0-se:0-hs:0"
    )
    assert keys[-4:] == [
        "Conv_1-input:2x2x64-output:2x2x192",
        "AvgPool2D-input:2x2x192-output:1x1x192",
        "Conv_2-input:1x1x192-output:1x1x256",
        "Logits-input:1x1x256-output:10",
    ]
    # per resolution: stem, first block, 3 stages x 2 block shapes x 9 (kernel, expand), 4 head ops
    per_res = {r: set(lt.all_keys(space, [r])) for r in space.cfg.resolutions}
    assert all(len(keys) == 2 + 3 * 2 * 9 + 4 for keys in per_res.values())
    assert set(lt.all_keys(space)) == set().union(*per_res.values())


def test_ofa_w12_keys_match_the_note10_files() -> None:
    if not OFA_LUT.is_dir():
        pytest.skip("Once-for-All tables not available")
    import yaml

    space = ss.get_space("ofa_mbv3_w12")
    for r in (160, 224):
        with open(OFA_LUT / f"{r}_lookup_table.yaml") as fh:
            assert set(yaml.safe_load(fh)) == set(lt.all_keys(space, [r]))


def test_nb201_counts_adds_zeros_and_skips() -> None:
    space = ss.get_space("nb201")
    arch = space.from_str("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    keys = lt.op_keys(space, arch)
    shape = "32x32x16"
    first_cell = [k for k in keys if shape in k and not k.startswith(("nb201_stem", "resnet"))][:5]
    assert sorted(first_cell) == sorted(
        [
            f"nor_conv_3x3-input:{shape}-output:{shape}",
            f"avg_pool_3x3-input:{shape}-output:{shape}",
            f"nor_conv_1x1-input:{shape}-output:{shape}",
            f"nb201_zeros-input:{shape}",  # node 2 is fed only by 'none'
            f"nb201_add-input:{shape}",  # node 3 sums 3 inputs: 2 additions
        ]
    )
    n_cells = 3 * space.cfg.N
    assert len(keys) == 1 + n_cells * 6 + 2 + 1  # stem, cells (3 ops + 1 zeros + 2 adds), reductions, head
    assert keys[0] == "nb201_stem-input:32x32x3-output:32x32x16"
    assert keys[-1] == "nb201_head-input:8x8x64-output:10"
    assert "resnet_basicblock-input:32x32x16-output:16x16x32" in keys
    assert len(lt.all_keys(space)) == 1 + 3 * 5 + 2 + 1


def test_vit_keys() -> None:
    space = ss.get_space("vit_tiny")
    arch = {"embed_dim": 64, "depth": 2, "heads": [1, 4, 2, 2], "mlp_ratio": [2, 4, 3, 3]}
    assert lt.op_keys(space, arch) == [
        "patch_embed-input:16x16x3-output:16x64-patch:4",
        "transformer_layer-input:16x64-heads:1-head_dim:16-mlp:128",
        "transformer_layer-input:16x64-heads:4-head_dim:16-mlp:256",
        "vit_head-input:16x64-output:10",
    ]
    assert len(lt.all_keys(space)) == 3 + 27 + 3


def test_resolution_and_space_errors() -> None:
    with pytest.raises(
        ValueError, match=r"Resolution 17 is not allowed for space 'mbv3_tiny'; allowed: 16, 20, 24, 28, 32"
    ):
        lt.all_keys(ss.get_space("mbv3_tiny"), [16, 17])
    with pytest.raises(ValueError, match="Resolution 64"):
        lt.all_keys(ss.get_space("nb201"), [64])

    class Odd(ss.SearchSpace):  # a space no family handles
        pass

    Odd.__abstractmethods__ = frozenset()
    odd = Odd("odd")
    with pytest.raises(ValueError, match="'odd'.*supported: MBv3Space, NB201Space, ViTSpace"):
        lt.op_keys(odd, {})


@pytest.mark.parametrize("name", ["nb201", "vit_tiny", "mbv3_tiny"])
def test_every_key_builds_a_runnable_module(name: str) -> None:
    space = ss.get_space(name)
    keys = lt.all_keys(space, [16] if name == "mbv3_tiny" else None)
    with torch.inference_mode():
        for key in keys:
            module, inputs = lt.build_op(key, batch_size=2)
            out = module(*inputs)
            f = lt.parse_key(key).fields
            shape = f.get("output", f["input"])
            if len(shape) == 3 and out.dim() == 4:
                assert tuple(out.shape) == (2, shape[2], shape[0], shape[1]), key
            else:
                assert tuple(out.shape[1:]) == tuple(shape[-len(out.shape[1:]) :]), key


def test_blocks_equal_the_extracted_networks_blocks() -> None:
    space = ss.get_space("mbv3_tiny")
    arch = space.sample(seed=3)
    net = space.build_supernet().extract(arch)
    keys = lt.op_keys(space, arch)
    blocks = [net.first_conv, *net.blocks]
    for key, block in zip(keys, blocks, strict=False):
        built, _ = lt.build_op(key)
        assert [tuple(p.shape) for p in built.parameters()] == [tuple(p.shape) for p in block.parameters()], (
            key
        )


@pytest.mark.parametrize(
    "key, match",
    [
        ("expanded_conv-input:8x8x24-output:8x8x24-expand:72-kernel:3-stride:1-idskip:0-se:0-hs:0", "idskip"),
        (
            "expanded_conv-input:8x8x24-output:8x8x40-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0",
            "output size",
        ),
        ("expanded_conv-input:8x8x24-output:8x8x40-expand:72-kernel:4-stride:1-idskip:0-se:0-hs:0", "odd"),
        ("Conv-input:32x32x3-output:7x7x16", "no stride"),
        ("AvgPool2D-input:4x4x8-output:1x1x9", "keeps the width"),
        ("nor_conv_3x3-input:8x8x16-output:8x8x32", "keep shape"),
        ("patch_embed-input:16x16x3-output:15x64-patch:4", "tokens"),
    ],
)
def test_inconsistent_keys_do_not_build(key: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lt.build_op(key)
