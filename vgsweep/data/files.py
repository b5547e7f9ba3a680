"""Finding a data set's files under data.root, downloading them through torchvision, checking them.

Files are looked for in torchvision's layout: `<root>/MNIST/raw/<name>[.gz]` (IDX, gzipped or not),
`<root>/cifar-100-python/{train,test}`. When they are missing and `data.download` is true,
torchvision downloads them there; when that fails (no network), the error says where the files
are expected and the two ways out. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from vgsweep.data import cifar
from vgsweep.data.errors import DataError
from vgsweep.data.idx import read_bytes, read_idx
from vgsweep.data.sets import DATASETS, IDX_FILES, DataSpec

log = logging.getLogger(__name__)


def folder(spec: DataSpec, root: str | Path) -> Path:
    """Where the files of `spec` live under root."""
    return Path(root) / spec.folder / ("raw" if spec.format == "idx" else "")


def _idx_paths(spec: DataSpec, root: str | Path) -> dict[str, Path | None]:
    d = folder(spec, root)
    found: dict[str, Path | None] = {}
    for k, stem in IDX_FILES.items():
        found[k] = next((d / n for n in (stem, stem + ".gz") if (d / n).is_file()), None)
    return found


def missing(spec: DataSpec, root: str | Path) -> list[str]:
    """Names of the files of `spec` that are not under root."""
    if spec.format == "idx":
        return [IDX_FILES[k] for k, p in _idx_paths(spec, root).items() if p is None]
    train, test = cifar.file_lists(spec.name)
    return [f for f in train + test if not (folder(spec, root) / f).is_file()]


def _download(spec: DataSpec, root: str | Path, absent: list[str]) -> None:
    import torchvision.datasets as tvd

    created = [p for p in (Path(root), Path(root) / spec.folder, folder(spec, root)) if not p.exists()]
    log.info("downloading %s into %s", spec.name, root)
    try:
        for train in (True, False):
            getattr(tvd, spec.torchvision)(str(root), train=train, download=True)
    except Exception as e:  # noqa: BLE001 - any failure of the download is reported the same way
        for p in reversed(created):  # leave no empty folders behind
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        reason = str(e).splitlines()[-1] if str(e) else type(e).__name__
        raise DataError(
            f"{spec.name} is not in {folder(spec, root)} ({', '.join(absent)} missing) and downloading it failed "
            f"({reason}). Either download it on a machine with internet (python -c \"import torchvision; "
            f"torchvision.datasets.{spec.torchvision}('data', download=True)\") and copy the folder "
            f"{spec.folder}/ into {Path(root).resolve()}/, or point data.root at a folder that holds "
            f"{spec.folder}/ and set data.download=false") from None


def locate(spec: DataSpec, root: str | Path, download: bool) -> None:
    """Make sure the files are there: downloaded if allowed, else DataError saying what is missing."""
    absent = missing(spec, root)
    if not absent:
        return
    if not download:
        raise DataError(f"data.root={str(root)!r}: {', '.join(absent)} not found in {folder(spec, root)} "
                        "(set data.download=true to fetch them, or point data.root at a folder holding "
                        f"{spec.folder}/)")
    _download(spec, root, absent)
    still = missing(spec, root)
    if still:
        raise DataError(f"{spec.name}: downloaded, but {', '.join(still)} still missing in {folder(spec, root)}")


def _read_idx_checked(spec: DataSpec, root: str | Path, verify: bool) -> dict[str, np.ndarray]:
    arrays = {}
    paths = _idx_paths(spec, root)
    for k, p in paths.items():
        assert p is not None
        raw = read_bytes(p)
        if verify and (k in spec.content_md5 or k in spec.gz_md5):
            got = hashlib.md5(raw).hexdigest()
            gz = folder(spec, root) / (IDX_FILES[k] + ".gz")
            ok = spec.content_md5.get(k) == got or (k in spec.gz_md5 and gz.is_file()
                                                     and hashlib.md5(gz.read_bytes()).hexdigest() == spec.gz_md5[k])
            if not ok:
                known = [f"{spec.name}'s is {spec.content_md5[k]}"] if k in spec.content_md5 else []
                known += [f"the published {gz.name} has md5 {spec.gz_md5[k]}"] if k in spec.gz_md5 else []
                raise DataError(f"{p}: checksum mismatch (md5 of the content is {got}; {', '.join(known)}); the file is "
                                f"damaged or not {spec.name}: delete it and let data.download=true fetch it again, or "
                                "set data.verify=false for your own files")
        arrays[k] = read_idx(p, raw)
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{paths[f'{split}_x']}, {paths[f'{split}_y']}: expected images (N, H, W) "
                            f"and as many labels (N,), got {x.shape} and {y.shape}")
        if len(y) and int(y.max()) >= spec.classes:
            raise DataError(f"{paths[f'{split}_y']}: label {int(y.max())}, but {spec.name} has {spec.classes} classes")
        arrays[f"{split}_x"] = x[:, None]  # (N, 1, H, W)
    return arrays


_CHECKED: dict[tuple, dict[str, np.ndarray]] = {}


def read_checked(name: str, root: str | Path, download: bool, verify: bool = True) -> dict[str, np.ndarray]:
    """train_x, test_x (N, C, H, W) uint8 and train_y, test_y (N,) after checking them: the files'
    checksums and the data set's sizes with `verify`, and always what training needs (shapes, labels
    within the classes). Raises DataError naming the file, what is wrong and what to do. Cached."""
    spec = DATASETS[name]
    key = (name, str(Path(root).resolve()), verify)
    if key in _CHECKED:
        return _CHECKED[key]
    locate(spec, root, download)
    if spec.format == "idx":
        arrays = _read_idx_checked(spec, root, verify)
    else:
        if verify:
            cifar.check_md5(name, folder(spec, root))
        arrays = cifar.read(name, folder(spec, root))
    where = folder(spec, root)
    for split, n in (("train", spec.n_train), ("test", spec.n_test)):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if verify and len(x) != n:
            raise DataError(f"{where}: {len(x)} {split} images, {name} has {n} (data.verify=false accepts it)")
        if verify and x.shape[1:] != spec.shape:
            raise DataError(f"{where}: {split} images of shape {x.shape[1:]}, {name}'s are {spec.shape} "
                            "(data.verify=false accepts it)")
        if x.shape[1] != spec.channels:
            raise DataError(f"{where}: {split} images with {x.shape[1]} channels, {name} has {spec.channels}")
        if len(y) and (int(y.max()) >= spec.classes or int(y.min()) < 0):
            bad = int(y.max()) if int(y.max()) >= spec.classes else int(y.min())
            raise DataError(f"{where}: {split} label {bad}, but {name} has {spec.classes} classes "
                            f"(labels 0 to {spec.classes - 1})")
    _CHECKED[key] = arrays
    return arrays
