"""A checked data set, shaped and put on the device once; shared by every run of a pack.

Images stay (N, C, H, W) float32: pixels / 255, zero-padded to `data.pad_to`, then normalised per
channel with `data.mean`/`data.std` when given. `data.val_size` holds out validation examples with
`RandomState(data.split_seed).choice(N, N - val_size, replace=False)` as the training indices (in
that order; the course code's split of CIFAR), the rest (sorted) as validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vgsweep.data.files import read_checked
from vgsweep.data.sets import DATASETS


@dataclass
class Split:
    x: torch.Tensor  # (N, C, H, W) float32
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return self.y.shape[0]


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    val: Optional[Split]
    num_classes: int
    black: torch.Tensor  # (C,): the value a zero pixel has after normalisation (crops pad with it)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    @property
    def input_dim(self) -> int:
        c, h, w = self.shape
        return c * h * w


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of n examples; train in the order RandomState draws them."""
    if val_size == 0:
        return np.arange(n), np.arange(0)
    train = np.random.RandomState(seed).choice(n, n - val_size, replace=False)
    keep = np.ones(n, dtype=bool)
    keep[train] = False
    return train, np.flatnonzero(keep)


def _pad(x: np.ndarray, size: Optional[int]) -> np.ndarray:
    if size is None or size == x.shape[-1]:
        return x
    h, w = x.shape[-2:]
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(x, ((0, 0), (0, 0), (top, size - h - top), (left, size - w - left)))


_CACHE: dict[tuple, Dataset] = {}


def load(d, device: torch.device) -> Dataset:
    """The data set of data config `d` on `device`, cached per (data settings, device)."""
    key = (d.name, str(Path(d.root).resolve()), bool(d.verify), d.limit_train, d.limit_test, int(d.val_size),
           int(d.split_seed), d.pad_to, None if d.mean is None else tuple(d.mean),
           None if d.std is None else tuple(d.std), str(device))
    if key in _CACHE:
        return _CACHE[key]
    arrays = read_checked(d.name, d.root, bool(d.download), bool(d.verify))
    spec = DATASETS[d.name]
    C = arrays["train_x"].shape[1]
    mean = np.zeros(C, np.float32) if d.mean is None else np.asarray(d.mean, np.float32)
    std = np.ones(C, np.float32) if d.std is None else np.asarray(d.std, np.float32)

    def tensors(x: np.ndarray, y: np.ndarray) -> Split:
        x = _pad(x, d.pad_to).astype(np.float32) / 255.0
        if d.mean is not None:
            x = (x - mean[:, None, None]) / std[:, None, None]
        return Split(torch.from_numpy(np.ascontiguousarray(x)).to(device),
                     torch.from_numpy(y.astype(np.int64)).to(device))

    tx, ty = arrays["train_x"][:d.limit_train], arrays["train_y"][:d.limit_train]
    tr, va = split_indices(len(ty), int(d.val_size), int(d.split_seed))
    train = tensors(tx[tr], ty[tr]) if d.val_size else tensors(tx, ty)
    val = tensors(tx[va], ty[va]) if d.val_size else None
    test = tensors(arrays["test_x"][:d.limit_test], arrays["test_y"][:d.limit_test])
    black = torch.from_numpy((0.0 - mean) / std).to(device)
    ds = Dataset(d.name, train, test, val, spec.classes, black)
    _CACHE[key] = ds
    return ds
