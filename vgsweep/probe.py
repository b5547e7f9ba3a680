"""The gradient diagnostics measured on the device, for a pack of K runs (what they are: vgsweep/diagnostics.py).
Everything stays on the device until the trainer's one host copy per epoch."""

from __future__ import annotations

import math

import numpy as np
import torch

from vgsweep.activations import DERIVATIVES
from vgsweep.diagnostics import GRAD_COLS
from vgsweep.families.base import PackedModel


class GradientProbe:
    """Collects one epoch of diagnostics for a pack of K runs, on the device."""

    def __init__(self, model: PackedModel, dcfg, steps: int):
        self.model, self.cfg = model, dcfg
        self.layers = [(e.offset, e.numel) for e in model.weights()]
        self.layer_names = [e.layer for e in model.weights()]
        self.unit_names = model.unit_names()
        n = min(int(dcfg.grad_samples), steps)
        self.sample_steps = {int(round(x)) for x in np.linspace(steps - 1, 0, n)} if n > 1 else {steps - 1}
        self.last_step = steps - 1
        dev = model.theta.device
        self.nb, self.lo, self.hi = int(dcfg.hist_bins), float(dcfg.hist_min), float(dcfg.hist_max)
        self.H = len(self.unit_names)
        self._zeros = lambda *shape: torch.zeros(*shape, device=dev)
        self.reset()

    def reset(self) -> None:
        K, L = self.model.K, len(self.layers)
        self.grad = self._zeros(K, L, len(GRAD_COLS))
        self.hist = self._zeros(2, K, L, self.nb)
        self.count = 0

    def samples(self, step: int) -> bool:
        """Whether the probe measures at this step of the epoch (the trainer runs such steps eagerly)."""
        return step in self.sample_steps or step == self.last_step

    def _slices(self, flat: torch.Tensor):
        return [flat[:, o:o + n] for o, n in self.layers]  # (K, n) per layer's weights

    def grad_stats(self, step: int, grad: torch.Tensor, after_noise: bool) -> None:
        if step in self.sample_steps:
            c = 3 if after_noise else 0
            for li, g in enumerate(self._slices(grad)):
                self.grad[:, li, c:c + 3] += torch.stack([g.abs().mean(1), g.std(1), g.norm(dim=1)], 1)
        if step == self.last_step:
            for li, g in enumerate(self._slices(grad)):
                v = torch.log10(g.abs().clamp_min(1e-30)).clamp(self.lo, self.hi)
                b = ((v - self.lo) / (self.hi - self.lo) * self.nb).long().clamp_(0, self.nb - 1)
                self.hist[int(after_noise), :, li].scatter_add_(1, b, torch.ones_like(v))
                self.hist[int(after_noise), :, li] /= g.shape[1]

    def update_stats(self, step: int, update: torch.Tensor, theta: torch.Tensor) -> None:
        if step in self.sample_steps:
            for li, (u, w) in enumerate(zip(self._slices(update), self._slices(theta))):
                self.grad[:, li, 6] += u.norm(dim=1) / w.norm(dim=1).clamp_min(1e-30)
            self.count += 1

    @torch.no_grad()
    def units(self, X: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Saturated and dead fractions per hidden unit layer, (K, H) each, on the first probe
        examples X (K, n, ...). A unit layer's activation input is (K, b, units, *positions)."""
        K, H, thr = self.model.K, self.H, float(self.cfg.saturation_threshold)
        n = min(int(self.cfg.probe_examples), X.shape[1])
        sat = self._zeros(K, H)
        alive: list = [None] * H
        per_example = torch.zeros(H, device=X.device)  # (unit, position) pairs of one example
        for i in range(0, n, chunk):
            pre: list = []
            self.model.forward(X[:, i:min(i + chunk, n)], train=False, preacts=pre)
            for h, z in enumerate(pre):
                low = self.model.activate(z, DERIVATIVES) < thr  # (K, b, U, *S)
                sat[:, h] += low.sum(dim=tuple(range(1, low.dim())))
                seen = (~low).any(dim=(1, *range(3, low.dim())))  # (K, U): active on some example, somewhere
                alive[h] = seen if alive[h] is None else alive[h] | seen
                per_example[h] = math.prod(z.shape[2:])
        dead = torch.stack([1 - a.float().mean(1) for a in alive], 1) if H else self._zeros(K, 0)
        return sat / (n * per_example), dead

    def epoch_tensor(self, X: torch.Tensor, chunk: int) -> torch.Tensor:
        """Everything of this epoch as one (K, F) tensor, to be copied to the host with the metrics; X: the
        probe inputs (K, n, ...)."""
        sat, dead = self.units(X, chunk)
        grad = self.grad.clone()
        grad[:, :, :6] /= max(self.count, 1)
        grad[:, :, 6] /= max(self.count, 1)
        out = torch.cat([grad.flatten(1), self.hist.permute(1, 0, 2, 3).flatten(1), sat, dead], 1)
        self.reset()
        return out

    def split(self, row: np.ndarray) -> dict[str, np.ndarray]:
        """One run's row of `epoch_tensor`, back into named arrays."""
        L, G, nb, H = len(self.layers), len(GRAD_COLS), self.nb, self.H
        a = 0
        grad = row[a:a + L * G].reshape(L, G)
        a += L * G
        hist = row[a:a + 2 * L * nb].reshape(2, L, nb)
        a += 2 * L * nb
        return {"grad": grad, "hist": hist, "saturated": row[a:a + H], "dead": row[a + H:a + 2 * H]}
