"""Structural features of a NAS-Bench-201 cell, for accuracy predictors.

The one-hot encoding treats all 6 edges alike, but an edge only matters when it lies on an
input-to-output path of non-'none' ops: edges off every such path are dead, and many cells
collapse to the same effective network (15,625 cells, 9,445 distinct live cells, 341 with no
path at all, which train to chance accuracy). The features below describe the live cell only
(op counts, paths, conv depth), scaled to [0, 1], so that a predictor needs no feature scaling
and equivalent cells get equal features.

Where the 3x3 convs sit matters too: among the cells on the accuracy-vs-MACs front whose other
features are equal, those with the 3x3 conv on an edge leaving the input train best (at 5.10e7
MACs, 83.52 against a group mean of 81.63), hence ``input_conv3x3``. With it the predictor
sampler's hypervolume at 300 evaluations on that front (median of seeds 5-9, which were not used
to choose it) rose from 0.9993 to 0.9996 (benchmarks/search_quality.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""(to, from) per edge, as in `search_spaces._nb201.EDGES`."""

PATHS: tuple[tuple[int, ...], ...] = ((0, 3), (0, 1, 3), (0, 2, 3), (0, 1, 2, 3))
"""Every input-to-output node path of the 4-node cell."""

_LIVE_OPS = ("skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
_CONVS = ("nor_conv_1x1", "nor_conv_3x3")

FEATURE_NAMES: tuple[str, ...] = (
    *(f"count.{op}" for op in _LIVE_OPS),  # live edges with this op / 6
    "live_paths",  # input-to-output paths of non-'none' ops / 4
    "disconnected",  # 1 when no path reaches the output (the cell outputs zeros)
    "max_path_convs",  # most convs on one live path / 3 (depth of the deepest branch)
    "min_path_convs",  # fewest convs on one live path / 3 (0: a conv-free shortcut exists)
    "max_path_conv3x3",  # most 3x3 convs on one live path / 3
    "skip_path",  # 1 when a path of skip_connects only (an identity shortcut) exists
    "convfree_paths",  # live paths without a conv / 4
    "mean_path_convs",  # mean convs per live path / 3
    "input_conv3x3",  # live edges leaving the cell input that are 3x3 convs / 3
)


def live_edges(ops: Sequence[str]) -> list[bool]:
    """Per edge: non-'none', fed from the input and feeding the output through non-'none' edges."""
    reach_in = {0}
    for (dst, src), op in zip(EDGES, ops, strict=True):  # EDGES is in topological order
        if op != "none" and src in reach_in:
            reach_in.add(dst)
    reach_out = {3}
    for (dst, src), op in reversed(list(zip(EDGES, ops, strict=True))):
        if op != "none" and dst in reach_out:
            reach_out.add(src)
    return [op != "none" and src in reach_in and dst in reach_out for (dst, src), op in zip(EDGES, ops)]


def canonical_ops(ops: Sequence[str]) -> list[str]:
    """`ops` with every dead edge (see `live_edges`) set to 'none': the effective cell."""
    return [op if live else "none" for op, live in zip(ops, live_edges(ops), strict=True)]


def cell_features(ops: Sequence[str]) -> np.ndarray:
    """`FEATURE_NAMES` of the cell with edge ops `ops` (EDGES order), float64 in [0, 1]."""
    live = canonical_ops(ops)
    edge = {e: op for e, op in zip(EDGES, live, strict=True)}
    paths = [[edge[(p[i + 1], p[i])] for i in range(len(p) - 1)] for p in PATHS]
    paths = [seq for seq in paths if "none" not in seq]
    convs = [sum(op in _CONVS for op in seq) for seq in paths]
    conv3 = [sum(op == "nor_conv_3x3" for op in seq) for seq in paths]
    values = [
        *(sum(op == name for op in live) / len(EDGES) for name in _LIVE_OPS),
        len(paths) / len(PATHS),
        float(not paths),
        max(convs, default=0) / 3,
        min(convs, default=0) / 3,
        max(conv3, default=0) / 3,
        float(any(all(op == "skip_connect" for op in seq) for seq in paths)),
        sum(c == 0 for c in convs) / len(PATHS),
        (sum(convs) / len(convs) if convs else 0.0) / 3,
        sum(op == "nor_conv_3x3" for (_, src), op in edge.items() if src == 0) / 3,
    ]
    return np.asarray(values, dtype=np.float64)
