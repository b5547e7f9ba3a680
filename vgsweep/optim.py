"""Optimisers and gradient noise on a pack's flat parameters (K, P), with per-run settings (K, 1).

Both optimisers are written out rather than taken from torch.optim because the hyper-parameters
differ per row of K; the update rules are PyTorch's (SGD with momentum: b = m b + g, w -= lr b,
which equals Keras' v = m v - lr g, w += v for a constant learning rate).
"""

from __future__ import annotations

import torch


def noise_std(t, eta, gamma, gives: str):
    """Standard deviation of the added gradient noise at time t (epoch or step, 0-based).

    s_t = eta / (1 + t)^gamma. The original code uses s_t as the standard deviation (`gives=std`);
    the paper's formula and Neelakantan et al. use it as the variance (`gives=variance`).
    Works on floats and on tensors.
    """
    s = eta / (1.0 + t) ** gamma
    return s if gives == "std" else s ** 0.5


class PackOptimizer:
    """One optimiser for K runs: `step(theta, grad)` updates theta (K, P) in place."""

    def __init__(self, name: str, theta: torch.Tensor, hp: dict[str, torch.Tensor]):
        self.name, self.hp, self.t = name, hp, 0
        self.last_update: torch.Tensor | None = None  # the step just taken (K, P), for diagnostics
        self.buf = torch.zeros_like(theta)
        self.buf2 = torch.zeros_like(theta) if name == "adam" else None

    @torch.no_grad()
    def step(self, theta: torch.Tensor, grad: torch.Tensor) -> None:
        hp = self.hp
        self.t += 1
        if self.name == "sgd":
            self.buf.mul_(hp["momentum"]).add_(grad)
            self.last_update = hp["lr"] * self.buf
            theta.sub_(self.last_update)
        else:  # adam
            b1, b2 = hp["beta1"], hp["beta2"]
            self.buf.mul_(b1).add_((1 - b1) * grad)
            self.buf2.mul_(b2).add_((1 - b2) * grad * grad)
            m_hat = self.buf / (1 - b1 ** self.t)
            v_hat = self.buf2 / (1 - b2 ** self.t)
            self.last_update = hp["lr"] * m_hat / (v_hat.sqrt() + hp["eps"])
            theta.sub_(self.last_update)


OPTIMIZERS = ("sgd", "adam")
