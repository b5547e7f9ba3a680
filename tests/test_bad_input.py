"""Bad input through the real CLI: one clear message, non-zero exit, and the store untouched."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import SMALL, make_idx_dataset, run_cli
from vgsweep.jobs import Job
from vgsweep.sweep import run_jobs

# (overrides, fragments the output must hold). {tiny}, {empty}, {corrupt}, {store}, {tmp} are filled in.
CASES = [
    (["activation=sigmoidd"], ["Could not find 'activation/sigmoidd'", "logistic"]),
    (["depth=7"], ["Could not find 'depth/7'"]),
    (["train.epoch=3"], ["Key 'epoch' not in", "train.epoch"]),
    (["train.epochs=abc"], ["train.epochs", "'abc'", "Integer"]),
    (["train.epochs=0"], ["train.epochs=0 is not accepted", "a positive int"]),
    (["optimizer.lr=-1"], ["optimizer.lr=-1.0 is not accepted", "a positive float"]),
    (["optimizer.momentum=1.5"], ["optimizer.momentum=1.5", "[0, 1)"]),
    (["model.hidden=[]"], ["model.hidden=[] is not accepted", "non-empty list"]),
    (["model.hidden=[64,64,64]"], ["model.depth=2", "len(model.hidden) = 3"]),
    (["regime.grad_noise.unit=minute"], ["minute", "epoch", "step"]),
    (["regime.bn.mode=sometimes"], ["sometimes", "frozen", "batch"]),
    (["device=cuda"], ["device='cuda'", "no CUDA device"]),
    (["precision=bf16"], ["precision='bf16'", "GPU options"]),
    (["data.root={empty}"], ["data.root=", "not found", "data.download=true"]),
    (["data.root={corrupt}"], ["data.root=", "damaged"]),
    (["data.root={tiny}", "data.verify=true"], ["checksum mismatch", "data.verify=false"]),
    (["tracking.uri=http://127.0.0.1:9"], ["tracking.uri='http://127.0.0.1:9'", "no MLflow server answers"]),
    (["tracking.uri=sqlite:///{tmp}/no/such/dir/m.db"], ["does not exist"]),
    (["train.batch_size=100000"], ["train.batch_size=100000 is not accepted", "at most 384"]),
    (["checkpoint.every=-1"], ["checkpoint.every=-1", ">= 0"]),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_root):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "empty").mkdir()
    corrupt = make_idx_dataset(tmp / "corrupt")
    f = corrupt / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])  # a download cut off half way
    store = tmp / "store"
    store.mkdir()
    # A store that already holds a finished run: nothing below may change it.
    from tests.conftest import compose_cfg

    cfg = compose_cfg([*SMALL, f"data.root={tiny_root}", f"tracking.uri=sqlite:///{store / 'mlflow.db'}"])
    assert run_jobs([Job(cfg)])[0].status == "FINISHED"
    return {"tiny": tiny_root, "empty": tmp / "empty", "corrupt": corrupt, "store": store, "tmp": tmp}


def _snapshot(store: Path) -> dict:
    return {p.relative_to(store): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.mark.e2e
def test_every_bad_input_fails_before_training_with_a_clear_message(world):
    before = _snapshot(world["store"])
    uri = f"sqlite:///{world['store'] / 'mlflow.db'}"

    def one(case):
        overrides, _ = case
        filled = [o.format(**world) for o in overrides]
        args = ["-m", "seed=1,2", *SMALL, f"data.root={world['tiny']}", f"tracking.uri={uri}", *filled,
                f"hydra.sweep.dir={world['tmp'] / 'mr' / str(abs(hash(tuple(filled))))}"]
        return run_cli(args, cwd=world["tmp"], timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(one, CASES))
    assert len(CASES) >= 15
    for (overrides, fragments), proc in zip(CASES, procs):
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, overrides
        for frag in fragments:
            assert frag in out, (overrides, frag, out[-2000:])
        assert "Traceback" not in proc.stderr, (overrides, proc.stderr[-2000:])
        assert "epoch 1" not in out  # nothing trained
    assert _snapshot(world["store"]) == before
    assert not (world["tmp"] / "checkpoints").exists()


@pytest.mark.parametrize("defect,fragment", [("labels", "label 12, but mnist has 10 classes"),
                                             ("count", "expected images (N, H, W) and as many labels")])
def test_malformed_data_is_a_data_error_naming_the_file(tmp_path, defect, fragment):
    """Files in the right format but with wrong contents (checksums off) fail with a DataError."""
    import re

    import numpy as np

    from vgsweep.data import DataError
    from vgsweep.data.files import read_checked
    from vgsweep.data.idx import write_idx

    root = make_idx_dataset(tmp_path)
    raw = root / "MNIST" / "raw"
    if defect == "labels":
        write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.full(128, 12))
    else:
        write_idx(raw / "train-labels-idx1-ubyte.gz", np.zeros(100))
    with pytest.raises(DataError, match=re.escape(fragment)) as e:
        read_checked("mnist", root, download=False, verify=False)
    assert "-ubyte.gz" in str(e.value)


def test_fashion_mnist_files_are_checked_against_the_published_gzip_md5(tmp_path):
    """Fashion-MNIST's published checksums are of the .gz files: a .gz that is not theirs is refused."""
    from vgsweep.data import DataError
    from vgsweep.data.files import read_checked

    root = make_idx_dataset(tmp_path, folder="FashionMNIST")
    with pytest.raises(DataError, match="checksum mismatch") as e:
        read_checked("fashion_mnist", root, download=False, verify=True)
    assert "train-images-idx3-ubyte.gz" in str(e.value) and "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in str(e.value)
    assert len(read_checked("fashion_mnist", root, download=False, verify=False)["train_y"]) == 384
