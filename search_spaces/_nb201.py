"""NAS-Bench-201: the 4-node, 6-edge, 5-op cell space of Dong & Yang (ICLR 2020).

The macro skeleton, ops and architecture strings follow the benchmark's own code
(``xautodl``/NATS-Bench ``TinyNetwork``, ``InferCell``, ``ResNetBasicblock``, ``OPS``) so that
strings from the benchmark's tables are this space's architectures, and MACs and parameter
counts agree with the benchmark's networks. The extracted network also keeps the benchmark's
``state_dict`` key layout (``cells.{i}.layers.{k}.op.1.weight``, ``cells.{i}.conv_a...``).

Arch JSON: ``{"edges": [op(1<-0), op(2<-0), op(2<-1), op(3<-0), op(3<-1), op(3<-2)]}``.
String form (the benchmark's): ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from search_spaces import register_space
from search_spaces._base import Arch, Choice, Cost, SearchSpace, Supernet
from search_spaces._config import apply_overrides, require_keys, require_list
from search_spaces._errors import InvalidArch, InvalidSpaceConfig
from search_spaces._nb201_features import EDGES, FEATURE_NAMES, canonical_ops, cell_features

OPS: tuple[str, ...] = ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
"""Candidate ops, cheapest first (the order of every edge's `Choice`)."""

# EDGES: (to, from) per edge, in the benchmark string's order (defined with the cell features).

NUM_NODES = 4
_CONV_K = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
_F32 = 4  # bytes per activation element


@dataclass(frozen=True)
class NB201Config:
    """Macro skeleton of the benchmark's ``TinyNetwork`` (defaults: CIFAR-10, C=16, N=5).

    Attributes:
        in_channels: Image channels.
        num_classes: Classifier outputs.
        resolution: Input height = width; a multiple of 4 (two stride-2 reductions).
        C: Channels of the first stage (then 2C, 4C).
        N: Cells per stage.
    """

    in_channels: int = 3
    num_classes: int = 10
    resolution: int = 32
    C: int = 16
    N: int = 5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise InvalidSpaceConfig(f"`{f.name}` must be a positive int, but got {value!r}.")
        if self.resolution % 4:
            raise InvalidSpaceConfig(
                f"`resolution % 4 == 0` must hold (two stride-2 reductions whose conv and "
                f"pooling branches must agree), but got resolution={self.resolution}."
            )


# ----- ops (the benchmark's modules, same structure and parameter names) ------------------------
class ReLUConvBN(nn.Module):
    """ReLU -> Conv (no bias) -> BatchNorm(affine); ``op.1`` / ``op.2`` as in the benchmark."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=True, track_running_stats=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The 'none' op. Cells never call it (they skip the edge); kept so keys line up."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ResNetBasicblock(nn.Module):
    """The benchmark's stride-2 reduction block: two ReLUConvBN 3x3 + (AvgPool 2x2, Conv 1x1)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def _avg_pool() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def _make_op(name: str, channels: int) -> nn.Module:
    """A fresh op for one cell edge (cells keep C_in == C_out and stride 1)."""
    if name in _CONV_K:
        return ReLUConvBN(channels, channels, _CONV_K[name], 1)
    if name == "avg_pool_3x3":
        return _avg_pool()
    if name == "skip_connect":
        return nn.Identity()
    return Zero()


# A cell's forward plan: per node 1..3, the (source node, edge index) pairs that feed it; edge
# index None is skip_connect (no call at all), and 'none' edges are simply absent.
_Plan = tuple[tuple[tuple[int, int | None], ...], ...]


def _run_cell(
    plan: _Plan, ops: Sequence[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor
) -> torch.Tensor:
    """node j = sum of op(node i); a node fed only by 'none' edges is zeros, as in the benchmark."""
    nodes = [x]
    for inputs in plan:
        out: torch.Tensor | None = None
        for src, k in inputs:
            y = nodes[src] if k is None else ops[k](nodes[src])
            out = y if out is None else out + y
        nodes.append(torch.zeros_like(x) if out is None else out)
    return nodes[-1]


def _plan(ops: Sequence[str]) -> _Plan:
    per_node: list[list[tuple[int, int | None]]] = [[] for _ in range(NUM_NODES - 1)]
    for k, ((dst, src), name) in enumerate(zip(EDGES, ops, strict=True)):
        if name != "none":
            per_node[dst - 1].append((src, None if name == "skip_connect" else k))
    return tuple(tuple(p) for p in per_node)


class InferCell(nn.Module):
    """A static cell: ``layers[k]`` is edge k's op (benchmark layout, 'none' edges never run)."""

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.ops = tuple(ops)
        self.layers = nn.ModuleList(_make_op(name, channels) for name in self.ops)
        self._plan = _plan(self.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Modules are looked up per call so copies and DataParallel replicas use their own.
        return _run_cell(self._plan, list(self.layers), x)

    def extra_repr(self) -> str:
        return f"ops={list(self.ops)}"


def _stage_layout(cfg: NB201Config) -> list[tuple[str, int, int]]:
    """(kind, c_in, c_out) per entry of ``cells``: N cells, reduction, N cells, reduction, N cells."""
    out: list[tuple[str, int, int]] = []
    c_prev = cfg.C
    for stage, c in enumerate((cfg.C, 2 * cfg.C, 4 * cfg.C)):
        if stage:
            out.append(("reduce", c_prev, c))
        out.extend(("cell", c, c) for _ in range(cfg.N))
        c_prev = c
    return out


class _Skeleton(nn.Module):
    """Shared macro skeleton: stem, ``cells`` (cells and reductions), lastact, pooling, classifier."""

    def _build(self, cfg: NB201Config, make_cell: Callable[[int], nn.Module]) -> None:
        c = cfg.C
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.cells = nn.ModuleList(
            make_cell(c_out) if kind == "cell" else ResNetBasicblock(c_in, c_out)
            for kind, c_in, c_out in _stage_layout(cfg)
        )
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * c), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * c, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        x = self.global_pooling(self.lastact(x))
        return self.classifier(x.flatten(1))


class NB201Network(_Skeleton):
    """A standalone NAS-Bench-201 network (the benchmark's ``TinyNetwork``, returning logits only)."""

    def __init__(self, cfg: NB201Config, ops: Sequence[str]) -> None:
        super().__init__()
        self.cfg, self.ops = cfg, tuple(ops)
        self._build(cfg, lambda c: InferCell(self.ops, c))


# ----- supernet ----------------------------------------------------------------------------------
class _SuperCell(nn.Module):
    """All candidates of all 6 edges: per edge its own conv 1x1 and 3x3 (pooling and skip are free)."""

    def __init__(self, channels: int, pool: nn.Module) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleDict({name: ReLUConvBN(channels, channels, k, 1) for name, k in _CONV_K.items()})
            for _ in EDGES
        )
        self._pool = (pool,)  # a tuple: shared, not registered as a child
        self._plan: _Plan = ()
        self._selected: list[nn.Module] = []

    def set_ops(self, ops: Sequence[str]) -> None:
        """Select one op per edge (held by reference: use DDP, not nn.DataParallel replicas)."""
        edges = cast(Sequence[nn.ModuleDict], self.edges)
        self._selected = [
            edge[name] if name in _CONV_K else self._pool[0] for edge, name in zip(edges, ops, strict=True)
        ]
        self._plan = _plan(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run_cell(self._plan, self._selected, x)


class NB201Supernet(_Skeleton, Supernet):
    """Weight-sharing supernet: every cell holds every candidate; all cells share one genotype.

    Starts with the largest architecture active. ``forward`` runs only the active ops.
    """

    space: NB201Space

    def __init__(self, space: NB201Space) -> None:
        super().__init__()
        self.space = space
        pool = _avg_pool()
        self._build(space.cfg, lambda c: _SuperCell(c, pool))
        self._active: Arch = {}
        self.set_active(space.largest())

    def set_active(self, arch: Mapping[str, Any]) -> None:
        arch = self.space.validate(arch)
        for cell in self.cells:
            if isinstance(cell, _SuperCell):
                cell.set_ops(arch["edges"])
        self._active = arch

    @property
    def active_arch(self) -> Arch:
        return {"edges": list(self._active["edges"])}

    def extract(self, arch: Mapping[str, Any] | None = None) -> NB201Network:
        """A fresh `NB201Network` for `arch` (default: active) with cloned weights, same device and mode."""
        ops = self.space.validate(self._active if arch is None else arch)["edges"]
        with torch.device("meta"):  # no wasted init: every tensor is replaced below
            net = NB201Network(self.space.cfg, ops)
        state = self.state_dict()
        mapped = {}
        for key in net.state_dict():
            parts = key.split(".")
            if parts[0] == "cells" and parts[2] == "layers":  # cells.i.layers.k.* <- cells.i.edges.k.op.*
                parts = ["cells", parts[1], "edges", parts[3], ops[int(parts[3])], *parts[4:]]
            mapped[key] = state[".".join(parts)].clone()
        net.load_state_dict(mapped, strict=True, assign=True)
        return net.train(self.training)


# ----- the space ---------------------------------------------------------------------------------
class NB201Space(SearchSpace):
    """The NAS-Bench-201 cell space (5^6 = 15,625 architectures, all distinct ids as in the benchmark).

    Costs count every selected non-'none' op, also one whose node cannot reach the cell output,
    because the benchmark's networks build and run those too.
    """

    def __init__(self, name: str, cfg: NB201Config, overrides: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, overrides)
        self.cfg = cfg

    def _build_choices(self) -> Sequence[Choice]:
        return [Choice(f"edge.{dst}<-{src}", OPS, f"edges[{k}]") for k, (dst, src) in enumerate(EDGES)]

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(arch, Mapping):
            raise InvalidArch(self.name, "arch", arch, 'a JSON object {"edges": [6 op names]}')
        require_keys(self.name, arch, ("edges",))
        edges = require_list(self.name, arch, "edges", len(EDGES))
        return {c.name: op for c, op in zip(self.choices(), edges, strict=True)}

    def from_params(self, params: Mapping[str, Any]) -> Arch:
        return {"edges": [params[c.name] for c in self.choices()]}

    def input_shape(self, arch: Mapping[str, Any]) -> tuple[int, int, int]:
        return (self.cfg.in_channels, self.cfg.resolution, self.cfg.resolution)

    def build_supernet(self) -> NB201Supernet:
        return NB201Supernet(self)

    # ----- the benchmark's string form ----------------------------------------------------------
    def arch_str(self, arch: Mapping[str, Any]) -> str:
        """The benchmark's string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
        ops = self.validate(arch)["edges"]
        nodes: list[list[str]] = [[] for _ in range(NUM_NODES - 1)]
        for (dst, src), op in zip(EDGES, ops, strict=True):
            nodes[dst - 1].append(f"{op}~{src}")
        return "+".join("|" + "|".join(node) + "|" for node in nodes)

    def from_str(self, text: str) -> Arch:
        """Parse the benchmark's string (a JSON object is accepted too).

        Raises:
            InvalidArch: naming the malformed part, or the edge with an unknown op and the ops.
        """
        if not isinstance(text, str):
            raise InvalidArch(self.name, "arch", text, f"a string like {_EXAMPLE!r}")
        s = text.strip()
        if s.startswith("{"):
            return super().from_str(s)
        nodes = s.split("+")
        if len(nodes) != NUM_NODES - 1:
            raise InvalidArch(
                self.name, "arch", text, f"{NUM_NODES - 1} nodes joined by '+', like {_EXAMPLE!r}"
            )
        ops: list[str] = []
        for dst, node in enumerate(nodes, start=1):
            expect = "|" + "|".join(f"<op>~{i}" for i in range(dst)) + "|"
            tokens = node.split("|")
            if len(tokens) != dst + 2 or tokens[0] or tokens[-1]:
                raise InvalidArch(self.name, f"node {dst}", node, f"the form {expect!r}")
            for src, token in enumerate(tokens[1:-1]):
                op, sep, idx = token.rpartition("~")
                if not sep or idx != str(src):
                    raise InvalidArch(self.name, f"node {dst} input {src}", token, f"the form {expect!r}")
                if op not in OPS:
                    raise InvalidArch(self.name, f"edges[{EDGES.index((dst, src))}] ({dst}<-{src})", op, OPS)
                ops.append(op)
        # Node-major parsing order is exactly EDGES' order.
        return {"edges": ops}

    # ----- analytic cost --------------------------------------------------------------------------
    def cost(self, arch: Mapping[str, Any]) -> Cost:
        """MACs (conv + linear, as FlopCounterMode counts them), parameters, peak activation bytes.

        Activation model (float32, batch 1): each step (a fused ReLU-Conv-BN, a pooling, a fused
        BN-ReLU, ...) reads tensors already alive and writes one new output; a tensor stays alive
        until its last reader has run. A step's footprint is all tensors alive during it plus its
        output; the peak is the largest footprint. Inside a cell, node j's running sum is one
        tensor, each non-skip op adds one output, and the nodes still read by node j or later
        stay alive; skip_connect and 'none' allocate nothing (a node fed only by 'none' is zeros).
        """
        ops = self.validate(arch)["edges"]
        cfg = self.cfg
        r = cfg.resolution
        c = cfg.C
        macs = cfg.in_channels * c * 9 * r * r
        params = cfg.in_channels * c * 9 + 2 * c
        peak = (cfg.in_channels + c) * r * r
        for kind, c_in, c_out in _stage_layout(cfg):
            if kind == "reduce":
                ro = r // 2
                hw_in, hw_out = r * r, ro * ro
                macs += (c_in * c_out * 9 + c_out * c_out * 9 + c_in * c_out) * hw_out
                params += c_in * c_out * 9 + 2 * c_out + c_out * c_out * 9 + 2 * c_out + c_in * c_out
                x, a, p = c_in * hw_in, c_out * hw_out, c_in * hw_out
                peak = max(peak, x + a + a, x + a + p, a + p + a)  # x+a+conv_b, x+b+pool, b+pool+conv
                r = ro
            else:
                n_conv = {k: sum(op == name for op in ops) for name, k in _CONV_K.items()}
                macs += sum(k * k * n for k, n in n_conv.items()) * c_out * c_out * r * r
                params += sum(k * k * c_out * c_out + 2 * c_out for k, n in n_conv.items() for _ in range(n))
                peak = max(peak, _cell_peak(ops) * c_out * r * r)
        c_last = 4 * c
        peak = max(peak, 2 * c_last * r * r, c_last * r * r + c_last, c_last + cfg.num_classes)
        macs += c_last * cfg.num_classes
        params += 2 * c_last + c_last * cfg.num_classes + cfg.num_classes
        return {"macs": int(macs), "params": int(params), "activation_bytes": int(peak * _F32)}

    # ----- structural features (for accuracy predictors) -------------------------------------------
    def canonical(self, arch: Mapping[str, Any]) -> Arch:
        """The effective cell: edges on no input-to-output path of non-'none' ops set to 'none'.

        Cells with the same canonical form compute the same function (dead edges never reach
        the output; at most a conv fed only zeros adds its BatchNorm bias, a constant), so a
        predictor should not tell them apart.
        """
        return {"edges": canonical_ops(self.validate(arch)["edges"])}

    def feature_names(self) -> tuple[str, ...]:
        """Names of the columns of `features` (see `search_spaces._nb201_features`)."""
        return FEATURE_NAMES

    def features(self, arch: Mapping[str, Any]) -> np.ndarray:
        """Structural features of the live cell, float64 in [0, 1], one per `feature_names` entry.

        Unlike `encode` (one-hot per edge), equivalent cells get equal features, and the
        features say what drives accuracy: conv counts and depth on live paths, shortcuts, and
        whether the output is reachable at all. Accuracy predictors fit on these rank NB201 cells
        far better (benchmarks/predictor_quality.py).
        """
        return cell_features(self.validate(arch)["edges"])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "config": dataclasses.asdict(self.cfg), "example": _EXAMPLE}


def _cell_peak(ops: Sequence[str]) -> int:
    """Peak footprint of one cell in node-sized tensors (see `NB201Space.cost`)."""
    readers = {
        i: [dst for (dst, src), op in zip(EDGES, ops, strict=True) if src == i and op != "none"]
        for i in range(4)
    }
    peak = 1  # the cell input itself
    for j in range(1, NUM_NODES):
        alive = sum(1 for i in range(j) if any(d >= j for d in readers[i]))
        inputs = [op for (dst, _), op in zip(EDGES, ops, strict=True) if dst == j and op != "none"]
        has_op_output = any(op != "skip_connect" for op in inputs)
        peak = max(peak, alive + 1 + int(has_op_output))
    return peak


@register_space("nb201")
def nb201(**overrides: Any) -> NB201Space:
    """NAS-Bench-201 with the benchmark's CIFAR skeleton; overrides: in_channels, num_classes,
    resolution, C, N (e.g. ``num_classes=100`` for CIFAR-100, ``num_classes=120, resolution=16``
    for ImageNet16-120)."""
    cfg = apply_overrides(NB201Config(), overrides, "nb201")
    return NB201Space("nb201", cfg, overrides)
