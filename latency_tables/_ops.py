"""Standalone torch modules for op keys: what the harness times for each table row.

A key says everything that changes an op's latency, so the module is built from the key alone,
from the same static classes that extracted subnets are made of (`MBConv`, `ConvBNAct`, the
NAS-Bench-201 ops, a one-layer `ViTSubnet`). Weights are random: latency does not depend on them.
"""

from __future__ import annotations

import torch
from torch import nn

from latency_tables._keys import parse_key
from search_spaces._elastic import build_activation
from search_spaces._mbv3 import ConvBNAct, MBConv
from search_spaces._nb201 import ReLUConvBN, ResNetBasicblock
from search_spaces._vit import ViTSubnet


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _stride_for(key: str, size_in: int, size_out: int, kernel: int) -> int:
    for stride in (1, 2, 3, 4):
        if _conv_out(size_in, kernel, stride) == size_out:
            return stride
    raise ValueError(
        f"Op key {key!r}: no stride maps {size_in} px to {size_out} px with a {kernel}x{kernel} kernel."
    )


def _check(key: str, ok: bool, why: str) -> None:
    if not ok:
        raise ValueError(f"Op key {key!r} describes no buildable op: {why}.")


class _Pool(nn.Module):
    """MBv3 head pooling: mean over height and width, kept 4-D (as `MBv3Head`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class _Logits(nn.Module):
    """MBv3 classifier: flatten -> dropout (identity in eval) -> linear (as `MBv3Head`)."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(x, 1)))


class _Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class _Zeros(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class _NB201Head(nn.Module):
    """BN-ReLU -> global average pooling -> classifier (the benchmark's tail)."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.lastact = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


class _PatchEmbed(nn.Module):
    """Patch conv -> tokens -> + positional embedding (as `ViTSubnet.forward` begins)."""

    def __init__(self, net: ViTSubnet) -> None:
        super().__init__()
        self.patch_embed, self.pos_embed = net.patch_embed, net.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed


class _ViTHead(nn.Module):
    """Final LayerNorm -> mean over tokens -> classifier (as `ViTSubnet.forward` ends)."""

    def __init__(self, net: ViTSubnet) -> None:
        super().__init__()
        self.norm, self.head = net.norm, net.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x).mean(dim=1))


def _vit(
    tokens: int,
    embed: int,
    heads: int = 1,
    head_dim: int = 16,
    hidden: int = 1,
    classes: int = 1,
    in_channels: int = 3,
    resolution: int | None = None,
    patch: int = 1,
) -> ViTSubnet:
    res = resolution if resolution is not None else patch * int(round(tokens**0.5))
    return ViTSubnet(in_channels, classes, res, patch, embed, [heads], [hidden], head_dim)


def build_op(key: str, batch_size: int = 1) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The module an op key names, in eval mode, and example inputs of batch `batch_size`.

    Raises:
        ValueError: a malformed key, or one whose shapes no module can have (the message quotes it).
    """
    op, f = parse_key(key)
    b = batch_size

    def image(shape: tuple[int, ...]) -> torch.Tensor:
        h, w, c = shape
        return torch.randn(b, c, h, w)

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    if op in ("Conv", "Conv_1"):
        (hi, wi, ci), (ho, wo, co) = f["input"], f["output"]
        kernel = 3 if op == "Conv" else 1
        stride = _stride_for(key, hi, ho, kernel)
        _check(key, _conv_out(wi, kernel, stride) == wo, "height and width do not shrink alike")
        module, inputs = ConvBNAct(ci, co, kernel, stride, "h_swish"), (image(f["input"]),)
    elif op == "expanded_conv":
        (hi, wi, ci), (ho, wo, co) = f["input"], f["output"]
        _check(key, f["kernel"] % 2 == 1, "the kernel must be odd")
        _check(
            key,
            f["stride"] in (1, 2)
            and _conv_out(hi, f["kernel"], f["stride"]) == ho
            and _conv_out(wi, f["kernel"], f["stride"]) == wo,
            "output size does not follow from input and stride",
        )
        _check(
            key,
            bool(f["idskip"]) == (f["stride"] == 1 and ci == co),
            "idskip must be 1 exactly when stride is 1 and input and output widths match",
        )
        module = MBConv(
            ci,
            f["expand"],
            co,
            f["kernel"],
            f["stride"],
            "h_swish" if f["hs"] else "relu",
            bool(f["se"]),
            expand_conv=f["expand"] != ci,
        )
        inputs = (image(f["input"]),)
    elif op == "AvgPool2D":
        _check(key, f["output"] == (1, 1, f["input"][2]), "global pooling keeps the width and outputs 1x1")
        module, inputs = _Pool(), (image(f["input"]),)
    elif op == "Conv_2":
        _check(
            key, f["input"][:2] == (1, 1) and f["output"][:2] == (1, 1), "the feature mix runs on 1x1 inputs"
        )
        module = nn.Sequential()
        module.add_module("conv", nn.Conv2d(f["input"][2], f["output"][2], 1, bias=False))
        module.add_module("act", build_activation("h_swish"))
        inputs = (image(f["input"]),)
    elif op == "Logits":
        _check(key, f["input"][:2] == (1, 1), "the classifier runs on a 1x1 input")
        module, inputs = _Logits(f["input"][2], f["output"][0]), (image(f["input"]),)
    elif op == "nb201_stem":
        (hi, _, ci), (ho, _, co) = f["input"], f["output"]
        _check(key, f["input"][:2] == f["output"][:2], "the stem keeps the resolution")
        module = nn.Sequential(nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co))
        inputs = (image(f["input"]),)
    elif op in ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"):
        _check(key, f["input"] == f["output"], "cell ops keep shape")
        c = f["input"][2]
        if op == "avg_pool_3x3":
            module = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        else:
            module = ReLUConvBN(c, c, 1 if op == "nor_conv_1x1" else 3, 1)
        inputs = (image(f["input"]),)
    elif op == "nb201_add":
        module, inputs = _Add(), (image(f["input"]), image(f["input"]))
    elif op == "nb201_zeros":
        module, inputs = _Zeros(), (image(f["input"]),)
    elif op == "resnet_basicblock":
        (hi, wi, ci), (ho, wo, co) = f["input"], f["output"]
        _check(
            key,
            ho == _conv_out(hi, 3, 2) and wo == _conv_out(wi, 3, 2) and hi % 2 == 0 and wi % 2 == 0,
            "the reduction halves an even resolution",
        )
        module, inputs = ResNetBasicblock(ci, co), (image(f["input"]),)
    elif op == "nb201_head":
        module, inputs = _NB201Head(f["input"][2], f["output"][0]), (image(f["input"]),)
    elif op == "patch_embed":
        (hi, wi, ci), (n, e), p = f["input"], f["output"], f["patch"]
        _check(key, hi == wi and hi % p == 0 and (hi // p) ** 2 == n, "tokens must be (side / patch)^2")
        net = _vit(n, e, in_channels=ci, resolution=hi, patch=p)
        module, inputs = _PatchEmbed(net), (image(f["input"]),)
    elif op == "transformer_layer":
        (n, e) = f["input"]
        net = _vit(n, e, f["heads"], f["head_dim"], f["mlp"], patch=1, resolution=None)
        module, inputs = net.blocks[0], (torch.randn(b, n, e),)
    elif op == "vit_head":
        (n, e) = f["input"]
        net = _vit(n, e, classes=f["output"][0])
        module, inputs = _ViTHead(net), (torch.randn(b, n, e),)
    else:  # pragma: no cover - every schema op is handled above
        raise ValueError(f"No builder for op {op!r}.")
    return module.eval(), inputs
