"""The data sets vgsweep knows, described without reading them: shape, classes, sizes, files, checks.

Torch-free, so that a config can be validated against it in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataSpec:
    name: str
    format: str  # idx (MNIST's files) | cifar (the Python pickles of CIFAR-10/100)
    folder: str  # under data.root: <folder>/raw/ for IDX files, <folder>/ for CIFAR's batches
    torchvision: str  # the torchvision.datasets class that downloads it
    classes: int
    shape: tuple[int, int, int]  # (channels, height, width) of one image
    n_train: int
    n_test: int
    # IDX: md5 of the uncompressed content of each file (gzipped or not), where known. A file passes
    # when its content or its published .gz matches.
    content_md5: dict[str, str] = field(default_factory=dict)
    # IDX: md5 of the gzipped files as published (torchvision's list), checked when the .gz is there.
    gz_md5: dict[str, str] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def input_dim(self) -> int:
        c, h, w = self.shape
        return c * h * w


IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}

DATASETS: dict[str, DataSpec] = {
    "mnist": DataSpec(
        "mnist", "idx", "MNIST", "MNIST", 10, (1, 28, 28), 60000, 10000,
        content_md5={
            "train_x": "6bbc9ace898e44ae57da46a324031adb",
            "train_y": "a25bea736e30d166cdddb491f175f624",
            "test_x": "2646ac647ad5339dbf082846283269ea",
            "test_y": "27ae3e4e09519cfbb04c329615203637",
        }),
    "fashion_mnist": DataSpec(
        "fashion_mnist", "idx", "FashionMNIST", "FashionMNIST", 10, (1, 28, 28), 60000, 10000,
        # the content as Debian's dataset-fashion-mnist ships it (recompressed: its .gz md5s differ)
        content_md5={
            "train_x": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train_y": "9018921c3c673c538a1fc5bad174d6f9",
            "test_x": "8181f5470baa50b63fa0f6fddb340f0a",
            "test_y": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        gz_md5={
            "train_x": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_y": "25c81989df183df01b3e8a0aad5dffbe",
            "test_x": "bef4ecab320f06d8554ea6380940ec79",
            "test_y": "bb300cfdad3c16e7a12a480ee83cd310",
        }),
    # CIFAR's file names and md5s are torchvision's own (torchvision.datasets.CIFAR10/100).
    "cifar10": DataSpec("cifar10", "cifar", "cifar-10-batches-py", "CIFAR10", 10, (3, 32, 32), 50000, 10000),
    "cifar100": DataSpec("cifar100", "cifar", "cifar-100-python", "CIFAR100", 100, (3, 32, 32), 50000, 10000),
}
