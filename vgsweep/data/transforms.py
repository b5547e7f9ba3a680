"""Per-run training inputs of a pack, made on the device from each run's own generators.

- Fixed input noise (the MLP study): each run's training inputs get N(0, std^2) once, drawn from
  the run's `input_noise` stream. Only then does the pack hold a copy of the training set per run;
  runs without noise read the one shared copy.
- Random crops of the zero-padded image and horizontal flips (the CNN study): drawn per run, per
  step, from the run's `augment` stream, applied to the batch on the device.
"""

from __future__ import annotations

import torch

from vgsweep.data.loader import Dataset
from vgsweep.seeding import generator


class TrainInputs:
    def __init__(self, ds: Dataset, noise_std: list[float], seeds: list[int], crop_padding: int, flip: bool,
                 device: torch.device):
        self.ds, self.K, self.device = ds, len(seeds), device
        base = ds.train.x  # (N, C, H, W)
        N = base.shape[0]
        if any(s > 0 for s in noise_std):
            X = base.unsqueeze(0).repeat(self.K, 1, 1, 1, 1)  # (K, N, C, H, W): one copy per run
            for k, std in enumerate(noise_std):
                if std > 0:
                    noise = torch.randn((N, base[0].numel()), generator=generator(seeds[k], "input_noise", device),
                                        device=device)
                    X[k].view(N, -1).add_(noise, alpha=float(std))
            self.X: torch.Tensor | None = X
        else:
            self.X = None  # every run reads the shared copy
        self.pad, self.flip = int(crop_padding), bool(flip)
        self.gens = [generator(s, "augment", device) for s in seeds] if (self.pad or self.flip) else []
        self.kidx = torch.arange(self.K, device=device).view(self.K, 1)
        self._grid: dict[int, tuple[torch.Tensor, ...]] = {}  # batch size -> the index tensors of _crop_flip
        self._padded: dict[int, torch.Tensor] = {}  # batch size -> the padded batch (its border stays black)

    def nbytes_per_run(self) -> int:
        return 0 if self.X is None else self.X[0].numel() * self.X.element_size()

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """The inputs of batch indices idx (K, B): (K, B, C, H, W)."""
        xb = self.ds.train.x[idx] if self.X is None else self.X[self.kidx, idx]
        if self.gens:
            xb = self._crop_flip(xb)
        return xb

    def first(self, n: int) -> torch.Tensor:
        """The first n training inputs of every run, untransformed: (K, n, C, H, W) (a view where shared)."""
        if self.X is not None:
            return self.X[:, :n]
        return self.ds.train.x[:n].unsqueeze(0).expand(self.K, *self.ds.train.x[:n].shape)

    def _index_grid(self, K: int, B: int, C: int, H: int, W: int, dev) -> tuple[torch.Tensor, ...]:
        """The index tensors of a batch of B (made once per batch size, not at every step)."""
        if B not in self._grid:
            self._grid[B] = (torch.arange(H, device=dev).expand(K, B, H), torch.arange(W, device=dev).expand(K, B, W),
                             torch.arange(K, device=dev).view(K, 1, 1, 1, 1),
                             torch.arange(B, device=dev).view(1, B, 1, 1, 1),
                             torch.arange(C, device=dev).view(1, 1, C, 1, 1))
        return self._grid[B]

    def _crop_flip(self, xb: torch.Tensor) -> torch.Tensor:
        K, B, C, H, W = xb.shape
        P, dev = self.pad, xb.device
        rows, cols, kk, bb, cc = self._index_grid(K, B, C, H, W, dev)
        if P:
            # the padded image, (K, B, C, H + 2P, W + 2P): a border of black pixels, made once; each
            # step writes only the inside (the gather below copies, so the buffer is free again)
            if B not in self._padded:
                self._padded[B] = self.ds.black.view(1, 1, C, 1, 1).expand(K, B, C, H + 2 * P, W + 2 * P).clone()
            xp = self._padded[B]
            xp[..., P:P + H, P:P + W] = xb
            off = torch.stack([torch.randint(0, 2 * P + 1, (B, 2), generator=g, device=dev) for g in self.gens])
            rows = rows + off[..., :1]  # (K, B, H): the crop's first row, then consecutive rows
            cols = cols + off[..., 1:]
            xb = xp
        if self.flip:
            f = torch.stack([torch.rand(B, generator=g, device=dev) < 0.5 for g in self.gens])  # (K, B)
            cols = torch.where(f.unsqueeze(-1), cols.flip(-1), cols)
        return xb[kk, bb, cc, rows[:, :, None, :, None], cols[:, :, None, None, :]]

    # checkpoint state: the augment generators (the noise is fixed, drawn again from the seed)
    def state(self, k: int):
        return self.gens[k].get_state() if self.gens else None

    def restore(self, k: int, st) -> None:
        if self.gens and st is not None:
            self.gens[k].set_state(st)
