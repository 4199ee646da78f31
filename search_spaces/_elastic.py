"""Elastic convolution building blocks with weight slicing (Once-for-All semantics).

Each layer holds the weights of its largest version; a smaller version uses the leading
slice (first channels, centre of the kernel). Smaller kernels are derived from the larger
ones through OFA's learned kernel-transformation matrices (7x7 -> 5x5 -> 3x3).

In eval mode with gradients off, the sliced (and transformed) weights are cached per active
configuration and invalidated by the tensors' version counters, so evaluating a subnet inside
the supernet costs about what the extracted static network costs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(v: float, divisor: int = 8, min_val: int | None = None) -> int:
    """Round channels as OFA/TF-MobileNet do: to a multiple of `divisor`, never 10% below `v`."""
    min_val = divisor if min_val is None else min_val
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def build_activation(name: str) -> nn.Module:
    """A fresh activation module: ``relu``, ``h_swish`` or ``none``."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "h_swish":
        return nn.Hardswish(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"Unknown activation {name!r}; known: relu, h_swish, none.")


class _WeightCache:
    """Caches derived weights in eval mode, keyed by config and the sources' version counters."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.value: tuple[torch.Tensor | None, ...] = ()

    def get(
        self,
        module: nn.Module,
        config: tuple,
        sources: tuple[torch.Tensor, ...],
        compute: Callable[[], tuple[torch.Tensor | None, ...]],
    ) -> tuple[torch.Tensor | None, ...]:
        if module.training or torch.is_grad_enabled():
            return compute()
        key = (config, tuple(t._version for t in sources), tuple(t.data_ptr() for t in sources))
        if key != self.key:
            self.value = tuple(None if t is None else t.contiguous() for t in compute())
            self.key = key
        return self.value


class DynamicConv2d(nn.Module):
    """A dense (groups=1) convolution whose in/out channels are sliced from the largest ones."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int = 1, stride: int = 1, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, kernel_size, stride, kernel_size // 2, bias=bias)
        self._cache = _WeightCache()

    def active_weights(self, in_channels: int, out_channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        conv = self.conv
        sources = (conv.weight,) if conv.bias is None else (conv.weight, conv.bias)

        def compute() -> tuple[torch.Tensor, torch.Tensor | None]:
            bias = None if conv.bias is None else conv.bias[:out_channels]
            return conv.weight[:out_channels, :in_channels], bias

        w, b = self._cache.get(self, (in_channels, out_channels), sources, compute)
        assert w is not None
        return w, b

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        w, b = self.active_weights(x.size(1), out_channels)
        return F.conv2d(x, w, b, self.conv.stride, self.conv.padding)


class DynamicDepthwiseConv2d(nn.Module):
    """Depthwise convolution with elastic kernel size via OFA's kernel transformation matrices."""

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int = 1):
        super().__init__()
        self.kernel_sizes = tuple(sorted(set(kernel_sizes)))
        self.max_kernel = self.kernel_sizes[-1]
        self.stride = stride
        self.conv = nn.Conv2d(
            max_channels, max_channels, self.max_kernel, stride, self.max_kernel // 2, groups=max_channels, bias=False
        )
        # One matrix per step down (e.g. 7to5, 5to3), identity at init as in OFA.
        self.transforms = nn.ParameterDict(
            {
                f"{big}to{small}": nn.Parameter(torch.eye(small * small))
                for small, big in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:])
            }
        )
        self._cache = _WeightCache()

    def active_filter(self, channels: int, kernel_size: int) -> torch.Tensor:
        """The (channels, 1, k, k) filter of the active subnet."""
        sources = (self.conv.weight, *self.transforms.values())

        def compute() -> tuple[torch.Tensor]:
            filt = self.conv.weight[:channels]
            for big, small in zip(reversed(self.kernel_sizes[1:]), reversed(self.kernel_sizes[:-1])):
                if big <= kernel_size:
                    break
                start = (big - small) // 2
                centre = filt[:, :, start : start + small, start : start + small].reshape(-1, small * small)
                filt = F.linear(centre, self.transforms[f"{big}to{small}"]).view(channels, 1, small, small)
            return (filt,)

        (filt,) = self._cache.get(self, (channels, kernel_size), sources, compute)
        assert filt is not None
        return filt

    def forward(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        channels = x.size(1)
        return F.conv2d(x, self.active_filter(channels, kernel_size), None, self.stride, kernel_size // 2, 1, channels)


class DynamicBatchNorm2d(nn.Module):
    """BatchNorm over the leading `C` channels; running statistics of the slice are updated in place."""

    def __init__(self, max_features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(max_features, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, c = self.bn, x.size(1)
        if c == bn.num_features:
            return bn(x)
        momentum = 0.0
        if bn.training and bn.track_running_stats:
            assert bn.num_batches_tracked is not None
            bn.num_batches_tracked.add_(1)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        assert bn.running_mean is not None and bn.running_var is not None
        return F.batch_norm(
            x,
            bn.running_mean[:c],
            bn.running_var[:c],
            bn.weight[:c],
            bn.bias[:c],
            bn.training or not bn.track_running_stats,
            momentum,
            bn.eps,
        )


class DynamicSE(nn.Module):
    """Squeeze-and-excitation (reduction 4, hard sigmoid) whose widths follow the active channels."""

    REDUCTION = 4

    def __init__(self, max_channels: int):
        super().__init__()
        mid = make_divisible(max_channels // self.REDUCTION)
        self.reduce = nn.Conv2d(max_channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, max_channels, 1, bias=True)
        self._cache = _WeightCache()

    def active_weights(self, channels: int) -> tuple[torch.Tensor | None, ...]:
        mid = make_divisible(channels // self.REDUCTION)
        r, e = self.reduce, self.expand

        def compute() -> tuple[torch.Tensor, ...]:
            return r.weight[:mid, :channels], r.bias[:mid], e.weight[:channels, :mid], e.bias[:channels]

        return self._cache.get(self, (channels,), (r.weight, r.bias, e.weight, e.bias), compute)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rw, rb, ew, eb = self.active_weights(x.size(1))
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, rw, rb), inplace=True)
        y = F.hardsigmoid(F.conv2d(y, ew, eb), inplace=True)
        return x * y


class SqueezeExcite(nn.Module):
    """Static squeeze-and-excitation, as extracted from `DynamicSE`."""

    def __init__(self, channels: int, device: torch.device | str | None = None):
        super().__init__()
        mid = make_divisible(channels // DynamicSE.REDUCTION)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True, device=device)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(self.reduce(y), inplace=True)
        y = F.hardsigmoid(self.expand(y), inplace=True)
        return x * y


def assign(module: nn.Module, **tensors: torch.Tensor | None) -> None:
    """Give `module` fresh parameters holding copies of `tensors` (e.g. ``weight=..., bias=...``)."""
    for name, value in tensors.items():
        if value is not None:
            setattr(module, name, nn.Parameter(value.detach().clone(memory_format=torch.contiguous_format)))


def assign_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, channels: int) -> None:
    """Make `dst` a copy of the first `channels` channels of `src` (affine and running statistics)."""
    assert src.running_mean is not None and src.running_var is not None
    assign(dst, weight=src.weight[:channels], bias=src.bias[:channels])
    dst.running_mean = src.running_mean[:channels].clone()
    dst.running_var = src.running_var[:channels].clone()
    if src.num_batches_tracked is not None:
        dst.num_batches_tracked = src.num_batches_tracked.clone()
    dst.eps, dst.momentum = src.eps, src.momentum


def permute_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    """Re-order a BatchNorm's channels in place."""
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            assert t is not None
            t.copy_(t[idx])
