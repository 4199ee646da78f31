"""An elastic vision transformer (AutoFormer / HAT-style weight slicing) sized for tiny images.

The supernet holds the largest network; a subnet uses the leading slice of every weight:
the first ``embed_dim`` channels of the shared residual stream (one choice for all layers, as in
AutoFormer), the first ``heads * head_dim`` rows of each layer's q/k/v projections, the first
``embed_dim * mlp_ratio`` hidden units of each MLP, and the first ``depth`` layers.

Layout (pre-norm, no class token)::

    patch conv (kernel = stride = patch_size) -> + learned positional embedding
    depth x [x + proj(attn(q(ln1 x), k(ln1 x), v(ln1 x)));  x + fc2(gelu(fc1(ln2 x)))]
    final LayerNorm -> mean over tokens -> Linear classifier

Architectures are ``{"embed_dim": 96, "depth": 4, "heads": [4, 4, 4, 4], "mlp_ratio": [4, 4, 4, 4]}``
with one ``heads`` / ``mlp_ratio`` entry per possible layer; entries of layers beyond ``depth`` are
inactive (they do not change the network, its id or its encoding).

Attention is written as explicit matmuls rather than ``F.scaled_dot_product_attention`` because
``FlopCounterMode`` does not count the CPU SDPA kernel; this keeps `ViTSpace.cost` and measured
FLOPs in agreement on every backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import register_space
from search_spaces._base import Arch, Choice, Cost, SearchSpace, Supernet
from search_spaces._config import apply_overrides, require_keys, require_list
from search_spaces._errors import InvalidArch, InvalidSpaceConfig

__all__ = ["ViTConfig", "ViTSpace", "ViTSubnet", "ViTSupernet", "vit_tiny"]

BYTES_PER_VALUE = 4  # float32
LN_EPS = 1e-6  # timm's ViT value
ARCH_KEYS = ("embed_dim", "depth", "heads", "mlp_ratio")


@dataclass(frozen=True)
class ViTConfig:
    """Layout of an elastic ViT family.

    Defaults (``vit_tiny``): 16x16 RGB inputs cut into 4x4 patches (16 tokens); residual width
    48/64/96; 2-4 layers; 1/2/4 heads of 16 dims per layer (attention width 16-64); MLP ratio
    2/3/4 per layer. The largest subnet has 0.41 M parameters and 6.5 M MACs, so the supernet
    trains on two CPU cores in minutes on 8x8 digits upsampled to 16x16.

    Attributes:
        in_channels: Input image channels.
        num_classes: Classifier outputs.
        resolution: Input image side (fixed; the positional embedding has one entry per patch).
        patch_size: Side of a square patch; `resolution` must be a multiple of it.
        embed_dims: Options for the residual width, shared by all layers.
        depths: Options for the number of transformer layers.
        heads: Options for each layer's number of attention heads.
        head_dim: Width of one attention head (fixed, so heads slice cleanly).
        mlp_ratios: Options for each layer's MLP hidden width as a multiple of ``embed_dim``.
    """

    in_channels: int = 3
    num_classes: int = 10
    resolution: int = 16
    patch_size: int = 4
    embed_dims: tuple[int, ...] = (48, 64, 96)
    depths: tuple[int, ...] = (2, 3, 4)
    heads: tuple[int, ...] = (1, 2, 4)
    head_dim: int = 16
    mlp_ratios: tuple[int, ...] = (2, 3, 4)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def num_tokens(self) -> int:
        return (self.resolution // self.patch_size) ** 2

    def check(self, space: str) -> None:
        """Raise InvalidSpaceConfig naming the bad value and the rule."""
        for name in ("in_channels", "num_classes", "resolution", "patch_size", "head_dim"):
            value = getattr(self, name)
            if not _is_pos_int(value):
                raise InvalidSpaceConfig(
                    f"{name} must be a positive integer for space {space!r}, but got {value!r}."
                )
        for name in ("embed_dims", "depths", "heads", "mlp_ratios"):
            values = getattr(self, name)
            if (
                not isinstance(values, tuple)
                or not values
                or not all(_is_pos_int(v) for v in values)
                or list(values) != sorted(set(values))
            ):
                raise InvalidSpaceConfig(
                    f"{name} must be a non-empty list of strictly increasing positive integers "
                    f"for space {space!r}, but got {values!r}."
                )
        if self.resolution % self.patch_size:
            raise InvalidSpaceConfig(
                f"`resolution % patch_size == 0` must hold for space {space!r}, but got "
                f"resolution={self.resolution}, patch_size={self.patch_size}; use a multiple of patch_size."
            )


def _is_pos_int(value: Any) -> bool:
    return type(value) is int and value > 0


class _Active(NamedTuple):
    """A validated architecture in the form the forward pass uses."""

    embed_dim: int
    heads: tuple[int, ...]  # one per active layer
    hidden: tuple[int, ...]  # MLP hidden units, one per active layer


class ViTSpace(SearchSpace):
    """An elastic ViT family. See the module docstring for the layout and arch format."""

    def __init__(self, name: str, cfg: ViTConfig, overrides: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, overrides)
        cfg.check(name)
        self.cfg = cfg

    # ----- schema ------------------------------------------------------------------------------
    def _build_choices(self) -> list[Choice]:
        c, n = self.cfg, self.cfg.max_depth
        return [
            Choice("embed_dim", c.embed_dims, "embed_dim"),
            Choice("depth", c.depths, "depth"),
            *(Choice(f"heads.{i}", c.heads, f"heads[{i}]") for i in range(n)),
            *(Choice(f"mlp_ratio.{i}", c.mlp_ratios, f"mlp_ratio[{i}]") for i in range(n)),
        ]

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(arch, Mapping):
            raise InvalidArch(self.name, "arch", arch, f"a JSON object with keys {', '.join(ARCH_KEYS)}")
        require_keys(self.name, arch, ARCH_KEYS)
        n = self.cfg.max_depth
        params: dict[str, Any] = {"embed_dim": arch["embed_dim"], "depth": arch["depth"]}
        for key in ("heads", "mlp_ratio"):
            for i, v in enumerate(require_list(self.name, arch, key, n)):
                params[f"{key}.{i}"] = v
        return params

    def from_params(self, params: Mapping[str, Any]) -> Arch:
        n = self.cfg.max_depth
        return {
            "embed_dim": params["embed_dim"],
            "depth": params["depth"],
            "heads": [params[f"heads.{i}"] for i in range(n)],
            "mlp_ratio": [params[f"mlp_ratio.{i}"] for i in range(n)],
        }

    def inactive(self, params: Mapping[str, Any]) -> set[str]:
        """Heads and MLP ratios of layers beyond the active depth."""
        depth = params.get("depth")
        if type(depth) is not int:
            return set()
        layers = range(max(depth, 0), self.cfg.max_depth)
        return {f"{key}.{i}" for i in layers for key in ("heads", "mlp_ratio")}

    def input_shape(self, arch: Mapping[str, Any]) -> tuple[int, int, int]:
        self.validate(arch)
        return (self.cfg.in_channels, self.cfg.resolution, self.cfg.resolution)

    def active(self, arch: Mapping[str, Any]) -> _Active:
        """The validated arch as (embed_dim, heads per active layer, MLP hidden units per layer)."""
        a = self.validate(arch)
        e, d = a["embed_dim"], a["depth"]
        return _Active(e, tuple(a["heads"][:d]), tuple(e * r for r in a["mlp_ratio"][:d]))

    # ----- cost --------------------------------------------------------------------------------
    def cost(self, arch: Mapping[str, Any]) -> Cost:
        """Analytic costs of the extracted subnet at batch 1.

        ``macs`` counts what ``FlopCounterMode`` counts (FLOPs / 2): the patch conv, every
        Linear, and the two attention matmuls (q k^T and attn v); LayerNorm, softmax, GELU,
        additions and pooling are free. ``params`` is the extracted module's parameter count.
        ``activation_bytes`` is the peak float32 bytes alive over the ops of the forward pass,
        where an op keeps its inputs, its outputs, and (inside a layer) the residual stream alive;
        q and k stay alive until the attention scores exist, v until it is used, and the score
        matrix is materialised (see `_activation_peak`).
        """
        c = self.cfg
        act = self.active(arch)
        e, n, hd, cin, k = act.embed_dim, c.num_tokens, c.head_dim, c.in_channels, c.patch_size
        macs = n * e * cin * k * k + e * c.num_classes
        params = e * cin * k * k + e + n * e + 2 * e + e * c.num_classes + c.num_classes
        for h, hid in zip(act.heads, act.hidden):
            a = h * hd
            macs += 3 * n * e * a + 2 * h * n * n * hd + n * a * e + 2 * n * e * hid
            params += 2 * e + 3 * (e * a + a) + (a * e + e) + 2 * e + (e * hid + hid) + (hid * e + e)
        return Cost(macs=macs, params=params, activation_bytes=BYTES_PER_VALUE * _activation_peak(c, act))

    def build_supernet(self) -> ViTSupernet:
        return ViTSupernet(self)


def _activation_peak(c: ViTConfig, act: _Active) -> int:
    """Peak number of float values alive at batch 1, as documented in `ViTSpace.cost`."""
    n, e, r = c.num_tokens, act.embed_dim, c.resolution
    ne = n * e
    live = [c.in_channels * r * r + ne, 2 * ne]  # patch conv; + positional embedding
    for h, hid in zip(act.heads, act.hidden):
        a, s = n * h * c.head_dim, h * n * n  # attention width x tokens; score matrix
        live += [
            2 * ne,  # ln1: x, y
            2 * ne + 3 * a,  # q, k, v projections: x, y, q, k, v
            ne + 3 * a + s,  # scores: x, q, k, v, s
            ne + a + 2 * s,  # softmax: x, v, s, p
            ne + s + 2 * a,  # p @ v: x, p, v, o
            2 * ne + a,  # proj: x, o, out
            3 * ne,  # residual add: x, out, x'
            2 * ne,  # ln2
            2 * ne + n * hid,  # fc1: x, y, z
            ne + 2 * n * hid,  # gelu: x, z, g
            2 * ne + n * hid,  # fc2: x, g, out
            3 * ne,  # residual add
        ]
    live += [2 * ne, ne + e, e + c.num_classes]  # final norm; mean; classifier
    return max(live)


# ---------------------------------------------------------------------------------------------
# The standalone subnet


class _Block(nn.Module):
    """One static pre-norm transformer layer (what a supernet layer extracts to)."""

    def __init__(self, embed_dim: int, heads: int, head_dim: int, hidden: int, **factory: Any) -> None:
        super().__init__()
        self.heads, self.head_dim, self.scale = heads, head_dim, head_dim**-0.5
        width = heads * head_dim
        self.ln1 = nn.LayerNorm(embed_dim, eps=LN_EPS, **factory)
        self.q = nn.Linear(embed_dim, width, **factory)
        self.k = nn.Linear(embed_dim, width, **factory)
        self.v = nn.Linear(embed_dim, width, **factory)
        self.proj = nn.Linear(width, embed_dim, **factory)
        self.ln2 = nn.LayerNorm(embed_dim, eps=LN_EPS, **factory)
        self.fc1 = nn.Linear(embed_dim, hidden, **factory)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, embed_dim, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        y = self.ln1(x)
        q = self.q(y).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(y).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(y).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.heads * self.head_dim))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class ViTSubnet(nn.Module):
    """A static ViT: plain Conv2d / Linear / LayerNorm layers, no slicing.

    Parameter names match `ViTSupernet`'s, so each extracted tensor is the leading slice of the
    supernet tensor with the same name.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        resolution: int,
        patch_size: int,
        embed_dim: int,
        heads: Sequence[int],
        hidden: Sequence[int],
        head_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n, f = (resolution // patch_size) ** 2, {"device": device, "dtype": dtype}
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size, **f)
        self.pos_embed = nn.Parameter(torch.zeros(1, n, embed_dim, **f))
        self.blocks = nn.ModuleList(_Block(embed_dim, h, head_dim, hid, **f) for h, hid in zip(heads, hidden))
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS, **f)
        self.head = nn.Linear(embed_dim, num_classes, **f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))


# ---------------------------------------------------------------------------------------------
# The supernet


class _ElasticBlock(nn.Module):
    """Parameter holder for one supernet layer at full size; `ViTSupernet` runs it sliced."""

    def __init__(self, embed_dim: int, width: int, hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.q = nn.Linear(embed_dim, width)
        self.k = nn.Linear(embed_dim, width)
        self.v = nn.Linear(embed_dim, width)
        self.proj = nn.Linear(width, embed_dim)
        self.ln2 = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, embed_dim)


class _Weights(NamedTuple):
    """The active subnet's weight slices, in forward order."""

    patch_w: torch.Tensor
    patch_b: torch.Tensor
    pos: torch.Tensor
    layers: tuple[tuple[torch.Tensor, ...], ...]  # per layer: ln1 w,b; q,k,v,proj w,b; ln2 w,b; fc1,fc2 w,b
    norm_w: torch.Tensor
    norm_b: torch.Tensor
    head_w: torch.Tensor
    head_b: torch.Tensor


class ViTSupernet(nn.Module, Supernet):
    """Weight-sharing supernet of a `ViTSpace`; starts with the largest subnet active.

    With autograd off (evaluation, search) the contiguous weight slices of the active subnet
    are cached, keyed by the subnet and every parameter's version counter and storage, so
    repeated forwards cost what the extracted module costs. In training the slices are views,
    so gradients flow into the shared weights.
    """

    space: ViTSpace

    def __init__(self, space: ViTSpace) -> None:
        super().__init__()
        self.space = space
        c = space.cfg
        e, width, hidden = max(c.embed_dims), max(c.heads) * c.head_dim, max(c.embed_dims) * max(c.mlp_ratios)
        self.patch_embed = nn.Conv2d(c.in_channels, e, c.patch_size, stride=c.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_tokens, e))
        self.blocks = nn.ModuleList(_ElasticBlock(e, width, hidden) for _ in range(c.max_depth))
        self.norm = nn.LayerNorm(e, eps=LN_EPS)
        self.head = nn.Linear(e, c.num_classes)
        self._init_weights()
        self._arch: Arch = {}
        self._act = _Active(0, (), ())
        self._cache_key: tuple[Any, ...] | None = None
        self._cache: _Weights | None = None
        self._param_list: list[nn.Parameter] | None = None
        self.register_load_state_dict_post_hook(_drop_cache_hook)
        self.set_active(space.largest())

    def _init_weights(self) -> None:
        """timm's ViT init: truncated normal (std 0.02) linears and positions, zero biases, unit norms."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Patch conv: lecun-normal on the flattened patch, as timm's jax-style init.
        fan_in = self.patch_embed.weight[0].numel()
        nn.init.trunc_normal_(self.patch_embed.weight, std=fan_in**-0.5)
        nn.init.zeros_(self.patch_embed.bias)  # type: ignore[arg-type]

    # ----- the active subnet -------------------------------------------------------------------
    @property
    def active_arch(self) -> Arch:
        return {k: list(v) if isinstance(v, list) else v for k, v in self._arch.items()}

    def set_active(self, arch: Mapping[str, Any]) -> None:
        a = self.space.validate(arch)
        self._act, self._arch = self.space.active(a), a

    def _slices(self) -> _Weights:
        """Views of the active subnet's leading weight slices (gradients reach the full weights)."""
        e, c = self._act.embed_dim, self.space.cfg
        layers = []
        for blk, h, hid in zip(self.blocks, self._act.heads, self._act.hidden):
            a = h * c.head_dim
            layers.append(
                (
                    blk.ln1.weight[:e], blk.ln1.bias[:e],
                    blk.q.weight[:a, :e], blk.q.bias[:a],
                    blk.k.weight[:a, :e], blk.k.bias[:a],
                    blk.v.weight[:a, :e], blk.v.bias[:a],
                    blk.proj.weight[:e, :a], blk.proj.bias[:e],
                    blk.ln2.weight[:e], blk.ln2.bias[:e],
                    blk.fc1.weight[:hid, :e], blk.fc1.bias[:hid],
                    blk.fc2.weight[:e, :hid], blk.fc2.bias[:e],
                )
            )  # fmt: skip
        return _Weights(
            self.patch_embed.weight[:e], self.patch_embed.bias[:e],  # type: ignore[index]
            self.pos_embed[:, :, :e], tuple(layers),
            self.norm.weight[:e], self.norm.bias[:e], self.head.weight[:, :e], self.head.bias,
        )  # fmt: skip

    def _weights(self) -> _Weights:
        """`_slices`, made contiguous and cached while autograd is off."""
        if torch.is_grad_enabled():
            return self._slices()
        if self._param_list is None:
            self._param_list = list(self.parameters())
        ps = self._param_list
        key = (self._act, tuple(p._version for p in ps), tuple(p.data_ptr() for p in ps))
        if key != self._cache_key or self._cache is None:
            w = self._slices()
            self._cache = _Weights(
                *(t.contiguous() for t in w[:3]),
                tuple(tuple(t.contiguous() for t in layer) for layer in w.layers),
                *(t.contiguous() for t in w[4:]),
            )
            self._cache_key = key
        return self._cache

    def drop_cache(self) -> None:
        """Forget cached weight slices (done automatically on moves, loads and in-place updates)."""
        self._cache_key, self._cache, self._param_list = None, None, None

    def _apply(self, fn: Any, recurse: bool = True) -> ViTSupernet:
        self.drop_cache()
        return super()._apply(fn, recurse)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, hd = self._weights(), self.space.cfg.head_dim
        e, scale = self._act.embed_dim, hd**-0.5
        x = F.conv2d(x, w.patch_w, w.patch_b, stride=self.space.cfg.patch_size)
        x = x.flatten(2).transpose(1, 2) + w.pos
        b, n, _ = x.shape
        for h, (l1w, l1b, qw, qb, kw, kb, vw, vb, pw, pb, l2w, l2b, f1w, f1b, f2w, f2b) in zip(
            self._act.heads, w.layers
        ):
            y = F.layer_norm(x, (e,), l1w, l1b, LN_EPS)
            q = F.linear(y, qw, qb).view(b, n, h, hd).transpose(1, 2)
            k = F.linear(y, kw, kb).view(b, n, h, hd).transpose(1, 2)
            v = F.linear(y, vw, vb).view(b, n, h, hd).transpose(1, 2)
            attn = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
            x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, h * hd), pw, pb)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (e,), l2w, l2b, LN_EPS), f1w, f1b)), f2w, f2b)
        return F.linear(F.layer_norm(x, (e,), w.norm_w, w.norm_b, LN_EPS).mean(dim=1), w.head_w, w.head_b)

    # ----- extraction and channel sorting ------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any] | None = None) -> ViTSubnet:
        """A standalone `ViTSubnet` with cloned weight slices, in this supernet's train/eval mode."""
        act = self._act if arch is None else self.space.active(arch)
        c = self.space.cfg
        net = ViTSubnet(  # on "meta": shapes only, as every tensor is replaced below
            c.in_channels, c.num_classes, c.resolution, c.patch_size,
            act.embed_dim, act.heads, act.hidden, c.head_dim, device="meta",
        )  # fmt: skip
        src = dict(self.named_parameters())
        for name, dst in list(net.named_parameters()):
            owner, _, leaf = name.rpartition(".")
            piece = src[name][tuple(slice(0, s) for s in dst.shape)]
            piece = piece.clone(memory_format=torch.contiguous_format)
            setattr(net.get_submodule(owner), leaf, nn.Parameter(piece))
        return net.train(self.training)

    @torch.no_grad()
    def reorder_channels(self, heads: bool = True) -> None:
        """Sort each layer's MLP hidden units (and, with `heads`, its attention heads) by importance.

        Importance is the L1 norm of the unit's fc2 column (of the head's proj columns), so the
        smaller MLP ratios and head counts keep the most important units. The largest subnet's
        function is unchanged. Call between training phases: optimiser state is not permuted.
        """
        hd = self.space.cfg.head_dim
        for blk in self.blocks:
            idx = torch.argsort(blk.fc2.weight.abs().sum(dim=0), descending=True, stable=True)
            blk.fc1.weight.copy_(blk.fc1.weight[idx])
            blk.fc1.bias.copy_(blk.fc1.bias[idx])
            blk.fc2.weight.copy_(blk.fc2.weight[:, idx])
            if heads:
                n_heads = blk.proj.weight.shape[1] // hd
                imp = blk.proj.weight.abs().view(-1, n_heads, hd).sum(dim=(0, 2))
                order = torch.argsort(imp, descending=True, stable=True)
                rows = (order[:, None] * hd + torch.arange(hd, device=order.device)).flatten()
                for lin in (blk.q, blk.k, blk.v):
                    lin.weight.copy_(lin.weight[rows])
                    lin.bias.copy_(lin.bias[rows])
                blk.proj.weight.copy_(blk.proj.weight[:, rows])


def _drop_cache_hook(module: nn.Module, incompatible_keys: Any) -> None:
    if isinstance(module, ViTSupernet):
        module.drop_cache()


# ---------------------------------------------------------------------------------------------
# Presets


def _build(name: str, cfg: ViTConfig, overrides: Mapping[str, Any]) -> ViTSpace:
    return ViTSpace(name, apply_overrides(cfg, overrides, name), overrides)


@register_space("vit_tiny")
def vit_tiny(**overrides: Any) -> ViTSpace:
    """A tiny elastic ViT for 16x16 images (4x4 patches, width 48-96, 2-4 layers, 1-4 heads)."""
    return _build("vit_tiny", ViTConfig(), overrides)
