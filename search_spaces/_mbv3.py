"""Elastic MobileNetV3 spaces: Once-for-All's exact layouts and a tiny variant for small images.

The OFA presets reproduce ``OFAMobileNetV3`` (Cai et al., 2020) layer for layer: a 3x3 stride-2
h-swish stem, a fixed first MBConv (expand 1, 3x3), five elastic stages (kernel {3,5,7},
expand {3,4,6}, depth {2,3,4}), a 1x1 final expand, global pooling, a 1x1 feature-mix conv
without BN, and the classifier. Architectures use OFA's config form
``{"ks": [20], "e": [20], "d": [5], "r": 224}`` so they move freely between tools.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import register_space
from search_spaces._base import Arch, Choice, Cost, SearchSpace, Supernet
from search_spaces._config import apply_overrides, require_keys, require_list
from search_spaces._elastic import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicDepthwiseConv2d,
    DynamicSE,
    SqueezeExcite,
    assign,
    assign_bn,
    build_activation,
    make_divisible,
    permute_bn,
)
from search_spaces._errors import InvalidArch, InvalidSpaceConfig

BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class MBv3Config:
    """Layout of an elastic MobileNetV3 family (widths are after any width multiplier)."""

    num_classes: int = 1000
    in_channels: int = 3
    stem_width: int = 16
    stem_stride: int = 2
    first_block_width: int = 16
    first_block_act: str = "relu"
    first_block_se: bool = False
    stage_widths: tuple[int, ...] = (24, 40, 80, 112, 160)
    stage_strides: tuple[int, ...] = (2, 2, 2, 1, 2)
    stage_acts: tuple[str, ...] = ("relu", "relu", "h_swish", "h_swish", "h_swish")
    stage_se: tuple[bool, ...] = (False, True, False, True, True)
    ks_list: tuple[int, ...] = (3, 5, 7)
    expand_list: tuple[int, ...] = (3, 4, 6)
    depth_list: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = tuple(range(128, 225, 4))
    final_expand_width: int = 960
    last_channel: int = 1280
    dropout: float = 0.1
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    @property
    def num_stages(self) -> int:
        return len(self.stage_widths)

    @property
    def max_depth(self) -> int:
        return max(self.depth_list)

    def check(self, space: str) -> None:
        n = self.num_stages
        for name in ("stage_strides", "stage_acts", "stage_se"):
            if len(getattr(self, name)) != n:
                raise InvalidSpaceConfig(
                    f"{name} has {len(getattr(self, name))} entries but stage_widths has {n}; they must match."
                )
        for name in ("ks_list", "expand_list", "depth_list", "resolutions"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or v < 1 for v in values) or len(set(values)) != len(values):
                raise InvalidSpaceConfig(f"{name} must be distinct positive integers, but got {values!r}.")
        if any(k % 2 == 0 for k in self.ks_list):
            raise InvalidSpaceConfig(f"ks_list must hold odd kernel sizes, but got {self.ks_list!r}.")
        if self.num_classes < 1 or self.in_channels < 1:
            raise InvalidSpaceConfig(
                f"num_classes and in_channels must be >= 1, but got {self.num_classes} and {self.in_channels}."
            )
        for act in (*self.stage_acts, self.first_block_act):
            if act not in ("relu", "h_swish"):
                raise InvalidSpaceConfig(f"Unknown activation {act!r} in space {space!r}; known: relu, h_swish.")


@dataclass(frozen=True)
class MBv3Layer:
    """One layer of a concrete subnet, in the terms of OFA's latency-table keys.

    ``kind`` is one of ``first_conv``, ``expanded_conv``, ``final_expand``, ``pool``,
    ``feature_mix``, ``logits``. Shapes are (height, width, channels); ``mid`` is the
    expanded (middle) width of an MBConv.
    """

    kind: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    mid: int = 0
    kernel: int = 1
    stride: int = 1
    idskip: bool = False
    se: bool = False
    hs: bool = False
    has_expand_conv: bool = True


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


class MBv3Space(SearchSpace):
    """An elastic MobileNetV3 family. See the module docstring for the layout."""

    def __init__(self, name: str, cfg: MBv3Config, overrides: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, overrides)
        cfg.check(name)
        self.cfg = cfg

    # ----- schema ------------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return self.cfg.num_stages * self.cfg.max_depth

    def _build_choices(self) -> list[Choice]:
        c, n = self.cfg, self.num_blocks
        return [
            *(Choice(f"ks.{i}", tuple(sorted(c.ks_list)), f"ks[{i}]") for i in range(n)),
            *(Choice(f"e.{i}", tuple(sorted(c.expand_list)), f"e[{i}]") for i in range(n)),
            *(Choice(f"d.{i}", tuple(sorted(c.depth_list)), f"d[{i}]") for i in range(c.num_stages)),
            Choice("r", tuple(sorted(c.resolutions)), "r"),
        ]

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(arch, Mapping):
            raise InvalidArch(self.name, "arch", arch, "a JSON object with keys ks, e, d, r")
        require_keys(self.name, arch, ("ks", "e", "d", "r"))
        n, s = self.num_blocks, self.cfg.num_stages
        params: dict[str, Any] = {}
        for key, length in (("ks", n), ("e", n), ("d", s)):
            for i, v in enumerate(require_list(self.name, arch, key, length)):
                params[f"{key}.{i}"] = v
        params["r"] = arch["r"]
        return params

    def from_params(self, params: Mapping[str, Any]) -> Arch:
        n, s = self.num_blocks, self.cfg.num_stages
        return {
            "ks": [params[f"ks.{i}"] for i in range(n)],
            "e": [params[f"e.{i}"] for i in range(n)],
            "d": [params[f"d.{i}"] for i in range(s)],
            "r": params["r"],
        }

    def inactive(self, params: Mapping[str, Any]) -> set[str]:
        """Kernel and expand entries of blocks beyond each stage's active depth."""
        out: set[str] = set()
        md = self.cfg.max_depth
        for stage in range(self.cfg.num_stages):
            for j in range(params[f"d.{stage}"], md):
                out |= {f"ks.{stage * md + j}", f"e.{stage * md + j}"}
        return out

    def input_shape(self, arch: Mapping[str, Any]) -> tuple[int, int, int]:
        r = self.validate(arch)["r"]
        return (self.cfg.in_channels, r, r)

    # ----- OFA interchange ---------------------------------------------------------------------
    def from_ofa(self, config: Mapping[str, Any]) -> Arch:
        """Convert an OFA / DyNAS-T subnet config (``{'wid', 'ks', 'e', 'd', 'r': [224]}``)."""
        if not isinstance(config, Mapping):
            raise InvalidArch(self.name, "config", config, "an OFA config mapping with ks, e, d, r")
        extra = set(config) - {"wid", "ks", "e", "d", "r"}
        if extra:
            raise InvalidArch(self.name, sorted(extra)[0], config[sorted(extra)[0]], "only the keys wid, ks, e, d, r")
        if config.get("wid") not in (None, 0):
            raise InvalidArch(self.name, "wid", config.get("wid"), "None (width is fixed by the preset)")
        r = config.get("r", [max(self.cfg.resolutions)])
        if isinstance(r, (list, tuple)):
            if len(r) != 1:
                raise InvalidArch(self.name, "r", r, "a single resolution, e.g. [224]")
            r = r[0]
        arch = {k: list(config[k]) if isinstance(config.get(k), (list, tuple)) else config.get(k) for k in ("ks", "e", "d")}
        return self.validate({**arch, "r": r})

    def to_ofa(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """The OFA / DyNAS-T config form of `arch`."""
        a = self.validate(arch)
        return {"wid": None, "ks": a["ks"], "e": a["e"], "d": a["d"], "r": [a["r"]]}

    # ----- structure and cost ------------------------------------------------------------------
    def layers(self, arch: Mapping[str, Any]) -> list[MBv3Layer]:
        """The concrete layers of `arch`, in execution order."""
        a, c = self.validate(arch), self.cfg
        r = a["r"]
        h = _conv_out(r, 3, c.stem_stride)
        out: list[MBv3Layer] = [
            MBv3Layer("first_conv", (r, r, c.in_channels), (h, h, c.stem_width), kernel=3, stride=c.stem_stride, hs=True)
        ]
        out.append(
            MBv3Layer(
                "expanded_conv",
                (h, h, c.stem_width),
                (h, h, c.first_block_width),
                mid=c.stem_width,
                kernel=3,
                idskip=c.stem_width == c.first_block_width,
                se=c.first_block_se,
                hs=c.first_block_act == "h_swish",
                has_expand_conv=False,
            )
        )
        cin = c.first_block_width
        for stage in range(c.num_stages):
            for j in range(a["d"][stage]):
                i = stage * c.max_depth + j
                stride = c.stage_strides[stage] if j == 0 else 1
                ho = _conv_out(h, a["ks"][i], stride)
                cout = c.stage_widths[stage]
                out.append(
                    MBv3Layer(
                        "expanded_conv",
                        (h, h, cin),
                        (ho, ho, cout),
                        mid=make_divisible(round(cin * a["e"][i])),
                        kernel=a["ks"][i],
                        stride=stride,
                        idskip=stride == 1 and cin == cout,
                        se=c.stage_se[stage],
                        hs=c.stage_acts[stage] == "h_swish",
                    )
                )
                h, cin = ho, cout
        fe, lc = c.final_expand_width, c.last_channel
        out += [
            MBv3Layer("final_expand", (h, h, cin), (h, h, fe), hs=True),
            MBv3Layer("pool", (h, h, fe), (1, 1, fe)),
            MBv3Layer("feature_mix", (1, 1, fe), (1, 1, lc), hs=True),
            MBv3Layer("logits", (1, 1, lc), (1, 1, c.num_classes)),
        ]
        return out

    def cost(self, arch: Mapping[str, Any]) -> Cost:
        """MACs of every conv and linear (OFA's ``count_net_flops``), params of the extracted
        subnet (BN affine included), and peak activation bytes: over all ops, the op's input
        and output plus the block input a residual connection keeps alive."""
        macs = params = peak = 0
        for layer in self.layers(arch):
            (hi, wi, ci), (ho, wo, co) = layer.in_shape, layer.out_shape
            vin, vout = hi * wi * ci, ho * wo * co
            if layer.kind == "first_conv":
                macs += ci * co * layer.kernel**2 * ho * wo
                params += ci * co * layer.kernel**2 + 2 * co
                peak = max(peak, vin + vout)
            elif layer.kind == "expanded_conv":
                m, keep = layer.mid, vin if layer.idskip else 0
                steps = []
                if layer.has_expand_conv:
                    macs += ci * m * hi * wi
                    params += ci * m + 2 * m
                    steps.append(vin + m * hi * wi)
                macs += m * layer.kernel**2 * ho * wo
                params += m * layer.kernel**2 + 2 * m
                steps.append(m * hi * wi + m * ho * wo)
                if layer.se:
                    sm = make_divisible(m // DynamicSE.REDUCTION)
                    macs += 2 * m * sm
                    params += 2 * m * sm + sm + m
                    steps.append(2 * m * ho * wo)
                macs += m * co * ho * wo
                params += m * co + 2 * co
                steps.append(m * ho * wo + vout)
                # The first step's input is the block input itself; later steps keep it alive too.
                peak = max(peak, steps[0] + (0 if layer.has_expand_conv else keep), *(s + keep for s in steps[1:]))
            elif layer.kind == "final_expand":
                macs += ci * co * hi * wi
                params += ci * co + 2 * co
                peak = max(peak, vin + vout)
            elif layer.kind == "feature_mix":
                macs += ci * co
                params += ci * co
            elif layer.kind == "logits":
                macs += ci * co
                params += ci * co + co
            else:  # pool
                peak = max(peak, vin + vout)
        return {"macs": int(macs), "params": int(params), "activation_bytes": int(peak * BYTES_PER_VALUE)}

    def build_supernet(self) -> MBv3Supernet:
        return MBv3Supernet(self)


# ---------------------------------------------------------------------------------------------
# Modules


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> activation."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, act: str, groups: int = 1, device: Any = None
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False, device=device)
        self.bn = nn.BatchNorm2d(cout, device=device)
        self.act = build_activation(act)


class MBConv(nn.Module):
    """A static inverted-residual block: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project."""

    def __init__(
        self,
        cin: int,
        mid: int,
        cout: int,
        kernel: int,
        stride: int,
        act: str,
        se: bool,
        expand_conv: bool = True,
        device: Any = None,
    ) -> None:
        super().__init__()
        self.inverted_bottleneck = ConvBNAct(cin, mid, 1, 1, act, device=device) if expand_conv else None
        self.depth_conv = ConvBNAct(mid, mid, kernel, stride, act, groups=mid, device=device)
        if se:
            self.depth_conv.add_module("se", SqueezeExcite(mid, device=device))
        self.point_linear = ConvBNAct(mid, cout, 1, 1, "none", device=device)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.inverted_bottleneck is None else self.inverted_bottleneck(x)
        h = self.point_linear(self.depth_conv(h))
        return h + x if self.residual else h


class MBv3Head(nn.Module):
    """Final 1x1 expand -> global average pool -> 1x1 feature mix (no BN) -> classifier."""

    def __init__(self, cin: int, final_expand: int, last_channel: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.final_expand_layer = ConvBNAct(cin, final_expand, 1, 1, "h_swish")
        self.feature_mix_layer = nn.Sequential()
        self.feature_mix_layer.add_module("conv", nn.Conv2d(final_expand, last_channel, 1, bias=False))
        self.feature_mix_layer.add_module("act", nn.Hardswish(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last_channel, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand_layer(x).mean((2, 3), keepdim=True)
        x = torch.flatten(self.feature_mix_layer(x), 1)
        return self.classifier(self.dropout(x))


class MBv3Net(nn.Module):
    """A static MobileNetV3 subnet, as returned by `MBv3Supernet.extract`."""

    def __init__(self, first_conv: nn.Module, blocks: Sequence[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.first_conv = first_conv
        self.blocks = nn.Sequential(*blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.first_conv(x)))


class DynamicMBConv(nn.Module):
    """An MBConv block with elastic kernel size and expand ratio (fixed in/out widths)."""

    def __init__(self, cin: int, cout: int, stride: int, act: str, se: bool, cfg: MBv3Config) -> None:
        super().__init__()
        self.cin, self.cout, self.stride, self.act_name, self.use_se = cin, cout, stride, act, se
        max_mid = make_divisible(round(cin * max(cfg.expand_list)))
        self.ib_conv = DynamicConv2d(cin, max_mid)
        self.ib_bn = DynamicBatchNorm2d(max_mid, cfg.bn_momentum, cfg.bn_eps)
        self.dw_conv = DynamicDepthwiseConv2d(max_mid, cfg.ks_list, stride)
        self.dw_bn = DynamicBatchNorm2d(max_mid, cfg.bn_momentum, cfg.bn_eps)
        self.se = DynamicSE(max_mid) if se else None
        self.pl_conv = DynamicConv2d(max_mid, cout)
        self.pl_bn = DynamicBatchNorm2d(cout, cfg.bn_momentum, cfg.bn_eps)
        self.act = build_activation(act)
        self.residual = stride == 1 and cin == cout
        self.kernel, self.mid = max(cfg.ks_list), max_mid
        self._plan_key: tuple | None = None
        self._plan: tuple = ()

    def set_config(self, kernel: int, expand: int) -> None:
        self.kernel, self.mid = kernel, make_divisible(round(self.cin * expand))

    def _plan_sources(self) -> list[torch.Tensor]:
        """Every tensor the inference plan is derived from (explicit: cheaper than ``parameters()``)."""
        out = [self.ib_conv.conv.weight, self.dw_conv.conv.weight, *self.dw_conv.transforms.values()]
        for mod in (self.ib_bn, self.dw_bn, self.pl_bn):
            out += [mod.bn.weight, mod.bn.bias, mod.bn.running_mean, mod.bn.running_var]
        if self.se is not None:
            out += [self.se.reduce.weight, self.se.reduce.bias, self.se.expand.weight, self.se.expand.bias]
        out.append(self.pl_conv.conv.weight)
        return out

    def _inference_plan(self) -> tuple:
        """Sliced, contiguous tensors of the active block, rebuilt only when the configuration or
        any weight or statistic changes (in place: version counter; replaced: storage pointer)."""
        tensors = self._plan_sources()
        key = (self.kernel, self.mid, *(t._version for t in tensors), *(t.data_ptr() for t in tensors))
        if key != self._plan_key:
            m, c = self.mid, self.cout

            def bn(mod: DynamicBatchNorm2d, n: int) -> tuple:
                b = mod.bn
                return tuple(t[:n].contiguous() for t in (b.running_mean, b.running_var, b.weight, b.bias)) + (b.eps,)

            se = None
            if self.se is not None:
                se = tuple(t.contiguous() for t in self.se.active_weights(m))  # type: ignore[union-attr]
            self._plan = (
                self.ib_conv.conv.weight[:m, : self.cin].contiguous(),
                bn(self.ib_bn, m),
                self.dw_conv.active_filter(m, self.kernel).contiguous(),
                bn(self.dw_bn, m),
                se,
                self.pl_conv.conv.weight[:c, :m].contiguous(),
                bn(self.pl_bn, c),
            )
            self._plan_key = key
        return self._plan

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        ib_w, ib_bn, dw_w, dw_bn, se, pl_w, pl_bn = self._inference_plan()
        act = F.relu if self.act_name == "relu" else F.hardswish
        h = act(F.batch_norm(F.conv2d(x, ib_w), *ib_bn[:4], False, 0.0, ib_bn[4]), inplace=True)
        h = F.conv2d(h, dw_w, None, self.stride, self.kernel // 2, 1, self.mid)
        h = act(F.batch_norm(h, *dw_bn[:4], False, 0.0, dw_bn[4]), inplace=True)
        if se is not None:
            y = F.relu(F.conv2d(h.mean((2, 3), keepdim=True), se[0], se[1]), inplace=True)
            h = h * F.hardsigmoid(F.conv2d(y, se[2], se[3]), inplace=True)
        h = F.batch_norm(F.conv2d(h, pl_w), *pl_bn[:4], False, 0.0, pl_bn[4])
        return h + x if self.residual else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training or torch.is_grad_enabled()):
            return self._forward_inference(x)
        h = self.act(self.ib_bn(self.ib_conv(x, self.mid)))
        h = self.act(self.dw_bn(self.dw_conv(h, self.kernel)))
        if self.se is not None:
            h = self.se(h)
        h = self.pl_bn(self.pl_conv(h, self.cout))
        return h + x if self.residual else h

    @torch.no_grad()
    def extract(self) -> MBConv:
        """A static copy of the active configuration (built on the meta device: every tensor is
        assigned from the supernet, so random initialisation would be wasted time)."""
        m, k, c = self.mid, self.kernel, self.cout
        block = MBConv(self.cin, m, c, k, self.stride, self.act_name, self.use_se, device="meta")
        assert block.inverted_bottleneck is not None
        assign(block.inverted_bottleneck.conv, weight=self.ib_conv.conv.weight[:m, : self.cin])
        assign_bn(block.inverted_bottleneck.bn, self.ib_bn.bn, m)
        with torch.enable_grad():  # bypass the eval cache: the copy must not alias it
            filt = self.dw_conv.active_filter(m, k).detach()
        assign(block.depth_conv.conv, weight=filt)
        assign_bn(block.depth_conv.bn, self.dw_bn.bn, m)
        if self.se is not None:
            rw, rb, ew, eb = self.se.active_weights(m)
            assign(block.depth_conv.se.reduce, weight=rw, bias=rb)
            assign(block.depth_conv.se.expand, weight=ew, bias=eb)
        assign(block.point_linear.conv, weight=self.pl_conv.conv.weight[:c, :m])
        assign_bn(block.point_linear.bn, self.pl_bn.bn, c)
        return block

    @torch.no_grad()
    def reorder_middle_channels(self) -> None:
        """Sort middle channels by importance (L1 norm of the projection weights), as OFA does,
        so that smaller expand ratios keep the most important ones. The largest block's function
        is unchanged."""
        importance = self.pl_conv.conv.weight.abs().sum(dim=(0, 2, 3))
        idx = torch.argsort(importance, descending=True)
        self.pl_conv.conv.weight.copy_(self.pl_conv.conv.weight[:, idx])
        permute_bn(self.dw_bn.bn, idx)
        self.dw_conv.conv.weight.copy_(self.dw_conv.conv.weight[idx])
        if self.se is not None:
            se = self.se
            se.expand.weight.copy_(se.expand.weight[idx]), se.expand.bias.copy_(se.expand.bias[idx])
            se.reduce.weight.copy_(se.reduce.weight[:, idx])
            se_idx = torch.argsort(se.expand.weight.abs().sum(dim=(0, 2, 3)), descending=True)
            se.expand.weight.copy_(se.expand.weight[:, se_idx])
            se.reduce.weight.copy_(se.reduce.weight[se_idx]), se.reduce.bias.copy_(se.reduce.bias[se_idx])
        permute_bn(self.ib_bn.bn, idx)
        self.ib_conv.conv.weight.copy_(self.ib_conv.conv.weight[idx])


class MBv3Supernet(nn.Module, Supernet):
    """Weight-sharing supernet of an `MBv3Space`; starts with the largest subnet active."""

    def __init__(self, space: MBv3Space) -> None:
        super().__init__()
        self.space = space
        c = space.cfg
        self.first_conv = ConvBNAct(c.in_channels, c.stem_width, 3, c.stem_stride, "h_swish")
        self.first_block = MBConv(
            c.stem_width, c.stem_width, c.first_block_width, 3, 1, c.first_block_act, c.first_block_se, expand_conv=False
        )
        blocks, cin = [], c.first_block_width
        for stage in range(c.num_stages):
            for j in range(c.max_depth):
                stride = c.stage_strides[stage] if j == 0 else 1
                blocks.append(DynamicMBConv(cin, c.stage_widths[stage], stride, c.stage_acts[stage], c.stage_se[stage], c))
                cin = c.stage_widths[stage]
        self.blocks = nn.ModuleList(blocks)
        self.head = MBv3Head(cin, c.final_expand_width, c.last_channel, c.num_classes, c.dropout)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = c.bn_momentum, c.bn_eps
        self._init_weights()
        self._active: Arch = {}
        self._active_blocks: list[int] = []
        self._active_modules: list[DynamicMBConv] = []
        self.set_active(space.largest())

    def _init_weights(self) -> None:
        """OFA's init: He-normal (fan-out) convs, unit BN, small-uniform linear."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                stdv = 1.0 / math.sqrt(m.weight.size(1))
                m.weight.data.uniform_(-stdv, stdv)
                m.bias.data.zero_()

    @property
    def active_arch(self) -> Arch:
        return {k: list(v) if isinstance(v, list) else v for k, v in self._active.items()}

    def set_active(self, arch: Mapping[str, Any]) -> None:
        a = self.space.validate(arch)
        md = self.space.cfg.max_depth
        active = []
        for stage, depth in enumerate(a["d"]):
            for j in range(depth):
                i = stage * md + j
                self.blocks[i].set_config(a["ks"][i], a["e"][i])
                active.append(i)
        self._active, self._active_blocks = a, active
        self._active_modules = [self.blocks[i] for i in active]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.first_conv(x))
        for block in self._active_modules:
            x = block(x)
        return self.head(x)

    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any] | None = None) -> MBv3Net:
        if arch is not None:
            previous = self._active
            self.set_active(arch)
        try:
            net = MBv3Net(
                _clone(self.first_conv),
                [_clone(self.first_block), *(self.blocks[i].extract() for i in self._active_blocks)],
                _clone(self.head),
            )
        finally:
            if arch is not None:
                self.set_active(previous)
        return net.train(self.training)

    def reorder_channels(self) -> None:
        """Sort every block's middle channels by importance (OFA's elastic-width preparation)."""
        for block in self.blocks:
            block.reorder_middle_channels()


def _clone(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)


# ---------------------------------------------------------------------------------------------
# Presets


def _ofa_config(width_mult: float, resolutions: tuple[int, ...], **overrides: Any) -> MBv3Config:
    """OFA's ``OFAMobileNetV3`` widths for a width multiplier (base 16,16,24,40,80,112,160,960,1280)."""
    base = [16, 16, 24, 40, 80, 112, 160]
    widths = [make_divisible(b * width_mult) for b in base]
    return MBv3Config(
        stem_width=widths[0],
        first_block_width=widths[1],
        stage_widths=tuple(widths[2:]),
        final_expand_width=make_divisible(960 * width_mult),
        last_channel=make_divisible(1280 * width_mult),
        resolutions=resolutions,
    )


def _build(name: str, cfg: MBv3Config, overrides: Mapping[str, Any]) -> MBv3Space:
    return MBv3Space(name, apply_overrides(cfg, overrides, name), overrides)


@register_space("ofa_mbv3_w10")
def ofa_mbv3_w10(**overrides: Any) -> MBv3Space:
    """Once-for-All MobileNetV3, width 1.0 (``ofa_mbv3_d234_e346_k357_w1.0``), 128-224 px."""
    return _build("ofa_mbv3_w10", _ofa_config(1.0, tuple(range(128, 225, 4))), overrides)


@register_space("ofa_mbv3_w12")
def ofa_mbv3_w12(**overrides: Any) -> MBv3Space:
    """Once-for-All MobileNetV3, width 1.2 (``ofa_mbv3_d234_e346_k357_w1.2``), 160-224 px."""
    return _build("ofa_mbv3_w12", _ofa_config(1.2, tuple(range(160, 225, 4))), overrides)


@register_space("mbv3_tiny")
def mbv3_tiny(**overrides: Any) -> MBv3Space:
    """The same elastic block family sized for 8-32 px inputs (digits, CIFAR-size images):
    stride-1 stem, three elastic stages (24, 40, 64 wide; depth 1-3), a slim head, 16-32 px."""
    cfg = MBv3Config(
        num_classes=10,
        stem_width=16,
        stem_stride=1,
        first_block_width=16,
        stage_widths=(24, 40, 64),
        stage_strides=(2, 2, 2),
        stage_acts=("relu", "h_swish", "h_swish"),
        stage_se=(False, True, True),
        depth_list=(1, 2, 3),
        resolutions=(16, 20, 24, 28, 32),
        final_expand_width=192,
        last_channel=256,
        dropout=0.1,
    )
    return _build("mbv3_tiny", cfg, overrides)


__all__ = ["MBv3Config", "MBv3Layer", "MBv3Net", "MBv3Space", "MBv3Supernet"]
