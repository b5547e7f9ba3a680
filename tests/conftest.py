"""Shared fixtures: tiny data in the real IDX format, the real Hydra config shrunk for the CPU."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf

from vgsweep.app import compose
from vgsweep.data.idx import write_idx

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
# Overrides that shrink any job to seconds on the CPU.
SMALL = ["device=cpu", "data.verify=false", "train.epochs=2", "model.hidden=[16,16]", "train.batch_size=32",
         "optimizer.lr=0.01", "data.download=false", "tracking.learning_curve=false"]


def make_idx_dataset(root: Path, n_train: int = 384, n_test: int = 128, seed: int = 0,
                     folder: str = "MNIST") -> Path:
    """Write a small learnable data set in MNIST's file format: class prototypes plus noise."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, size=(10, 28, 28))
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, size=n)
        x = np.clip(protos[y] * 0.35 + rng.normal(0, 60, size=(n, 28, 28)) + 60, 0, 255)
        write_idx(root / folder / "raw" / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(root / folder / "raw" / f"{split}-labels-idx1-ubyte.gz", y)
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("data"))


@functools.lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    return compose(list(overrides))


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The real composition of conf/ (schema, groups, overrides), as the CLI would do it; each
    distinct list is composed once per session and handed out as a fresh copy."""
    cfg = copy.deepcopy(_composed(tuple(overrides)))
    OmegaConf.set_readonly(cfg, False)
    return cfg


@pytest.fixture
def small_cfg(tiny_root, tmp_path):
    """A factory: compose a shrunk config on tiny data with a store in tmp_path."""

    def make(*overrides: str) -> DictConfig:
        return compose_cfg([*SMALL, f"data.root={tiny_root}",
                            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", *overrides])

    return make


def run_cli(args: list[str], cwd: Path, timeout: int = 600, module: str = "vgsweep") -> subprocess.CompletedProcess:
    """The real CLI in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)
