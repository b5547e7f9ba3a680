"""MNIST's IDX format: magic (0, 0, dtype, ndim), ndim big-endian sizes, then the values."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from vgsweep.data.errors import DataError

_DTYPES = {0x08: np.uint8}


def read_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e} (the file is damaged: delete it and let data.download=true "
                        "fetch it again)") from e


def read_idx(path: Path, raw: bytes | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped)."""
    raw = read_bytes(path) if raw is None else raw
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: the header announces {ndim} dimensions but the file ends after {len(raw)} bytes "
                        "(truncated)")
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
