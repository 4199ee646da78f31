"""Which op keys a space's architectures are made of: one small adapter per space family.

An `OpFamily` answers two questions for the spaces it handles: the keys of one architecture
in execution order (repeats kept: the estimate is their sum), and every distinct key the space
can produce (what a table for the space must hold). Adapters are found by the space's type.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from latency_tables._keys import format_key
from search_spaces import SearchSpace
from search_spaces._mbv3 import MBv3Layer, MBv3Space
from search_spaces._nb201 import EDGES, NB201Space
from search_spaces._vit import ViTSpace

_MBV3_OPS = {
    "first_conv": "Conv",
    "final_expand": "Conv_1",
    "pool": "AvgPool2D",
    "feature_mix": "Conv_2",
    "logits": "Logits",
}


class OpFamily(abc.ABC):
    """Maps architectures of one family of spaces to op keys.

    Thread-safety: stateless; safe to share.
    """

    space_type: type[SearchSpace]

    @abc.abstractmethod
    def op_keys(self, space: SearchSpace, arch: Mapping[str, Any]) -> list[str]:
        """The keys of `arch`'s ops in execution order, one per op call (repeats kept).

        Raises:
            InvalidArch: `arch` is not an architecture of `space`.
        """

    @abc.abstractmethod
    def all_keys(self, space: SearchSpace, resolutions: Sequence[int] | None = None) -> list[str]:
        """Every distinct key an architecture of `space` can use, sorted.

        Args:
            resolutions: Input resolutions to cover (default: all the space allows).

        Raises:
            ValueError: a resolution the space does not allow (the message lists the allowed ones).
        """

    def resolutions(self, space: SearchSpace) -> tuple[int, ...]:
        """The input resolutions the space allows."""
        return (space.input_shape(space.smallest())[1],)

    def check_resolutions(self, space: SearchSpace, resolutions: Sequence[int] | None) -> tuple[int, ...]:
        allowed = self.resolutions(space)
        if resolutions is None:
            return allowed
        bad = [r for r in resolutions if r not in allowed]
        if bad or not resolutions:
            raise ValueError(
                f"Resolution {bad[0] if bad else '(none)'} is not allowed for space {space.name!r}; "
                f"allowed: {', '.join(map(str, allowed))}."
            )
        return tuple(sorted(set(resolutions)))


def mbv3_layer_key(layer: MBv3Layer) -> str:
    """OFA's key for one `MBv3Layer`."""
    if layer.kind == "expanded_conv":
        if layer.has_expand_conv and layer.mid == layer.in_shape[2]:
            raise ValueError(
                f"A block with a 1x1 expansion conv and expand width == input width ({layer.mid}) has no "
                "OFA key (OFA's keys read that as 'no expansion conv')."
            )
        return format_key(
            "expanded_conv",
            input=layer.in_shape,
            output=layer.out_shape,
            expand=layer.mid,
            kernel=layer.kernel,
            stride=layer.stride,
            idskip=layer.idskip,
            se=layer.se,
            hs=layer.hs,
        )
    out = layer.out_shape[2:] if layer.kind == "logits" else layer.out_shape
    return format_key(_MBV3_OPS[layer.kind], input=layer.in_shape, output=out)


class MBv3Family(OpFamily):
    """Once-for-All's MobileNetV3 family (`MBv3Space`): OFA's keys."""

    space_type = MBv3Space

    def op_keys(self, space: SearchSpace, arch: Mapping[str, Any]) -> list[str]:
        assert isinstance(space, MBv3Space)
        return [mbv3_layer_key(layer) for layer in space.layers(arch)]

    def resolutions(self, space: SearchSpace) -> tuple[int, ...]:
        assert isinstance(space, MBv3Space)
        return tuple(sorted(space.cfg.resolutions))

    def all_keys(self, space: SearchSpace, resolutions: Sequence[int] | None = None) -> list[str]:
        # A block's shapes depend only on the resolution and the strides before it, never on
        # the kernels, expands or depths chosen elsewhere: the uniform (kernel, expand) archs
        # at full depth therefore visit every distinct block.
        assert isinstance(space, MBv3Space)
        c = space.cfg
        keys: set[str] = set()
        for r in self.check_resolutions(space, resolutions):
            for k, e in itertools.product(c.ks_list, c.expand_list):
                n = space.num_blocks
                arch = {"ks": [k] * n, "e": [e] * n, "d": [max(c.depth_list)] * c.num_stages, "r": r}
                keys.update(self.op_keys(space, arch))
        return sorted(keys)


class NB201Family(OpFamily):
    """NAS-Bench-201 (`NB201Space`): one key per edge op, node addition, reduction, stem and head.

    Skip connections cost no call; a node with n > 1 inputs costs n - 1 additions; a node fed only
    by 'none' edges costs one zeros tensor; 'none' edges cost nothing (as the benchmark's cells run).
    """

    space_type = NB201Space

    def _cell_keys(self, ops: Sequence[str], shape: tuple[int, int, int]) -> list[str]:
        keys = []
        for op in ops:
            if op in ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"):
                keys.append(format_key(op, input=shape, output=shape))
        for node in (1, 2, 3):
            terms = sum(1 for (dst, _), op in zip(EDGES, ops, strict=True) if dst == node and op != "none")
            keys += [format_key("nb201_add", input=shape)] * max(terms - 1, 0)
            if terms == 0:
                keys.append(format_key("nb201_zeros", input=shape))
        return keys

    def _layout(self, space: NB201Space) -> list[tuple[str, tuple[int, int, int], tuple[int, int, int]]]:
        c = space.cfg
        r = c.resolution
        layout, c_prev = [], c.C  # the benchmark's skeleton: N cells, reduction, N cells, reduction, N cells
        for stage, width in enumerate((c.C, 2 * c.C, 4 * c.C)):
            if stage:
                layout.append(("reduce", c_prev, width))
            layout += [("cell", width, width)] * c.N
            c_prev = width
        out = []
        for kind, c_in, c_out in layout:
            if kind == "reduce":
                out.append((kind, (r, r, c_in), (r // 2, r // 2, c_out)))
                r //= 2
            else:
                out.append((kind, (r, r, c_in), (r, r, c_out)))
        return out

    def op_keys(self, space: SearchSpace, arch: Mapping[str, Any]) -> list[str]:
        assert isinstance(space, NB201Space)
        ops = tuple(space.validate(arch)["edges"])
        memo = self.__dict__.setdefault("_memo", {})  # searches score the same cells many times
        key = (repr(space.cfg), ops)
        if key not in memo:
            if len(memo) > 100_000:
                memo.clear()
            memo[key] = self._expand_cells(space, ops)
        return list(memo[key])

    def _expand_cells(self, space: NB201Space, ops: Sequence[str]) -> list[str]:
        c = space.cfg
        r = c.resolution
        keys = [format_key("nb201_stem", input=(r, r, c.in_channels), output=(r, r, c.C))]
        shape = (r, r, c.C)
        for kind, shape_in, shape_out in self._layout(space):
            if kind == "reduce":
                keys.append(format_key("resnet_basicblock", input=shape_in, output=shape_out))
            else:
                keys += self._cell_keys(ops, shape_in)
            shape = shape_out
        keys.append(format_key("nb201_head", input=shape, output=(c.num_classes,)))
        return keys

    def all_keys(self, space: SearchSpace, resolutions: Sequence[int] | None = None) -> list[str]:
        assert isinstance(space, NB201Space)
        self.check_resolutions(space, resolutions)
        # Every op on every edge, plus a cell whose nodes all have several inputs (additions) and
        # one whose nodes have none (zeros), cover all distinct keys.
        cells = [["nor_conv_1x1"] * 6, ["nor_conv_3x3"] * 6, ["avg_pool_3x3"] * 6, ["none"] * 6]
        keys: set[str] = set()
        for ops in cells:
            keys.update(self._expand_cells(space, ops))
        return sorted(keys)


class ViTFamily(OpFamily):
    """The elastic ViT (`ViTSpace`): patch embedding, one key per transformer layer, head."""

    space_type = ViTSpace

    def op_keys(self, space: SearchSpace, arch: Mapping[str, Any]) -> list[str]:
        assert isinstance(space, ViTSpace)
        c, act = space.cfg, space.active(arch)
        n, e = c.num_tokens, act.embed_dim
        keys = [
            format_key(
                "patch_embed",
                input=(c.resolution, c.resolution, c.in_channels),
                output=(n, e),
                patch=c.patch_size,
            )
        ]
        for h, hidden in zip(act.heads, act.hidden, strict=True):
            keys.append(
                format_key("transformer_layer", input=(n, e), heads=h, head_dim=c.head_dim, mlp=hidden)
            )
        keys.append(format_key("vit_head", input=(n, e), output=(c.num_classes,)))
        return keys

    def all_keys(self, space: SearchSpace, resolutions: Sequence[int] | None = None) -> list[str]:
        assert isinstance(space, ViTSpace)
        self.check_resolutions(space, resolutions)
        c = space.cfg
        keys: set[str] = set()
        d = max(c.depths)
        for e, h, m in itertools.product(c.embed_dims, c.heads, c.mlp_ratios):
            keys.update(
                self.op_keys(space, {"embed_dim": e, "depth": d, "heads": [h] * d, "mlp_ratio": [m] * d})
            )
        return sorted(keys)


_FAMILIES: list[OpFamily] = [MBv3Family(), NB201Family(), ViTFamily()]


def get_family(space: SearchSpace) -> OpFamily:
    """The adapter for `space`'s type.

    Raises:
        ValueError: no adapter handles this type (the message lists the supported types).
    """
    for family in _FAMILIES:
        if isinstance(space, family.space_type):
            return family
    known = ", ".join(f.space_type.__name__ for f in _FAMILIES)
    raise ValueError(
        f"Space {space.name!r} ({type(space).__name__}) has no latency-table op keys; supported: {known}."
    )


def op_keys(space: SearchSpace, arch: Mapping[str, Any]) -> list[str]:
    """The op keys of `arch` in execution order (repeats kept)."""
    return get_family(space).op_keys(space, arch)


def all_keys(space: SearchSpace, resolutions: Sequence[int] | None = None) -> list[str]:
    """Every distinct op key `space` can produce at `resolutions` (default: all)."""
    return get_family(space).all_keys(space, resolutions)


def resolution_of(space: SearchSpace, arch: Mapping[str, Any]) -> int:
    """The input resolution of `arch` (the partition of a per-resolution table it is looked up in)."""
    return int(space.input_shape(arch)[1])
