"""Data sets in IDX format (MNIST, Fashion-MNIST): read, check, and put on the device.

Files are looked for in torchvision's layout, `<root>/<Folder>/raw/<name>[.gz]`, gzipped or not.
When they are missing and `data.download` is true, torchvision downloads them there.
"""

from __future__ import annotations

import gzip
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

# name -> (folder under root, torchvision class, number of classes)
DATASETS: dict[str, tuple[str, str, int]] = {
    "mnist": ("MNIST", "MNIST", 10),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST", 10),
}
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_DTYPES = {0x08: np.uint8}
# md5 of the uncompressed IDX content (gzip or not), and the number of items, of the known files.
CHECKSUMS: dict[str, dict[str, tuple[str, int]]] = {
    "mnist": {
        "train_x": ("6bbc9ace898e44ae57da46a324031adb", 60000),
        "train_y": ("a25bea736e30d166cdddb491f175f624", 60000),
        "test_x": ("2646ac647ad5339dbf082846283269ea", 10000),
        "test_y": ("27ae3e4e09519cfbb04c329615203637", 10000),
    },
}
SIZES = {"fashion_mnist": {"train_x": 60000, "train_y": 60000, "test_x": 10000, "test_y": 10000}}
# md5 of the gzipped files as published (torchvision's list), where only those are known: checked
# when the .gz file is there (torchvision keeps it beside what it extracts).
GZ_CHECKSUMS: dict[str, dict[str, str]] = {
    "fashion_mnist": {
        "train_x": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train_y": "25c81989df183df01b3e8a0aad5dffbe",
        "test_x": "bef4ecab320f06d8554ea6380940ec79",
        "test_y": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}


class DataError(RuntimeError):
    pass


def _read_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e} (the file is damaged: delete it and let data.download=true "
                        "fetch it again)") from e


def read_idx(path: Path, raw: bytes | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped): magic (0, 0, dtype, ndim), ndim big-endian sizes, data."""
    raw = _read_bytes(path) if raw is None else raw
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} ({int(np.prod(dims))} values), file holds {body.size}")
    return body.reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped if the name ends in .gz). Used to make test data."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wb") as f:
        f.write(header + a.tobytes())


def _find(raw_dir: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (raw_dir / name).is_file():
            return raw_dir / name
    return None


def raw_dir(name: str, root: str | Path) -> Path:
    return Path(root) / DATASETS[name][0] / "raw"


def locate(name: str, root: str | Path, download: bool) -> dict[str, Path]:
    """Paths of the four files; downloads through torchvision if allowed and any is missing."""
    d = raw_dir(name, root)
    found = {k: _find(d, stem) for k, stem in FILES.items()}
    if all(found.values()):
        return found  # type: ignore[return-value]
    missing = ", ".join(FILES[k] for k, v in found.items() if v is None)
    if not download:
        raise DataError(f"data.root={str(root)!r}: {missing} not found in {d} "
                        "(set data.download=true to fetch them, or point data.root at a folder "
                        f"holding {DATASETS[name][0]}/raw/)")
    import torchvision.datasets as tvd

    log.info("downloading %s into %s", name, root)
    for train in (True, False):
        getattr(tvd, DATASETS[name][1])(str(root), train=train, download=True)
    return locate(name, root, download=False)


@dataclass
class Split:
    x: torch.Tensor  # (N, D) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int

    @property
    def input_dim(self) -> int:
        return self.train.x.shape[1]


_CACHE: dict[tuple, Dataset] = {}


_CHECKED: dict[tuple, dict[str, np.ndarray]] = {}


def read_checked(name: str, root: str | Path, download: bool, verify: bool = True) -> dict[str, np.ndarray]:
    """The four arrays, after checking headers and, with `verify`, the known checksums and sizes.

    Raises DataError naming the file, what is wrong and what to do. Cached per process."""
    import hashlib

    key = (name, str(Path(root).resolve()), verify)
    if key in _CHECKED:
        return _CHECKED[key]
    paths = locate(name, root, download)
    arrays = {}
    for k, p in paths.items():
        raw = _read_bytes(p)
        if verify and name in CHECKSUMS:
            md5, n = CHECKSUMS[name][k]
            if hashlib.md5(raw).hexdigest() != md5:
                raise DataError(f"{p}: checksum mismatch (md5 of the content is {hashlib.md5(raw).hexdigest()}, "
                                f"{name} has {md5}); the file is damaged or not {name}: delete it and let "
                                "data.download=true fetch it again, or set data.verify=false for your own files")
        gz = raw_dir(name, root) / (FILES[k] + ".gz")
        if verify and name in GZ_CHECKSUMS and gz.is_file():
            got = hashlib.md5(gz.read_bytes()).hexdigest()
            if got != GZ_CHECKSUMS[name][k]:
                raise DataError(f"{gz}: checksum mismatch (md5 {got}, {name}'s published file has "
                                f"{GZ_CHECKSUMS[name][k]}); the file is damaged or not {name}: delete it and let "
                                "data.download=true fetch it again, or set data.verify=false for your own files")
        arrays[k] = read_idx(p, raw)
        expected = SIZES.get(name, {}).get(k) or (CHECKSUMS.get(name, {}).get(k, (None, None))[1])
        if verify and expected and len(arrays[k]) != expected:
            raise DataError(f"{p}: {len(arrays[k])} items, {name} has {expected} (data.verify=false accepts it)")
    n_cls = DATASETS[name][2]
    for split in ("train", "test"):  # what training needs, whatever the files claim to be
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{paths[f'{split}_x']}, {paths[f'{split}_y']}: expected images (N, H, W) "
                            f"and as many labels (N,), got {x.shape} and {y.shape}")
        if len(y) and int(y.max()) >= n_cls:
            raise DataError(f"{paths[f'{split}_y']}: label {int(y.max())}, but {name} has {n_cls} classes")
    _CHECKED[key] = arrays
    return arrays


def load(name: str, root: str | Path, download: bool, device: torch.device,
         limit_train: int | None = None, limit_test: int | None = None, verify: bool = True) -> Dataset:
    """The data set on `device`: pixels / 255, flattened. Cached per (name, root, device, limits)."""
    key = (name, str(Path(root).resolve()), str(device), limit_train, limit_test, verify)
    if key in _CACHE:
        return _CACHE[key]
    arrays = read_checked(name, root, download, verify)
    n_cls = DATASETS[name][2]
    splits = {}
    for split, limit in (("train", limit_train), ("test", limit_test)):
        x, y = arrays[f"{split}_x"][:limit], arrays[f"{split}_y"][:limit]
        xt = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0).to(device)
        splits[split] = Split(xt, torch.from_numpy(y.astype(np.int64)).to(device))
    ds = Dataset(name, splits["train"], splits["test"], n_cls)
    _CACHE[key] = ds
    return ds
