"""Data sets: what each is (sets.py), its files and checks (files.py, idx.py, cifar.py), on the device
(loader.py), and each run's inputs per step (transforms.py). Importing this package imports no torch."""

from vgsweep.data.errors import DataError
from vgsweep.data.sets import DATASETS, DataSpec

__all__ = ["DATASETS", "DataError", "DataSpec"]
