"""An ensemble of small MLPs in torch; the spread across members is the uncertainty (BANANAS-style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from predictors._base import BasePredictor, MeanStd, register_predictor


def _mlp(n_in: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


@register_predictor("mlp_ensemble")
class MLPEnsemblePredictor(BasePredictor):
    """`n_members` MLPs trained from different seeds (init and batch order) on the same data.

    The mean is the members' average and the std their spread. Weights are saved in
    safetensors, so loading does not re-train.

    Args:
        n_members: Ensemble size (>= 1; with 1 member std is 0).
        hidden: Hidden layer widths.
        epochs: Passes over the training data.
        lr: Adam learning rate (cosine-annealed to 0).
        weight_decay: AdamW weight decay.
        batch_size: Mini-batch size (capped at the training-set size).
        target_transform: ``"rank_gauss"`` or ``"standard"`` (see `TargetMap`).
        seed: Seed of member k is ``seed * 1000 + k``.
    """

    refits_on_load = False

    def __init__(
        self,
        *,
        n_members: int = 5,
        hidden: Sequence[int] = (128, 128),
        epochs: int = 300,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 32,
        target_transform: str = "rank_gauss",
        seed: int = 0,
    ) -> None:
        hidden = [int(h) for h in hidden]
        if n_members < 1:
            raise ValueError(f"`n_members >= 1` must hold, but got {n_members=}.")
        if epochs < 1 or batch_size < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"epochs, batch_size and hidden widths must be >= 1; got {epochs=}, {batch_size=}, {hidden=}."
            )
        if not lr > 0:
            raise ValueError(f"`lr > 0` must hold, but got {lr=}.")
        super().__init__(
            seed=seed,
            target_transform=target_transform,
            n_members=int(n_members),
            hidden=hidden,
            epochs=int(epochs),
            lr=float(lr),
            weight_decay=float(weight_decay),
            batch_size=int(batch_size),
        )
        self._members: list[nn.Sequential] = []

    def _new_member(self, k: int) -> nn.Sequential:
        assert self.n_features is not None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1000 + k)
            return _mlp(self.n_features, self.hparams["hidden"]).double()

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        hp = self.hparams
        Xt, zt = torch.from_numpy(X), torch.from_numpy(z).unsqueeze(1)
        n = X.shape[0]
        bs = min(hp["batch_size"], n)
        steps_per_epoch = -(-n // bs)
        self._members = []
        for k in range(hp["n_members"]):
            net = self._new_member(k)
            gen = torch.Generator().manual_seed(self.seed * 1000 + k)
            opt = torch.optim.AdamW(net.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp["epochs"] * steps_per_epoch)
            net.train()
            for _ in range(hp["epochs"]):
                perm = torch.randperm(n, generator=gen)
                for i in range(0, n, bs):
                    idx = perm[i : i + bs]
                    loss = nn.functional.mse_loss(net(Xt[idx]), zt[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
            net.eval()
            self._members.append(net)

    def _predict(self, X: np.ndarray) -> MeanStd:
        Xt = torch.from_numpy(X)
        with torch.no_grad():
            preds = np.stack([m(Xt).squeeze(1).numpy() for m in self._members])
        return MeanStd(preds.mean(0), preds.std(0))

    def _state_tensors(self) -> dict[str, np.ndarray]:
        return {
            f"member{k}.{name}": t.detach().cpu().numpy()
            for k, m in enumerate(self._members)
            for name, t in m.state_dict().items()
        }

    def _load_state(self, tensors: Mapping[str, np.ndarray]) -> None:
        self._members = []
        for k in range(self.hparams["n_members"]):
            net = self._new_member(k)
            prefix = f"member{k}."
            sd = {
                name[len(prefix) :]: torch.from_numpy(v.copy())
                for name, v in tensors.items()
                if name.startswith(prefix)
            }
            try:
                net.load_state_dict(sd)
            except RuntimeError as exc:
                raise ValueError(
                    f"Stored weights of ensemble member {k} do not fit the configured MLP: {exc}"
                ) from None
            net.eval()
            self._members.append(net)
