"""Zero-cost proxies: registry, determinism per seed, no side effects, errors on bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import predictors as pr

PROXIES = pr.list_proxies()


def toy_net(seed: int = 0, dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(8, 5),
    )


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return pr.synthetic_batch((3, 8, 8), batch_size=16, num_classes=5, seed=0)


def test_registry() -> None:
    assert set(PROXIES) == {"synflow", "snip", "grad_norm", "naswot", "jacov", "params", "macs"}
    with pytest.raises(KeyError, match="Unknown proxy 'zen'"):
        pr.compute_proxy("zen", toy_net(), pr.synthetic_batch((3, 8, 8), batch_size=4))


@pytest.mark.parametrize("name", PROXIES)
def test_deterministic_and_side_effect_free(name: str, batch) -> None:
    net = toy_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    a = pr.compute_proxy(name, net, batch, seed=7)
    b = pr.compute_proxy(name, net, batch, seed=7)
    assert a == b and math.isfinite(a)
    assert net.training and all(p.grad is None for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} changed {k}"


def test_seed_matters_where_randomness_is_used(batch) -> None:
    net = toy_net(dropout=0.5)
    assert pr.compute_proxy("grad_norm", net, batch, seed=0) != pr.compute_proxy(
        "grad_norm", net, batch, seed=1
    )


def test_baselines_hand_computed(batch) -> None:
    net = toy_net()
    n_params = 3 * 8 * 9 + 16 + 8 * 9 + 8 + 8 * 5 + 5
    assert pr.compute_proxy("params", net, batch) == n_params
    macs = 8 * 64 * 27 + 8 * 64 * 9 + 8 * 5
    assert pr.compute_proxy("macs", net, batch) == macs


def test_compute_proxies_and_ordering(batch) -> None:
    small, big = toy_net(), nn.Sequential(toy_net(), nn.ReLU(), nn.Linear(5, 5))
    s = pr.compute_proxies(["params", "synflow"], small, batch)
    b = pr.compute_proxies(["params", "synflow"], big, batch)
    assert set(s) == {"params", "synflow"} and b["params"] > s["params"]


def test_degenerate_network_scores_low(batch) -> None:
    class Const(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(1, 5)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.fc(torch.ones(x.shape[0], 1)))

    assert pr.compute_proxy("jacov", Const(), batch) < pr.compute_proxy("jacov", toy_net(), batch)
    assert pr.compute_proxy("naswot", Const(), batch) == -math.inf


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.randn(4, 3, 8, 8), "pair"),
        ((torch.randn(4, 3, 8, 8),), "pair"),
        ((torch.randn(4, 3, 8, 8), [0, 1, 2, 3]), "tensors"),
        ((torch.randint(0, 2, (4, 3, 8, 8)), torch.zeros(4, dtype=torch.long)), "floating-point"),
        ((torch.randn(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)), "at least 2"),
        ((torch.randn(4, 3, 8, 8), torch.zeros(3, dtype=torch.long)), "one entry per sample"),
        ((torch.full((4, 3, 8, 8), float("nan")), torch.zeros(4, dtype=torch.long)), "NaN"),
    ],
)
def test_bad_batch(bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        pr.compute_proxy("snip", toy_net(), bad)


def test_bad_model(batch) -> None:
    with pytest.raises(ValueError, match="no parameters"):
        pr.compute_proxy("snip", nn.Identity(), batch)
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        pr.compute_proxy("snip", lambda x: x, batch)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no activation modules"):
        pr.compute_proxy("naswot", nn.Sequential(nn.Flatten(), nn.Linear(192, 5)), batch)
    with pytest.raises(ValueError, match="seed"):
        pr.compute_proxy("snip", toy_net(), batch, seed=1.5)  # type: ignore[arg-type]


def test_on_a_search_space_subnet() -> None:
    ss = pytest.importorskip("search_spaces")
    if "nb201" not in ss.list_spaces():
        pytest.skip("nb201 space not available")
    space = ss.get_space("nb201")
    arch = space.sample(seed=0)
    net = space.build_supernet().extract(arch)
    batch = pr.synthetic_batch(space.input_shape(arch), batch_size=4, seed=0)
    scores = {n: pr.compute_proxy(n, net, batch, seed=0) for n in ("synflow", "naswot", "params", "macs")}
    assert all(math.isfinite(v) for v in scores.values())
    assert scores["params"] == space.cost(arch)["params"]
