"""CIFAR-10/100 in their Python pickle format (torchvision's layout: <root>/cifar-10-batches-py/...).

The pickles are read with an unpickler that builds numpy arrays, lists, dicts and strings only,
so a planted file cannot run code. File names and md5s are torchvision's (`CIFAR10.train_list`...).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from vgsweep.data.errors import DataError

# The globals a CIFAR pickle needs to rebuild its arrays (numpy 1 and 2 spell the module differently).
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def file_lists(name: str) -> tuple[list[str], list[str]]:
    """(train batch files, test batch files) of cifar10 / cifar100, from torchvision."""
    tv = _tv_class(name)
    return [f for f, _ in tv.train_list], [f for f, _ in tv.test_list]


def _tv_class(name: str):
    import torchvision.datasets as tvd

    return {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]


def check_md5(name: str, folder: Path) -> None:
    """Every batch file against torchvision's md5; DataError naming the first that differs."""
    from torchvision.datasets.utils import check_integrity

    tv = _tv_class(name)
    for fname, md5 in tv.train_list + tv.test_list:
        if not check_integrity(str(folder / fname), md5):
            raise DataError(f"{folder / fname}: checksum mismatch (torchvision's md5 for {name} is {md5}); the "
                            f"file is damaged or not {name}: delete {folder} and let data.download=true fetch it "
                            "again, or set data.verify=false for your own files")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of one batch file."""
    try:
        with path.open("rb") as f:
            entry = _SafeUnpickler(f, encoding="latin1").load()
        x = np.asarray(entry["data"], dtype=np.uint8)
        y = np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"cannot read {path} as a CIFAR batch: {e} (the file is damaged: delete it and let "
                        "data.download=true fetch it again)") from e
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise DataError(f"{path}: expected data (N, 3072) and N labels, got {x.shape} and {y.shape}")
    return x.reshape(-1, 3, 32, 32), y


def read(name: str, folder: Path) -> dict[str, np.ndarray]:
    train, test = file_lists(name)
    out = {}
    for split, files in (("train", train), ("test", test)):
        parts = [read_batch(folder / f) for f in files]
        out[f"{split}_x"] = np.concatenate([p[0] for p in parts])
        out[f"{split}_y"] = np.concatenate([p[1] for p in parts])
    return out


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, fine: bool) -> None:
    """Write images (N, 3, 32, 32) uint8 and labels as a CIFAR batch file. Used to make test data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1),
             ("fine_labels" if fine else "labels"): [int(v) for v in labels],
             "filenames": [f"img{i}.png" for i in range(len(images))]}
    with path.open("wb") as f:
        pickle.dump(entry, f, protocol=2)
