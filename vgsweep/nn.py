"""Activations, weight initialisers, and the packed MLP: K independent networks trained as one.

A pack stacks the K runs' parameters in one flat tensor `theta` of shape (K, P): each layer's
weight (in, out) and bias (out) are views into it, so one batched matmul (`baddbmm`) serves all K
networks, and the optimiser and the gradient noise act on (K, P) at once. Runs never mix: every
operation is per row of K, so a run's numbers do not depend on what else is in its pack.

Adding an activation or an init scheme: one function here, one entry in the registry, one YAML
file in conf/activation or conf/init. The parametrised tests pick it up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

# --- activations --------------------------------------------------------------------------------
# Each takes (h, negative_slope) so that all share one signature; only leaky_relu reads the slope.
ACTIVATIONS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "logistic": lambda h, a: torch.sigmoid(h),
    "tanh": lambda h, a: torch.tanh(h),
    "relu": lambda h, a: F.relu(h),
    "leaky_relu": lambda h, a: F.leaky_relu(h, a),
    "swish": lambda h, a: h * torch.sigmoid(h),  # z * sigmoid(z), beta = 1 (= SiLU)
    "gelu": lambda h, a: F.gelu(h),
    "elu": lambda h, a: F.elu(h),
    "identity": lambda h, a: h,
}


# Their derivatives f'(z), written out (no autograd) for the saturation / dead-unit diagnostics.
_SQRT_2PI = math.sqrt(2 * math.pi)
DERIVATIVES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "logistic": lambda z, a: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
    "tanh": lambda z, a: 1 - torch.tanh(z) ** 2,
    "relu": lambda z, a: (z > 0).to(z.dtype),
    "leaky_relu": lambda z, a: torch.where(z > 0, 1.0, a).to(z.dtype),
    "swish": lambda z, a: torch.sigmoid(z) * (1 + z * (1 - torch.sigmoid(z))),
    "gelu": lambda z, a: 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / _SQRT_2PI,
    "elu": lambda z, a: torch.where(z > 0, 1.0, torch.exp(z)).to(z.dtype),
    "identity": lambda z, a: torch.ones_like(z),
}


# --- initialisers -------------------------------------------------------------------------------
# Each returns a (fan_in, fan_out) weight drawn with the run's own CPU generator; biases are zero.
def _xavier(fan_in: int, fan_out: int, g: torch.Generator, std: float) -> torch.Tensor:
    limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, Keras' default
    return (torch.rand(fan_in, fan_out, generator=g, dtype=torch.float64) * 2 - 1) * limit


def _he(fan_in: int, fan_out: int, g: torch.Generator, std: float) -> torch.Tensor:
    return torch.randn(fan_in, fan_out, generator=g, dtype=torch.float64) * math.sqrt(2.0 / fan_in)


def _normal(fan_in: int, fan_out: int, g: torch.Generator, std: float) -> torch.Tensor:
    return torch.randn(fan_in, fan_out, generator=g, dtype=torch.float64) * std


def _zero(fan_in: int, fan_out: int, g: torch.Generator, std: float) -> torch.Tensor:
    return torch.zeros(fan_in, fan_out, dtype=torch.float64)


INITS: dict[str, Callable[[int, int, torch.Generator, float], torch.Tensor]] = {
    "xavier": _xavier,
    "he": _he,
    "normal": _normal,
    "zero": _zero,
}


# --- the packed network -------------------------------------------------------------------------
@dataclass(frozen=True)
class Arch:
    """What every run of a pack shares: the shapes and the math that cannot vary per run."""

    sizes: tuple[int, ...]  # (in, h1, ..., hL, out)
    bn_layers: tuple[int, ...]  # indices of hidden layers followed by batch norm
    bn_mode: str  # frozen | batch | layer
    bn_eps: float
    bn_momentum: float
    residual: bool = False  # skip connection around each hidden layer whose width does not change
    weight_norm: bool = False  # every dense layer's W = g * v / ||v|| (per output unit)


@dataclass(frozen=True)
class Member:
    """What may differ between the runs of a pack."""

    activation: str
    negative_slope: float
    init: str
    init_std: float
    double_softmax: bool


class PackedMLP:
    """K MLPs with identical shapes. Parameters live in `theta` (K, P); each layout entry is a view
    of it that autograd treats as its own leaf, so a backward pass yields one gradient per entry
    (copied into one flat (K, P) buffer) instead of a full (K, P) tensor per slice, summed."""

    def __init__(self, arch: Arch, members: list[Member], generators: list[torch.Generator],
                 device: torch.device):
        self.arch, self.members, self.K = arch, members, len(members)
        self.layout: list[tuple[str, int, tuple[int, ...]]] = []  # (name, offset, shape)
        off = 0
        sizes = arch.sizes
        for i in range(len(sizes) - 1):
            entries = [(f"W{i}", (sizes[i], sizes[i + 1])), (f"b{i}", (sizes[i + 1],))]
            if arch.weight_norm:
                entries.append((f"g{i}", (sizes[i + 1],)))  # the length of each unit's weight vector
            for name, shape in entries:
                self.layout.append((name, off, shape))
                off += math.prod(shape)
            if i in arch.bn_layers:
                for name in (f"bn{i}.gamma", f"bn{i}.beta"):
                    self.layout.append((name, off, (sizes[i + 1],)))
                    off += sizes[i + 1]
        self.P = off
        theta = torch.zeros(self.K, self.P, dtype=torch.float64)
        offsets = {name: o for name, o, _ in self.layout}
        for k, (m, g) in enumerate(zip(members, generators)):
            for name, o, shape in self.layout:
                if name.startswith("W"):
                    w = INITS[m.init](*shape, g, m.init_std)  # (in, out)
                    theta[k, o:o + math.prod(shape)] = w.flatten()
                    if arch.weight_norm:  # g = ||v||: the effective weights start as the init
                        go = offsets[f"g{name[1:]}"]
                        theta[k, go:go + shape[1]] = w.norm(dim=0)
                elif name.endswith("gamma"):
                    theta[k, o:o + shape[0]] = 1.0
        self.theta = theta.to(device=device, dtype=torch.float32)
        self.leaves = {n: self.theta[:, o:o + math.prod(s)].view(self.K, *s).requires_grad_(True)
                       for n, o, s in self.layout}
        self._grad = torch.zeros_like(self.theta)
        # Running statistics for `batch` BN, per run: (K, F) each.
        self.running = {
            i: (torch.zeros(self.K, sizes[i + 1], device=device), torch.ones(self.K, sizes[i + 1], device=device))
            for i in arch.bn_layers
        }
        # Runs sorted by activation lie in contiguous slices of K; one call per distinct activation.
        self.act_groups: list[tuple[int, int, str, float]] = []
        for k, m in enumerate(members):
            key = (m.activation, m.negative_slope)
            if self.act_groups and self.act_groups[-1][2:] == key:
                s, _, a, ns = self.act_groups[-1]
                self.act_groups[-1] = (s, k + 1, a, ns)
            else:
                self.act_groups.append((k, k + 1, *key))
        self.double_softmax = torch.tensor([m.double_softmax for m in members], device=device)
        self.any_double_softmax = bool(self.double_softmax.any())

    def params(self, theta: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Views per layout entry, shaped (K, *shape): the trainable leaves, or views of `theta`."""
        if theta is None:
            return self.leaves
        return {n: theta[:, o:o + math.prod(s)].view(self.K, *s) for n, o, s in self.layout}

    def grad(self, loss: torch.Tensor) -> torch.Tensor:
        """d loss / d theta as one (K, P) tensor (a buffer reused from step to step)."""
        grads = torch.autograd.grad(loss, list(self.leaves.values()))
        for (_, o, s), g in zip(self.layout, grads):
            self._grad[:, o:o + math.prod(s)].copy_(g.reshape(self.K, -1))
        return self._grad

    def activate(self, h: torch.Tensor, table: dict = ACTIVATIONS) -> torch.Tensor:
        """Each run's activation (or, with table=DERIVATIVES, its derivative) applied to h (K, ...)."""
        if len(self.act_groups) == 1:
            _, _, a, ns = self.act_groups[0]
            return table[a](h, ns)
        return torch.cat([table[a](h[s:e], ns) for s, e, a, ns in self.act_groups], dim=0)

    def _bn(self, i: int, h: torch.Tensor, p: dict, train: bool) -> torch.Tensor:
        a = self.arch
        gamma, beta = p[f"bn{i}.gamma"].unsqueeze(1), p[f"bn{i}.beta"].unsqueeze(1)  # (K, 1, F)
        if a.bn_mode == "frozen":
            # Keras BatchNormalization in inference mode with its initial moving statistics
            # (mean 0, variance 1), which the original code never updates.
            return h * (gamma / math.sqrt(1.0 + a.bn_eps)) + beta
        if a.bn_mode == "layer":  # each example over its own features: no batch, no running statistics
            mean, var = h.mean(dim=-1, keepdim=True), h.var(dim=-1, unbiased=False, keepdim=True)
            return (h - mean) * torch.rsqrt(var + a.bn_eps) * gamma + beta
        mean_r, var_r = self.running[i]
        if train:
            mean = h.mean(dim=1)  # (K, F)
            var = h.var(dim=1, unbiased=False)
            with torch.no_grad():
                n = h.shape[1]
                mean_r.mul_(a.bn_momentum).add_(mean.detach(), alpha=1 - a.bn_momentum)
                unbiased = var.detach() * (n / max(n - 1, 1))
                var_r.mul_(a.bn_momentum).add_(unbiased, alpha=1 - a.bn_momentum)
        else:
            mean, var = mean_r, var_r
        hn = (h - mean.unsqueeze(1)) * torch.rsqrt(var.unsqueeze(1) + a.bn_eps)
        return hn * gamma + beta

    def forward(self, x: torch.Tensor, train: bool, theta: torch.Tensor | None = None,
                preacts: list | None = None) -> torch.Tensor:
        """x: (K, B, D) per-run inputs or (B, D) shared inputs. Returns logits (K, B, C).
        If `preacts` is a list, each hidden layer's pre-activation (K, B, F) is appended to it."""
        p = self.params(theta)
        L = len(self.arch.sizes) - 1
        h = h_in = x
        for i in range(L):
            W, b = p[f"W{i}"], p[f"b{i}"].unsqueeze(1)  # (K, in, out), (K, 1, out)
            if self.arch.weight_norm:  # W = v * g / ||v||, the norm over each unit's inputs: (K, out)
                W = W * (p[f"g{i}"] / W.norm(dim=1)).unsqueeze(1)
            h = torch.baddbmm(b, h, W) if h.dim() == 3 else torch.matmul(h, W) + b
            if i < L - 1:
                if preacts is not None:
                    preacts.append(h)
                h = self.activate(h)
                if i in self.arch.bn_layers:
                    h = self._bn(i, h, p, train)
                if self.arch.residual and 0 < i and self.arch.sizes[i] == self.arch.sizes[i + 1]:
                    h = h + h_in  # (K, B, F): the skip connection
            h_in = h
        if self.any_double_softmax:
            h = torch.where(self.double_softmax.view(-1, 1, 1), torch.softmax(h, dim=-1), h)
        return h

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-run mean softmax cross-entropy: logits (K, B, C), y (K, B) or (B,) -> (K,)."""
        K, B, C = logits.shape
        y = y.expand(K, B) if y.dim() == 1 else y
        ce = F.cross_entropy(logits.reshape(K * B, C).float(), y.reshape(K * B), reduction="none")
        return ce.view(K, B).mean(dim=1)
