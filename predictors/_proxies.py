"""Zero-cost proxies: one forward/backward pass on an untrained (or supernet-inherited) network.

Each proxy scores a model on one batch ``(x, y)``; a higher score predicts a better network
(params and MACs are the usual baselines). `compute_proxy` runs a proxy on a deep copy of the
model, so the caller's weights, gradients and BN statistics are untouched, and inside a forked
torch RNG seeded with `seed`, so a score is deterministic for a given model, batch and seed.

References: synflow (Tanaka et al., 2020), snip (Lee et al., 2019), grad_norm and the
"zero-cost proxies" study (Abdelfattah et al., 2021), NASWOT (Mellor et al., 2021: the
log-determinant of the activation-pattern Hamming kernel) and its first version, jacov (the
eigenvalue score of the input-Jacobian correlation matrix).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import Registry

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, LossFn], float]

PROXIES: Registry[float] = Registry("proxy")

_WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
WeightLayer = nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Mish)


def register_proxy(name: str) -> Callable[[ProxyFn], ProxyFn]:
    """Decorator registering ``fn(model, x, y, loss_fn) -> float`` as proxy `name`."""
    return PROXIES.register(name)  # type: ignore[return-value]


def list_proxies(pattern: str = "*") -> list[str]:
    """Registered proxy names matching an fnmatch `pattern`, sorted."""
    return PROXIES.names(pattern)


def compute_proxy(
    name: str,
    model: nn.Module,
    batch: Sequence[torch.Tensor],
    *,
    seed: int = 0,
    loss_fn: LossFn | None = None,
) -> float:
    """Score `model` with proxy `name` on `batch` = ``(x, y)``.

    Args:
        name: A name from `list_proxies()`.
        model: Any ``nn.Module`` (a fresh or supernet-extracted subnet); it is not modified.
        batch: Inputs ``x`` (N, ...) and targets ``y`` (N,) (class indices for the default loss).
        seed: Seeds torch's RNG (dropout, ...) for the computation only.
        loss_fn: Loss for gradient-based proxies (default: cross-entropy).

    Raises:
        KeyError: unknown proxy name (the message lists the known ones).
        ValueError: a malformed batch, a model without parameters, or a model the proxy cannot score.
    """
    fn = PROXIES.get_factory(name)
    x, y = check_batch(batch)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, but got {type(model).__name__}.")
    if not any(True for _ in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no parameters; proxies need a network with weights.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an int, but got {seed!r}.")
    work = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        score = fn(work, x.detach().clone(), y.detach().clone(), loss_fn or F.cross_entropy)
    return float(score)


def compute_proxies(
    names: Sequence[str], model: nn.Module, batch: Sequence[torch.Tensor], *, seed: int = 0
) -> dict[str, float]:
    """``{name: compute_proxy(name, model, batch, seed=seed)}`` for each name."""
    return {n: compute_proxy(n, model, batch, seed=seed) for n in names}


def check_batch(batch: Any) -> Batch:
    """``(x, y)`` as tensors: x floating point with a batch dimension, y with one entry per row of x."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(
            f"batch must be a pair (x, y) of tensors, but got {type(batch).__name__} {_short(batch)}."
        )
    x, y = batch
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"batch must hold tensors, but got x: {type(x).__name__}, y: {type(y).__name__}.")
    if not x.is_floating_point() or x.dim() < 2:
        raise ValueError(
            f"x must be a floating-point tensor (N, ...), but got dtype {x.dtype}, shape {tuple(x.shape)}."
        )
    if x.shape[0] < 2:
        raise ValueError(
            f"The batch needs at least 2 samples (batch statistics, kernels), but x has {x.shape[0]}."
        )
    if y.dim() == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have one entry per sample: x has {x.shape[0]} rows, y has shape {tuple(y.shape)}."
        )
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf; inputs must be finite.")
    return x, y


def synthetic_batch(
    input_shape: Sequence[int], *, batch_size: int = 64, num_classes: int = 10, seed: int = 0
) -> Batch:
    """A seeded batch of standard-normal images and uniform labels, for data-free scoring."""
    if batch_size < 2:
        raise ValueError(f"`batch_size >= 2` must hold, but got {batch_size=}.")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *input_shape), generator=g)
    y = torch.randint(0, num_classes, (batch_size,), generator=g)
    return x, y


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


def _weight_layers(model: nn.Module) -> list[WeightLayer]:
    layers: list[WeightLayer] = [m for m in model.modules() if isinstance(m, _WEIGHT_LAYERS)]
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no Conv/Linear layers; this proxy scores their weights. "
            "Extract a static subnet first (supernet.extract(arch))."
        )
    return layers


def _backward_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> list[WeightLayer]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    return _weight_layers(model)


@register_proxy("grad_norm")
def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    """Sum over Conv/Linear layers of the L2 norm of the loss gradient of their weights."""
    layers = _backward_loss(model, x, y, loss_fn)
    return float(sum(m.weight.grad.norm().item() for m in layers if m.weight.grad is not None))


@register_proxy("snip")
def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    """Sum of the connection sensitivities ``|w * dL/dw|`` over Conv/Linear weights."""
    layers = _backward_loss(model, x, y, loss_fn)
    return float(
        sum((m.weight.grad * m.weight).abs().sum().item() for m in layers if m.weight.grad is not None)
    )


@register_proxy("synflow")
def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    """Synaptic flow: ``sum |w * dR/dw|`` with ``R`` the output sum of the |weights| network on ones.

    Data-free: uses only x's shape. Runs in float64 and eval mode (BN with running statistics,
    which batch statistics of a constant input would zero out).
    """
    model.double().eval()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    layers = _weight_layers(model)
    model.zero_grad(set_to_none=True)
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64)
    model(ones).sum().backward()
    score = sum((m.weight.grad * m.weight).abs().sum().item() for m in layers if m.weight.grad is not None)
    return float(score)


@register_proxy("naswot")
def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    """NASWOT: log-determinant of the Hamming-similarity kernel of the batch's activation patterns.

    Each activation module (ReLU, Hardswish, GELU, ...) contributes the binary code ``input > 0``
    per sample; ``K[i, j]`` counts the units where samples i and j agree.
    """
    acts = [m for m in model.modules() if isinstance(m, _ACTIVATIONS)]
    if not acts:
        raise ValueError(
            f"{type(model).__name__} has no activation modules "
            f"({', '.join(a.__name__ for a in _ACTIVATIONS)}); "
            "naswot reads their on/off patterns."
        )
    n = x.shape[0]
    K = torch.zeros((n, n), dtype=torch.float64)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        codes = (inputs[0].detach().reshape(n, -1) > 0).double()
        K.add_(codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T)

    handles = [m.register_forward_pre_hook(hook) for m in acts]
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(K)
    return float(logdet) if sign > 0 else -math.inf


@register_proxy("jacov")
def jacov(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    """Jacobian covariance (NASWOT v1): ``-sum(log(v + k) + 1/(v + k))`` over the eigenvalues v of
    the correlation matrix of per-sample input gradients, k = 1e-5. Degenerate (constant)
    gradients count as uncorrelated-with-nothing and score low."""
    model.train()
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.backward(torch.ones_like(out))
    # An output that does not depend on the input (e.g. a cell of only "none" ops) has a zero Jacobian.
    grad = x.grad if x.grad is not None else torch.zeros_like(x)
    J = grad.detach().reshape(x.shape[0], -1).double().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(J)
    corr = np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    v = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


@register_proxy("params")
def params(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    """Number of trainable parameters (baseline)."""
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


@register_proxy("macs")
def macs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    """Multiply-accumulates of Conv/Linear layers for one sample of x's shape (baseline)."""
    total = [0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            total[0] += output.numel() * module.in_features
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            per_out = (module.in_channels // module.groups) * math.prod(module.kernel_size)
            total[0] += output.numel() * per_out

    handles = [m.register_forward_hook(hook) for m in _weight_layers(model)]
    try:
        model.eval()
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return float(total[0])
