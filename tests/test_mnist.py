"""The real MNIST files in ../shared/data, read by the real loader, and one short real run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA, _needs, compose_cfg
from vgsweep.data.loader import load
from vgsweep.trainer import train_pack

pytestmark = pytest.mark.mnist

if not (SHARED_DATA / "MNIST" / "raw").is_dir():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI=true but the real MNIST is missing from {SHARED_DATA}")
    pytest.skip(f"real MNIST not found in {SHARED_DATA}", allow_module_level=True)


def test_loader_reads_the_real_files():
    cfg = compose_cfg(["device=cpu", f"data.root={SHARED_DATA}", "data.download=false"])
    ds = load(cfg.data, torch.device("cpu"))
    assert ds.train.x.shape == (60000, 1, 28, 28) and ds.test.x.shape == (10000, 1, 28, 28)
    assert 0.0 <= ds.train.x.min() and ds.train.x.max() == 1.0
    train_counts = np.bincount(ds.train.y.numpy(), minlength=10).tolist()
    test_counts = np.bincount(ds.test.y.numpy(), minlength=10).tolist()
    assert train_counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test_counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # the digests its runs' MLflow dataset inputs carry: MNIST's wherever its files are read (a change here
    # would part the runs recorded before it from those after)
    assert ds.digests == {"train": "e8c78536", "test": "9295b4d5"}


def test_one_epoch_of_the_paper_net_learns():
    cfg = compose_cfg(["device=cpu", f"data.root={SHARED_DATA}", "data.download=false", "train.epochs=1",
                       "activation=relu", "regime=gna_bn", "optimizer.lr=0.01"])
    hist = train_pack([cfg]).history[0]
    assert hist[0]["test_acc"] > 0.8


# Fashion-MNIST as Debian's dataset-fashion-mnist installs it (.ci/run installs it): the real files, read by the
# real loader through the checksums vgsweep holds for them (Debian recompressed the .gz files: their content's md5s)
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory) -> Path:
    """A data.root whose FashionMNIST/raw/ links to Debian's files, as the README tells a user to make it."""
    _needs(str(DEBIAN_FASHION) if DEBIAN_FASHION.is_dir() else None, "Debian's Fashion-MNIST", "dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("fashion")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in DEBIAN_FASHION.glob("*-ubyte.gz"):
        (raw / f.name).symlink_to(f)
    return root


def test_the_real_fashion_mnist_files_pass_their_checksums_and_load(fashion_root):
    cfg = compose_cfg(["device=cpu", "dataset=fashion_mnist", f"data.root={fashion_root}", "data.download=false"])
    assert cfg.data.verify is True  # the md5s of the content are checked, as for a user
    ds = load(cfg.data, torch.device("cpu"))
    assert ds.train.x.shape == (60000, 1, 28, 28) and ds.test.x.shape == (10000, 1, 28, 28)
    assert 0.0 <= ds.train.x.min() and ds.train.x.max() == 1.0
    assert np.bincount(ds.train.y.numpy(), minlength=10).tolist() == [6000] * 10  # balanced, unlike MNIST
    assert np.bincount(ds.test.y.numpy(), minlength=10).tolist() == [1000] * 10


def test_one_epoch_on_fashion_mnist_learns(fashion_root):
    cfg = compose_cfg(["device=cpu", "dataset=fashion_mnist", f"data.root={fashion_root}", "data.download=false",
                       "train.epochs=1", "activation=relu", "optimizer.lr=0.01"])
    hist = train_pack([cfg]).history[0]
    assert hist[0]["test_acc"] > 0.7  # chance is 0.1
