"""NB201 structural features: `canonical` (dead edges removed) and `features` (live-cell summary)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import search_spaces as ss
from search_spaces import InvalidArch

pytestmark = pytest.mark.skipif("nb201" not in ss.list_spaces(), reason="nb201 space not available")

SMALL = {"C": 4, "N": 1, "resolution": 8}


def arch(text: str) -> dict:
    return ss.get_space("nb201").from_str(text)


def named_features(text: str) -> dict[str, float]:
    """`features` of the cell `text`, keyed by `feature_names`."""
    space = ss.get_space("nb201")
    return dict(zip(space.feature_names(), space.features(arch(text)), strict=True))


# Node 1 is fed but feeds nothing that reaches node 3: edge 1<-0 is dead.
DEAD_BRANCH = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
# Node 3 is fed only from node 2, which no live edge feeds: no path, the cell outputs zeros.
NO_PATH = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|"
FULL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_features_shape_range_and_names() -> None:
    space = ss.get_space("nb201")
    names = space.feature_names()
    assert len(names) == len(set(names)) == 13
    for seed in range(50):
        f = space.features(space.sample(seed=seed))
        assert f.shape == (len(names),) and f.dtype == np.float64
        assert ((f >= 0) & (f <= 1)).all()


def test_canonical_removes_dead_edges_only() -> None:
    space = ss.get_space("nb201")
    assert space.canonical(arch(DEAD_BRANCH))["edges"] == ["none"] * 3 + ["skip_connect", "none", "none"]
    assert space.canonical(arch(NO_PATH))["edges"] == ["none"] * 6
    assert space.canonical(arch(FULL)) == arch(FULL)  # every edge of FULL is live
    for seed in range(200):
        a = space.sample(seed=seed)
        c = space.canonical(a)
        assert space.canonical(c) == c
        assert all(x == y or y == "none" for x, y in zip(a["edges"], c["edges"]))
        np.testing.assert_array_equal(space.features(a), space.features(c))


def test_feature_values_by_hand() -> None:
    f = named_features(FULL)
    # Paths: 0-3 skip; 0-1-3 c3,c3; 0-2-3 c3,skip; 0-1-2-3 c3,pool,skip.
    assert f["count.nor_conv_3x3"] == pytest.approx(3 / 6) and f["count.skip_connect"] == pytest.approx(2 / 6)
    assert f["live_paths"] == 1.0 and f["disconnected"] == 0.0
    assert f["max_path_convs"] == pytest.approx(2 / 3) and f["min_path_convs"] == 0.0
    assert f["skip_path"] == 1.0 and f["convfree_paths"] == pytest.approx(1 / 4)
    assert f["mean_path_convs"] == pytest.approx((0 + 2 + 1 + 1) / 4 / 3)
    assert f["input_conv3x3"] == pytest.approx(2 / 3)  # edges 0-1 and 0-2; 0-3 is a skip
    g = named_features(NO_PATH)
    assert g["disconnected"] == 1.0 and sum(g.values()) == 1.0


def test_input_conv3x3_tells_apart_cells_that_differ_only_in_where_the_3x3_sits() -> None:
    """Two NB201 cells with 83.52 and 80.44 validation accuracy and the same MACs: every other
    feature is equal; only whether the 3x3 conv is fed by the input differs."""
    tail = "|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
    best = named_features("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1" + tail)
    worse = named_features("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1" + tail)
    assert {k for k in best if best[k] != worse[k]} == {"input_conv3x3"}
    assert best["input_conv3x3"] == pytest.approx(1 / 3) and worse["input_conv3x3"] == 0.0


def test_invalid_arch_raises() -> None:
    space = ss.get_space("nb201")
    with pytest.raises(InvalidArch):
        space.features({"edges": ["conv_5x5"] * 6})
    with pytest.raises(InvalidArch):
        space.canonical({"edges": ["none"] * 5})


@pytest.mark.parametrize("seed", range(8))
def test_canonical_cell_computes_the_same_function(seed: int) -> None:
    """Dead edges never reach the output: same weights, same logits (eval mode)."""
    space = ss.get_space("nb201", **SMALL)
    rng = np.random.default_rng(seed)
    # Bias towards 'none' so that dead edges are common.
    a = {"edges": [str(rng.choice(["none", "none", *space.choices()[0].options[1:]])) for _ in range(6)]}
    supernet = space.build_supernet().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = supernet.extract(a).eval()(x)
        ref = supernet.extract(space.canonical(a)).eval()(x)
    torch.testing.assert_close(out, ref)
