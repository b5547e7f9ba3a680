"""Optimisers, learning-rate schedules and gradient noise on a pack's flat parameters (K, P), with
every hyper-parameter per run ((K, 1) tensors on the device).

The optimisers are written out rather than taken from torch.optim because the hyper-parameters
differ per row of K; the update rules are PyTorch's (SGD with momentum: b = m b + g, w -= lr b,
which equals Keras' v = m v - lr g, w += v for a constant rate; Adam with its bias corrections;
weight decay as torch.optim's: grad += weight_decay * w).
"""

from __future__ import annotations

import math

import torch

from vgsweep.config import enum_value
from vgsweep.seeding import generator

OPTIMIZERS = ("sgd", "adam")


def noise_std(t, eta, gamma, gives):
    """Standard deviation of the added gradient noise at time t (epoch or step, 0-based).

    s_t = eta / (1 + t)^gamma. The original code uses s_t as the standard deviation (`gives="std"`);
    the paper's formula and Neelakantan et al. use it as the variance (`gives="variance"`). Works on
    floats, and on tensors with `gives` a bool tensor (True: variance) per run.
    """
    s = eta / (1.0 + t) ** gamma
    if isinstance(gives, torch.Tensor):
        return torch.where(gives, s.sqrt(), s)
    return s if gives == "std" else s ** 0.5


def cosine(t, lr, eta_min, t_max):
    """PyTorch's CosineAnnealingLR in closed form: eta_min + (lr - eta_min) (1 + cos(pi t / t_max)) / 2.
    Past t_max it rises again, as PyTorch's does."""
    return eta_min + (lr - eta_min) * (1 + torch.cos(math.pi * t / t_max)) / 2


class Schedules:
    """Each run's learning rate at (epoch, step), as a (K, 1) tensor.

    optimizer.schedule.name: constant | cosine; .every: epoch (t = epoch, the rate is constant within
    an epoch, the course code's per-epoch schedule) | step (t = optimiser step); .t_max: the half
    period in units of `every` (None: the whole training: epochs, or epochs x steps per epoch)."""

    def __init__(self, cfgs: list, epochs: int, steps: int, device: torch.device):
        def col(values, dtype=torch.float64):
            return torch.tensor(values, dtype=dtype, device=device).view(len(cfgs), 1)

        s = [c.schedule for c in cfgs]
        self.base = col([c.lr for c in cfgs], torch.float32)  # exactly the configured rate
        self.cos = col([enum_value(x.name) == "cosine" for x in s], torch.bool)
        self.per_step = col([enum_value(x.every) == "step" for x in s])
        self.any_cosine = bool(self.cos.any())
        self.any_step = self.any_cosine and bool((self.per_step[self.cos] > 0).any())
        t_max = [x.t_max or (epochs * steps if enum_value(x.every) == "step" else epochs) for x in s]
        self.t_max, self.eta_min = col(t_max), col([x.eta_min for x in s])
        self.lr64 = col([c.lr for c in cfgs])

    def lr(self, epoch: int, step: int) -> torch.Tensor:
        if not self.any_cosine:
            return self.base
        t = self.per_step * step + (1 - self.per_step) * epoch
        return torch.where(self.cos, cosine(t, self.lr64, self.eta_min, self.t_max).float(), self.base)


class PackOptimizer:
    """One optimiser for K runs: `step(theta, grad)` updates theta (K, P) in place."""

    def __init__(self, name: str, theta: torch.Tensor, hp: dict[str, torch.Tensor]):
        self.name, self.hp = name, hp
        self.buf = torch.zeros_like(theta)
        self.buf2 = torch.zeros_like(theta) if name == "adam" else None
        self.any_wd = bool((hp["weight_decay"] > 0).any())
        # the step count lives on the device, so a step has no host values in it (a CUDA graph
        # replays it as captured); float32 counts exactly to 2^24 steps
        self.t_dev = torch.zeros((), device=theta.device)

    @property
    def t(self) -> int:
        """Steps taken (reading it waits for the device: checkpoints only)."""
        return int(self.t_dev.item())

    @t.setter
    def t(self, value: int) -> None:
        self.t_dev.fill_(value)

    @torch.no_grad()
    def step(self, theta: torch.Tensor, grad: torch.Tensor) -> None:
        """One step (weight decay, the optimiser's buffers, the parameters), grad left as it was."""
        fused_step(self.name, theta, grad, None, None, self.buf, self.buf2, self.t_dev, self.hp, self.any_wd)

    def current_update(self) -> torch.Tensor:
        """The step just taken (K, P), recomputed from the optimiser's state: for the diagnostics (the step
        itself does not keep it: a pass over (K, P) saved on every step the diagnostics do not sample)."""
        return update_of(self.name, self.buf, self.buf2, self.t_dev, self.hp)


def sgd_step(theta: torch.Tensor, buf: torch.Tensor, grad: torch.Tensor, hp: dict) -> None:
    """SGD with momentum in place: buf = momentum * buf + grad, then theta -= lr * buf, each one pass over
    (K, P) (as a product, then a sum, it took two each, and allocated lr * buf). addcmul
    rounds once (a fused multiply-add), where the two passes rounded twice: the same step, to the last bit
    more exact; a run's numbers are the same alone and packed either way."""
    torch.addcmul(grad, buf, hp["momentum"], out=buf)
    theta.addcmul_(buf, hp["lr"], value=-1)


def adam_moments(buf: torch.Tensor, buf2: torch.Tensor, grad: torch.Tensor, hp: dict) -> None:
    """Move Adam's running buffers (in place) by the gradient (SGD's momentum: `sgd_step`)."""
    b1, b2 = hp["beta1"], hp["beta2"]
    buf.mul_(b1).add_((1 - b1) * grad)
    buf2.mul_(b2).add_((1 - b2) * grad * grad)


def update_of(name: str, buf: torch.Tensor, buf2: torch.Tensor | None, t: torch.Tensor, hp: dict) -> torch.Tensor:
    """The step the parameters take (subtracted), from the buffers the step has moved (`sgd_step`,
    `adam_moments`) and the step count t."""
    if name == "sgd":
        return hp["lr"] * buf
    b1, b2 = hp["beta1"], hp["beta2"]
    m_hat = buf / (1 - b1 ** t)
    v_hat = buf2 / (1 - b2 ** t)
    return hp["lr"] * m_hat / (v_hat.sqrt() + hp["eps"])


@torch.no_grad()
def fused_step(name: str, theta: torch.Tensor, grad: torch.Tensor, noise: torch.Tensor | None,
               std: torch.Tensor | None, buf: torch.Tensor, buf2: torch.Tensor | None, t: torch.Tensor, hp: dict,
               any_wd: bool) -> None:
    """Gradient noise (draws * std, as GradNoise.apply adds them; None: none), weight decay and the
    optimiser's step in one function, grad left as it was: PackOptimizer.step (without noise), and what
    `compile=true` compiles, so that its element-wise passes over (K, P) fuse into a few kernels."""
    t.add_(1)
    if noise is not None:
        grad = grad.addcmul(noise, std)
    if any_wd:
        grad = grad.addcmul(theta, hp["weight_decay"])
    if name == "sgd":
        sgd_step(theta, buf, grad, hp)
        return
    adam_moments(buf, buf2, grad, hp)
    theta.sub_(update_of(name, buf, buf2, t, hp))


class GradNoise:
    """Adds each run's N(0, s_t^2) to its gradient row, from the run's own generator.

    s_t = eta / (1 + t)^gamma with t the epoch or the step (per run), read as the standard
    deviation or the variance (per run). Runs without noise draw nothing and get nothing.
    """

    def __init__(self, cfgs: list, seeds: list[int], theta: torch.Tensor, own: list | None = None):
        """own: per run, the columns of theta it uses (None: all), as PackedModel.own_index gives them;
        a run draws noise for those alone, in their order, so its stream is the one it has alone."""
        K, device = theta.shape[0], theta.device

        def vec(values):
            return torch.tensor(values, dtype=torch.float32, device=device)

        self.noisy = [k for k, g in enumerate(cfgs) if g.enabled and g.eta > 0]
        self.gens = {k: generator(seeds[k], "grad_noise", device) for k in self.noisy}
        self.eta = vec([float(g.eta) if g.enabled else 0.0 for g in cfgs])
        self.gamma = vec([float(g.gamma) for g in cfgs])
        self.per_step = vec([enum_value(g.unit) == "step" for g in cfgs])
        self.as_var = vec([enum_value(g.gives) == "variance" for g in cfgs]) > 0
        self.buf = torch.zeros_like(theta) if self.noisy else None  # rows of quiet runs stay 0
        self.K = K
        self.any_step = any(enum_value(g.unit) == "step" for g in cfgs)
        self.std_buf = torch.zeros(K, device=device)  # this epoch's std when no run counts steps
        self._epoch: int | None = None  # the epoch std_buf holds
        # where each noisy run's draw goes: the whole row, its first n columns, or scattered columns
        self.dest: dict[int, int | torch.Tensor | None] = {}
        for k in self.noisy:
            idx = None if own is None else own[k]
            if idx is not None and bool((idx == torch.arange(len(idx), device=idx.device)).all()):
                idx = len(idx)
            self.dest[k] = idx

    def std(self, epoch, step) -> torch.Tensor:
        """(K,) standard deviations at this epoch and step (0-based; ints or device scalars)."""
        t = self.per_step * step + (1 - self.per_step) * epoch
        return noise_std(t, self.eta, self.gamma, self.as_var)

    def begin_epoch(self, epoch: int) -> None:
        """When no run counts steps the schedule moves once per epoch: computed here, not per step."""
        if self.noisy and not self.any_step and self._epoch != epoch:
            self.std_buf.copy_(self.std(epoch, 0))
            self._epoch = epoch

    def apply(self, grad: torch.Tensor, epoch, step) -> None:
        """Add the noise of this step. epoch and step: ints, or device scalars (the trainer's clock,
        which it moves itself; then begin_epoch has been called for the epoch)."""
        if not self.noisy:
            return
        noise, std = self.draw(epoch, step)
        grad.addcmul_(noise, std)

    def draw(self, epoch, step) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """This step's standard normal draws (K, P) and standard deviations (K, 1), or (None, None)
        when no run has noise: what `apply` adds as draws * std."""
        if not self.noisy:
            return None, None
        for k in self.noisy:
            d = self.dest[k]
            if d is None:
                self.buf[k].normal_(generator=self.gens[k])
            elif isinstance(d, int):
                self.buf[k, :d].normal_(generator=self.gens[k])
            else:
                self.buf[k, d] = torch.empty(len(d), device=self.buf.device).normal_(generator=self.gens[k])
        if self.any_step:
            std = self.std(epoch, step)
        else:
            if isinstance(epoch, int):
                self.begin_epoch(epoch)
            std = self.std_buf
        return self.buf, std.view(self.K, 1)

    def generators(self) -> list[torch.Generator]:
        return list(self.gens.values())
