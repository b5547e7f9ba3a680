"""A checked data set, shaped and put on the device once; shared by every run of a pack.

Images stay (N, C, H, W) float32: pixels / 255, zero-padded to `data.pad_to`, then normalised per
channel with `data.mean`/`data.std` when given. `data.val_size` holds out validation examples with
`RandomState(data.split_seed).choice(N, N - val_size, replace=False)` as the training indices (in
that order; the course code's split of CIFAR), the rest (sorted) as validation.

Each split has a digest (`Dataset.digests`): md5 of its images and labels as read, in order, with their
shapes, cut to 8 hex digits as MLflow's own dataset digests are; the same examples in the same order give
the same digest wherever they are read (padding and normalisation are settings, kept in the params).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vgsweep.data.files import folder, read_checked
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
    digests: dict[str, str] = field(default_factory=dict)  # per split (train, validation, test): see digest
    source: str = ""  # the folder its files were read from (absolute)

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


def digest(x: np.ndarray, y: np.ndarray) -> str:
    """A split's digest: md5 of its images (as read: uint8) and labels (as int64), in order, and their
    shapes; 8 hex digits, as MLflow's dataset digests."""
    h = hashlib.md5(usedforsecurity=False)
    h.update(repr((x.shape, str(x.dtype), y.shape)).encode())
    h.update(np.ascontiguousarray(x).data)
    h.update(np.ascontiguousarray(y, dtype=np.int64).data)
    return h.hexdigest()[:8]


def _pad(x: np.ndarray, size: Optional[int]) -> np.ndarray:
    if size is None or size == x.shape[-1]:
        return x
    h, w = x.shape[-2:]
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(x, ((0, 0), (0, 0), (top, size - h - top), (left, size - w - left)))


_CACHE: dict[tuple, Dataset] = {}
_DIGESTS: dict[tuple, dict[str, str]] = {}


def _splits(d, arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The (images, labels) as read of each split data config `d` takes from `arrays`: train, validation
    (where val_size holds one out), test."""
    tx, ty = arrays["train_x"][:d.limit_train], arrays["train_y"][:d.limit_train]
    tr, va = split_indices(len(ty), int(d.val_size), int(d.split_seed))
    splits = {"train": (tx[tr], ty[tr]) if d.val_size else (tx, ty)}
    if d.val_size:
        splits["validation"] = (tx[va], ty[va])
    splits["test"] = (arrays["test_x"][:d.limit_test], arrays["test_y"][:d.limit_test])
    return splits


def _examples_key(d) -> tuple:
    """What decides which examples data config `d` gives, in which order (not how they are padded or normalised)."""
    return (d.name, str(Path(d.root).resolve()), d.limit_train, d.limit_test, int(d.val_size), int(d.split_seed))


def digests(d) -> dict[str, str]:
    """Each split's digest (as `load(d, ...).digests`), reading the files (with d.verify's checks) but
    making no tensors; cached per process."""
    key = _examples_key(d)
    if key not in _DIGESTS:
        arrays = read_checked(d.name, d.root, bool(d.download), bool(d.verify))
        _DIGESTS[key] = {k: digest(*xy) for k, xy in _splits(d, arrays).items()}
    return _DIGESTS[key]


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

    splits = _splits(d, arrays)
    made = {k: tensors(*xy) for k, xy in splits.items()}
    examples = _examples_key(d)
    if examples not in _DIGESTS:  # another padding or normalisation of the same examples: hashed once
        _DIGESTS[examples] = {k: digest(*xy) for k, xy in splits.items()}
    black = torch.from_numpy((0.0 - mean) / std).to(device)
    ds = Dataset(d.name, made["train"], made["test"], made.get("validation"), spec.classes, black,
                 digests=dict(_DIGESTS[examples]), source=str(folder(spec, d.root).resolve()))
    _CACHE[key] = ds
    return ds
