"""The VGG family and the CIFAR study: parameter counts, the packed CNN against a plain PyTorch one,
CIFAR's files and split, crops and flips, Adam and cosine annealing against torch.optim, packing
never changing a run, and the whole study through the CLI into MLflow, the table and the figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.conftest import compose_cfg, run_cli
from vgsweep.data import cifar
from vgsweep.families import FAMILIES, vgg
from vgsweep.seeding import generator

VARIANTS = ("vgg08", "vgg38", "vgg38_bn", "vgg38_rc", "vgg38_bn_rc")


def _cfg(*overrides: str):
    return compose_cfg(["device=cpu", "dataset=cifar100", "init=torch_default", "activation=leaky_relu",
                        "activation.negative_slope=0.01", *overrides])


class Reference(nn.Module):
    """The course framework's ConvolutionalNetwork as the report describes it, in plain PyTorch."""

    def __init__(self, m, channels: int, classes: int):
        super().__init__()
        self.m, F_ = m, int(m.filters)
        proc_bn, red_bn = str(m.bn.value) in ("processing", "all"), str(m.bn.value) == "all"

        def unit(cin, bias, bn):
            return nn.ModuleDict({"conv": nn.Conv2d(cin, F_, 3, padding=1, bias=bias),
                                  **({"bn": nn.BatchNorm2d(F_, eps=m.bn_eps, momentum=m.bn_momentum)} if bn else {})})

        self.entry = unit(channels, False, m.entry_bn)
        self.stages = nn.ModuleList()
        for _ in range(m.stages):
            blocks = nn.ModuleList([nn.ModuleList([unit(F_, False, proc_bn), unit(F_, False, proc_bn)])
                                    for _ in range(m.blocks_per_stage)])
            self.stages.append(nn.ModuleDict({"blocks": blocks, "red": nn.ModuleList([unit(F_, True, red_bn),
                                                                                      unit(F_, True, red_bn)])}))
        self.fc = nn.Linear(F_, classes)

    def _u(self, u, x, skip=None):
        z = u["conv"](x)
        if "bn" in u:
            z = u["bn"](z)
        if skip is not None:
            z = z + skip
        return F.leaky_relu(z, 0.01)

    def forward(self, x):
        h = self._u(self.entry, x)
        for st in self.stages:
            for a, b in st["blocks"]:
                h = self._u(b, self._u(a, h), skip=h if str(self.m.residual.value) == "processing" else None)
            h = self._u(st["red"][1], F.avg_pool2d(self._u(st["red"][0], h), 2))
        return self.fc(h.mean(dim=(2, 3)))

    def load_from(self, p: dict, k: int) -> None:
        """Copy run k's parameters of a packed model into this network."""
        units = [self.entry] + [u for st in self.stages for blk in st["blocks"] for u in blk] + \
                [u for st in self.stages for u in st["red"]]
        names = [n for n, *_ in vgg.convs(self.m)]
        order = ["entry.conv"] + [n for n in names if ".b" in n] + [n for n in names if ".red." in n]
        with torch.no_grad():
            for u, name in zip(units, order):
                u["conv"].weight.copy_(p[f"{name}.w"][k])
                if u["conv"].bias is not None:
                    u["conv"].bias.copy_(p[f"{name}.b"][k])
                if "bn" in u:
                    u["bn"].weight.copy_(p[f"{name}.gamma"][k])
                    u["bn"].bias.copy_(p[f"{name}.beta"][k])
            self.fc.weight.copy_(p["fc.w"][k].T)
            self.fc.bias.copy_(p["fc.b"][k])


@pytest.mark.parametrize("variant,expected", [("vgg08", 59716), ("vgg38", 336196), ("vgg38_bn", 338116),
                                              ("vgg38_rc", 336196), ("vgg38_bn_rc", 338500)])
def test_parameter_counts(variant, expected):
    """VGG08 59,716 and VGG38 336,196, as the report's table (60 K, 336 K); with batch norm in the
    processing blocks 338,116, in every block 338,500 (the report's "339 K")."""
    cfg = _cfg(f"model={variant}")
    assert vgg.parameter_count(cfg, (3, 32, 32), 100) == expected
    assert sum(p.numel() for p in Reference(cfg.model, 3, 100).parameters()) == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_packed_forward_equals_a_plain_pytorch_network(variant):
    """Two runs packed as one grouped-convolution model give what two plain nn.Modules with the same
    weights give, in training (batch statistics) and evaluation (running statistics) mode."""
    cfg = _cfg(f"model={variant}", "model.blocks_per_stage=1" if variant != "vgg08" else "model.stages=3")
    model = vgg.build([cfg, cfg], (3, 32, 32), 100, [generator(s, "init") for s in (0, 1)], torch.device("cpu"))
    x = torch.randn(2, 6, 3, 32, 32)
    out = model.forward(x, train=True)
    p = model.params()
    for k in range(2):
        ref = Reference(cfg.model, 3, 100)
        ref.load_from(p, k)
        assert torch.allclose(out[k], ref.train()(x[k]), atol=1e-5), k
        test = torch.randn(4, 3, 32, 32)
        assert torch.allclose(model.forward(test, train=False)[k], ref.eval()(test), atol=1e-5), k


def test_the_memory_estimate_bounds_what_a_training_step_keeps():
    """The packer's per-run estimate covers every tensor a step's forward keeps for backward (counted
    on the CPU through autograd's saved-tensor hooks, each storage once), and a step captured as a CUDA
    graph is charged its activations a second time (the graph's own pool); on the CPU it is not."""
    from vgsweep.packing import bytes_per_run

    K, B = 2, 100
    cfgs = [_cfg("model=vgg38_bn_rc", "model.blocks_per_stage=2", f"seed={k}", f"train.batch_size={B}") for k in range(K)]
    model = vgg.build(cfgs, (3, 32, 32), 100, [generator(k, "init") for k in range(K)], torch.device("cpu"))
    storages: dict[int, int] = {}

    def keep(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(K, B, 3, 32, 32)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model.forward(x, train=True).sum().backward()
    kept = sum(storages.values()) / K
    eager = vgg.bytes_per_run(cfgs[0], (3, 32, 32), 100)
    captured = vgg.bytes_per_run(cfgs[0], (3, 32, 32), 100, captured=True)
    assert kept > 0.3 * eager, (kept, eager)  # the estimate is of the right size, not a blanket
    assert eager >= kept and captured - eager >= kept - 5 * 4 * model.P, (kept, eager, captured)
    graphed = _cfg("model=vgg38_bn_rc", "model.blocks_per_stage=2", "cuda_graph=true", f"train.batch_size={B}")
    assert bytes_per_run(graphed) == bytes_per_run(_cfg("model=vgg38_bn_rc", "model.blocks_per_stage=2",
                                                        "cuda_graph=false", f"train.batch_size={B}"))  # CPU: no graph


@pytest.mark.parametrize("family", ["vgg", "mlp"])
def test_the_memory_estimate_counts_the_probes_chunk_with_diagnostics_on(family):
    """The end-of-epoch probe keeps every unit layer's input of a chunk at once (probe.units): with
    diagnostics on, the estimate adds at least those bytes, and not many times them (a VGG38's chunk of
    500 test images is about 1 GB a run, beside its step's 1.2 GB, and the estimate left it out)."""
    from vgsweep.packing import bytes_per_run

    make = (lambda *o: _cfg("model=vgg38_bn_rc", "model.blocks_per_stage=1", *o)) if family == "vgg" else (
        lambda *o: compose_cfg(["device=cpu", "model.hidden=[64,48,32]", *o]))
    on, off = (make(f"diagnostics.enabled={e}", "diagnostics.probe_examples=40") for e in (True, False))
    shape, classes = ((3, 32, 32), 100) if family == "vgg" else ((1, 28, 28), 10)
    model = FAMILIES[family].build([on] * 2, shape, classes, [generator(k, "init") for k in range(2)],
                                   torch.device("cpu"))
    pre: list = []
    model.forward(torch.randn(40, *shape), train=False, preacts=pre)
    kept = 4 * sum(z.numel() for z in pre) / 2  # a run's share
    added = bytes_per_run(on) - bytes_per_run(off)
    assert kept > 0 and kept <= added < 2 * kept, (kept, added)


def test_the_vgg38_variants_pack_together_and_each_is_its_own_network(cifar_root):
    """VGG38, VGG38 BN, RC and BN + RC share a pack: each run's forward pass (batch statistics and
    running ones) is its plain network's, and trained two epochs it keeps its own numbers; its
    checkpoint holds its own layout (resumed alone, it continues)."""
    from vgsweep.packing import group_packs
    from vgsweep.trainer import Pack, train_pack

    rows = ("vgg38", "vgg38_bn", "vgg38_rc", "vgg38_bn_rc")
    cfgs = [_cfg(f"model={v}", "model.blocks_per_stage=1", f"seed={k}") for k, v in enumerate(rows)]
    assert group_packs(cfgs, max_pack=4, memory_budget_gb=1000) == [[0, 1, 2, 3]]  # (the CPU would pack by 1)
    model = vgg.build(cfgs, (3, 32, 32), 100, [generator(k, "init") for k in range(4)], torch.device("cpu"))
    x, test = torch.randn(4, 6, 3, 32, 32), torch.randn(4, 3, 32, 32)
    out, p = model.forward(x, train=True), model.params()
    for k, c in enumerate(cfgs):
        ref = Reference(c.model, 3, 100)
        ref.load_from(p, k)
        assert torch.allclose(out[k], ref.train()(x[k]), atol=1e-5), rows[k]
        assert torch.allclose(model.forward(test, train=False)[k], ref.eval()(test), atol=1e-5), rows[k]

    tiny = [_tiny(cifar_root, f"model={v}", f"seed={k}", "checkpoint.every=1") for k, v in enumerate(rows)]
    saved: dict = {}
    packed = train_pack(tiny, on_checkpoint=lambda done, st: saved.setdefault(done, st)).history
    for k, c in enumerate(tiny):
        alone = train_pack([c]).history[0]
        for a, b in zip(alone, packed[k]):
            for m in a:
                assert b[m] == pytest.approx(a[m], rel=2e-3, abs=1e-6), (rows[k], m)
        assert saved[1][k]["theta"].numel() == Pack([c]).model.P == vgg.parameter_count(c, (3, 32, 32), 100)
        assert len(train_pack([c], resume=[saved[1][k]]).history[0]) == 2


def test_init_is_pytorchs_default():
    cfg = _cfg("model=vgg08")
    model = vgg.build([cfg], (3, 32, 32), 100, [generator(0, "init")], torch.device("cpu"))
    w = model.params()["s1.red.conv1.w"][0]  # fan_in 32 * 9
    bound = 1 / math.sqrt(32 * 9)
    assert w.abs().max() <= bound and w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert model.params()["s1.red.conv1.b"][0].abs().max() <= bound and model.params()["s1.red.conv1.b"].abs().sum() > 0


def write_cifar(root: Path, name: str = "cifar100", n_train: int = 160, n_test: int = 60, seed: int = 0) -> Path:
    """A small learnable data set in CIFAR's pickle format and torchvision's layout."""
    rng = np.random.default_rng(seed)
    classes = 100 if name == "cifar100" else 10
    protos = rng.integers(0, 256, size=(classes, 3, 32, 32))
    train_files, test_files = cifar.file_lists(name)
    folder = root / ("cifar-100-python" if name == "cifar100" else "cifar-10-batches-py")
    for files, n in ((train_files, n_train), (test_files, n_test)):
        per = -(-n // len(files))
        for f in files:
            y = rng.integers(0, min(classes, 10), size=per)  # 10 classes used: learnable from a few images
            x = np.clip(protos[y] * 0.5 + rng.normal(0, 40, size=(per, 3, 32, 32)) + 40, 0, 255)
            cifar.write_batch(folder / f, x, y, fine=name == "cifar100")
    return root


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"))


def test_cifar_files_are_read_by_the_real_loader(tmp_path, cifar_root):
    from vgsweep.data import DataError
    from vgsweep.data.files import read_checked

    a = read_checked("cifar100", cifar_root, download=False, verify=False)
    assert a["train_x"].shape == (160, 3, 32, 32) and a["test_x"].shape == (60, 3, 32, 32)
    assert a["train_x"].dtype == np.uint8 and int(a["train_y"].max()) < 100
    with pytest.raises(DataError, match="checksum mismatch .*torchvision's md5 for cifar100"):
        read_checked("cifar100", cifar_root, download=False, verify=True)
    c10 = write_cifar(tmp_path / "c10", "cifar10", n_train=50, n_test=10)
    assert read_checked("cifar10", c10, download=False, verify=False)["train_x"].shape == (50, 3, 32, 32)


def test_a_planted_pickle_is_refused_not_run(tmp_path):
    import os
    import pickle

    from vgsweep.data import DataError

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (tmp_path / "batch").write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    with pytest.raises(DataError, match="not allowed in a CIFAR batch"):
        cifar.read_batch(tmp_path / "batch")
    assert not (tmp_path / "pwned").exists()


def test_the_course_codes_train_validation_split(cifar_root):
    from vgsweep.data.loader import load, split_indices

    train, val = split_indices(50000, 2500, 0)
    expected = np.random.RandomState(0).choice(50000, 47500, replace=False)
    assert np.array_equal(train, expected) and len(val) == 2500
    assert np.array_equal(val, np.setdiff1d(np.arange(50000), expected))  # the rest, in order
    cfg = _cfg(f"data.root={cifar_root}", "data.verify=false", "data.val_size=40", "data.mean=[0.5,0.5,0.5]",
               "data.std=[0.25,0.25,0.25]")
    ds = load(cfg.data, torch.device("cpu"))
    assert len(ds.train) == 120 and len(ds.val) == 40 and len(ds.test) == 60
    from vgsweep.data.files import read_checked

    raw = read_checked("cifar100", cifar_root, False, False)
    tr, va = split_indices(160, 40, 0)
    assert torch.allclose(ds.train.x[0], (torch.from_numpy(raw["train_x"][tr[0]]).float() / 255 - 0.5) / 0.25)
    assert torch.equal(ds.val.y, torch.from_numpy(raw["train_y"][va]))
    assert torch.allclose(ds.black, torch.full((3,), -2.0))  # (0 - 0.5) / 0.25: what padding fills in
    # each split's digest (the runs' MLflow dataset inputs) is of its examples in order, not of the settings
    # that pad or normalise them: another split seed, other examples; a limit on the test set, another test set
    from vgsweep.data.loader import digest

    assert ds.digests == {"train": digest(raw["train_x"][tr], raw["train_y"][tr]),
                          "validation": digest(raw["train_x"][va], raw["train_y"][va]),
                          "test": digest(raw["test_x"], raw["test_y"])}
    assert len(set(ds.digests.values())) == 3
    assert digest(raw["train_x"][tr[::-1]], raw["train_y"][tr[::-1]]) != ds.digests["train"]  # the order counts
    other = load(_cfg(f"data.root={cifar_root}", "data.verify=false", "data.val_size=40", "data.split_seed=1",
                      "data.limit_test=50", "data.pad_to=36").data, torch.device("cpu")).digests
    assert other["train"] != ds.digests["train"] and other["validation"] != ds.digests["validation"]
    assert other["test"] != ds.digests["test"]
    from vgsweep.data import loader

    loader._DIGESTS.clear()  # hashed afresh from the padded load, not handed back from the first one's
    same = load(_cfg(f"data.root={cifar_root}", "data.verify=false", "data.val_size=40", "data.pad_to=36").data,
                torch.device("cpu")).digests
    assert same == ds.digests


def test_crops_and_flips_per_run_from_its_own_generator(cifar_root):
    from vgsweep.data.loader import load
    from vgsweep.data.transforms import TrainInputs

    cfg = _cfg(f"data.root={cifar_root}", "data.verify=false")
    ds = load(cfg.data, torch.device("cpu"))
    idx = torch.arange(8).repeat(2, 1)  # (K=2, B=8): the same images for both runs
    crop = TrainInputs(ds, [0.0, 0.0], [7, 8], 4, False, torch.device("cpu"))
    out = crop.batch(idx)
    g = generator(7, "augment")
    off = torch.randint(0, 9, (8, 2), generator=g)
    padded = F.pad(ds.train.x[:8], (4, 4, 4, 4))  # black is 0 without normalisation
    for b in range(8):
        oy, ox = off[b].tolist()
        assert torch.equal(out[0, b], padded[b, :, oy:oy + 32, ox:ox + 32])
    assert not torch.equal(out[0], out[1])  # the other run draws its own crops
    flip = TrainInputs(ds, [0.0], [3], 0, True, torch.device("cpu"))
    seen = set()
    for _ in range(6):
        o = flip.batch(idx[:1])[0]
        for b in range(8):
            same, mirrored = torch.equal(o[b], ds.train.x[b]), torch.equal(o[b], ds.train.x[b].flip(-1))
            assert same or mirrored
            seen.add("flip" if mirrored and not same else "same")
    assert seen == {"flip", "same"}
    shared = TrainInputs(ds, [0.0, 0.0], [1, 2], 0, False, torch.device("cpu"))
    assert shared.X is None and shared.nbytes_per_run() == 0  # no noise: one copy of the data for the pack


def test_adam_with_weight_decay_and_cosine_annealing_match_torch():
    from vgsweep.optim import PackOptimizer, Schedules

    cfg = _cfg("model=vgg08", "optimizer.lr=0.01", "optimizer.weight_decay=0.001", "optimizer.schedule.name=cosine",
               "optimizer.schedule.eta_min=2e-5")
    w0 = torch.randn(1, 50)
    w = torch.nn.Parameter(w0[0].clone())
    ref = torch.optim.Adam([w], lr=0.01, eps=cfg.optimizer.eps, weight_decay=0.001)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=5, eta_min=2e-5)
    ours = Schedules([cfg.optimizer], epochs=5, steps=3, device=torch.device("cpu"))
    theta = w0.clone()

    def hp(lr):
        col = lambda v: torch.tensor([[float(v)]])  # noqa: E731
        return {"lr": lr, "beta1": col(0.9), "beta2": col(0.999), "eps": col(cfg.optimizer.eps),
                "momentum": col(0.9), "weight_decay": col(0.001)}

    opt = PackOptimizer("adam", theta, hp(ours.lr(0, 0)))
    torch.manual_seed(0)
    for epoch in range(5):
        assert ours.lr(epoch, 0).item() == pytest.approx(ref.param_groups[0]["lr"], rel=1e-6)
        opt.hp["lr"] = ours.lr(epoch, 0)
        for _ in range(3):
            g = torch.randn(50)
            w.grad = g.clone()
            ref.step()
            opt.step(theta, g.view(1, 50).clone())
        sched.step()
    assert torch.allclose(theta[0], w.detach(), atol=1e-6)


def _tiny(cifar_root, *overrides):
    return _cfg(f"data.root={cifar_root}", "data.verify=false", "data.download=false", "model=vgg38_bn_rc",
                "model.blocks_per_stage=1", "model.filters=4", "train.epochs=2", "train.batch_size=20",
                "optimizer=adam", "data.val_size=40", "data.augment.crop_padding=4", "data.augment.flip=true",
                "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]", "data.input_noise_std=0",
                "diagnostics.probe_examples=40", *overrides)


def test_the_gpus_grouped_convolution_gives_the_cpus_per_run_convolutions_numbers():
    """A pack's two ways through its convolutions and pools: one grouped convolution over (B, K*C, H, W)
    memory (a GPU's way) and one convolution per run over (K, B, C, H, W) memory (the CPU's), the same
    outputs, batch-norm statistics and gradients to float rounding, in training and evaluation."""
    cfgs = [_cfg("model=vgg38_bn_rc", "model.blocks_per_stage=1", "model.filters=8", f"seed={k}") for k in range(2)]
    cfgs.append(_cfg("model=vgg38", "model.blocks_per_stage=1", "model.filters=8"))
    x, y = torch.randn(3, 10, 3, 32, 32), torch.randint(0, 100, (3, 10))
    got = {}
    for grouped in (False, True):
        model = vgg.build(cfgs, (3, 32, 32), 100, [generator(k, "init") for k in range(3)], torch.device("cpu"))
        assert model.grouped is False  # the CPU's own way
        model.grouped = grouped
        out = model.forward(x, train=True)
        got[grouped] = (out, model.grad(model.loss(out, y).sum()), model.buffers["s1.b1.conv1.var"].clone(),
                        model.forward(x[0], train=False))
    for a, b in zip(got[False], got[True]):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_packed_step_gives_each_run_its_own_gradient():
    """One forward and backward of three runs packed: the middle run's gradient and batch-norm statistics
    are the ones it has alone, bit for bit on the CPU, whatever its neighbours hold."""
    cfg = _cfg("model=vgg38_bn_rc", "model.blocks_per_stage=1", "model.filters=8")
    packed = vgg.build([cfg] * 3, (3, 32, 32), 100, [generator(s, "init") for s in (1, 5, 2)], torch.device("cpu"))
    alone = vgg.build([cfg], (3, 32, 32), 100, [generator(5, "init")], torch.device("cpu"))
    x, y = torch.randn(3, 10, 3, 32, 32), torch.randint(0, 100, (3, 10))
    g_packed = packed.grad(packed.loss(packed.forward(x, train=True), y).sum())[1]
    g_alone = alone.grad(alone.loss(alone.forward(x[1:2], train=True), y[1:2]).sum())[0]
    assert torch.equal(g_packed, g_alone)  # on the CPU, one convolution per run: bit for bit
    for name in ("s1.b1.conv1.mean", "s1.b1.conv1.var"):  # each run's batch-norm statistics are its own
        assert torch.equal(packed.buffers[name][1], alone.buffers[name][0])


def test_packing_never_changes_a_vgg_run(cifar_root):
    """A VGG run alone and packed with runs of other seeds, rates, schedules and weight decay, two
    epochs of Adam: on the CPU the same numbers, bit for bit (one convolution per run, the call it
    makes alone). With one grouped convolution they agreed to ~1e-3 only: it sums in another order,
    and the biases before batch norm have gradients that are pure rounding, which Adam turns into
    steps of size lr."""
    from vgsweep.trainer import train_pack

    job = _tiny(cifar_root, "seed=5", "optimizer.schedule.name=cosine", "optimizer.schedule.eta_min=1e-5")
    alone = train_pack([job]).history[0]
    others = [_tiny(cifar_root, f"seed={s}", f"optimizer.lr={lr}", f"optimizer.weight_decay={wd}",
                    "optimizer.schedule.name=cosine", f"optimizer.schedule.every={every}")
              for s, lr, wd, every in ((1, 0.01, 0.0, "step"), (2, 0.001, 0.01, "epoch"))]
    packed = train_pack([others[0], job, others[1]])
    assert len(packed.history[1]) == len(alone) == 2 and "val_acc" in alone[0]
    assert packed.history[1] == alone


@pytest.mark.e2e
def test_a_vgg_trains_into_the_vgg_studys_experiment_its_table_led_by_test_accuracy_without_a_split(
        cifar_root, tmp_path):
    """`vgsweep -m model=mlp,vgg08` without a study file: the VGG goes to the VGG study's experiment (it went
    into the MLP study's, where the report left it out), the MLP to the MLP study's. Trained without a
    validation split, the VGG study's table leads with the test accuracy (it showed `— ()`, n = 0)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(["-m", "model=mlp,vgg08", f"data.root={cifar_root}", "data.verify=false", "data.download=false",
                    "device=cpu", "dataset=cifar100", "train.epochs=1", "train.batch_size=20", "data.limit_train=100",
                    "diagnostics.probe_examples=40", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'a'}"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    for experiment, family in (("vgg_cifar100", "vgg"), ("agarap2019", "mlp")):
        runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        assert [r.data.params["model.family"] for r in runs] == [family]
    proc = run_cli(["report", "--tracking-uri", uri, "--out", str(tmp_path / "res")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "res" / "table.md").read_text()
    assert "Left out" not in md and "— ()" not in md, md
    vgg = md[md.index("# Results: experiment `vgg_cifar100`"):md.index("# Results: experiment `agarap2019`")]
    assert "## cifar100: test accuracy (%), mean ± std over seeds (n = 1)" in vgg, md
    assert "| model | lr | parameters | test accuracy (%) | train acc (%) | train loss |" in vgg, md


def test_a_curves_figure_draws_the_test_curves_of_runs_without_a_validation_split():
    from vgsweep.results.figures import _logged

    metrics = ("train_loss", "val_loss", "train_acc", "val_acc")
    split = pd.DataFrame({"metric:train_loss": [1.0], "metric:val_loss": [1.0], "metric:train_acc": [0.5],
                          "metric:val_acc": [0.5], "metric:test_loss": [1.0], "metric:test_acc": [0.5]})
    assert _logged(split, metrics) == metrics
    none = split.assign(**{"metric:val_loss": float("nan"), "metric:val_acc": float("nan")})
    assert _logged(none, metrics) == ("train_loss", "test_loss", "train_acc", "test_acc")  # its panels were empty
    assert _logged(none.drop(columns=["metric:test_loss"]), metrics) == ("train_loss", "train_acc", "test_acc")


@pytest.mark.e2e
def test_vggs_trained_into_the_mlp_studys_experiment_get_a_table_and_figures(cifar_root, tmp_path):
    """`vgsweep -m model=vgg08 study=agarap2019` trains into the MLP study's experiment, whose table needs
    model.depth, and table, figures and report failed with a KeyError: they take the VGG layout (test
    accuracy: no validation split). An MLP trained beside them into that experiment failed them too
    (IntCastingNaNError): the other family's runs are left out, and each command says so."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    common = [f"data.root={cifar_root}", "data.verify=false", "data.download=false", "device=cpu", "dataset=cifar100",
              "train.epochs=1", "train.batch_size=20", "diagnostics.probe_examples=40", f"tracking.uri={uri}",
              "study=agarap2019"]
    proc = run_cli(["-m", "model=vgg08", "model.filters=4", "seed=1,2", *common, f"hydra.sweep.dir={tmp_path / 'a'}"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for mixed in (False, True):
        if mixed:
            proc = run_cli(["-m", *common, f"hydra.sweep.dir={tmp_path / 'b'}"], cwd=tmp_path)  # one MLP beside them
            assert proc.returncode == 0, proc.stderr[-3000:]
        out = tmp_path / f"res{int(mixed)}"
        proc = run_cli(["report", "--tracking-uri", uri, "--out", str(out)], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        md = (out / "table.md").read_text()
        assert "agarap2019 (vgg_cifar100's layout)." in md and "## cifar100: test accuracy (%)" in md, md
        assert "| vgg08 | 0.0003 |" in md and "mlp 512" not in md
        left = ("Left out: 1 run of model.family=mlp, beside the experiment's 2 vgg runs: one table cannot hold two "
                "model families; --where model.family=mlp tables them, or train each family into an experiment of "
                "its own (tracking.experiment=...).")
        assert (left in md and left in (out / "report.md").read_text()) == mixed, md
        assert (out / "figures" / "agarap2019" / "results.png").is_file()
    proc = run_cli(["figures", "--tracking-uri", uri, "--out", str(tmp_path / "figs"), "--no-mlflow"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]  # (an older MLflow says its migrations there too)
    assert f"vgsweep figures: experiment 'agarap2019': {left}" in proc.stderr.splitlines(), proc.stderr[-3000:]
    proc = run_cli(["table", "--tracking-uri", uri, "--out", str(tmp_path / "mlp"), "--where", "model.family=mlp"],
                   cwd=tmp_path)  # as the line says: the MLP's table, in the MLP study's layout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Only the runs where model.family=mlp: 1 of the experiment's 3 ended runs." in proc.stdout
    assert "| logistic | " in proc.stdout and "Left out" not in proc.stdout and "vgg08" not in proc.stdout, proc.stdout


@pytest.mark.e2e
def test_the_study_through_the_cli_into_mlflow_the_table_and_the_figures(cifar_root, tmp_path):
    """experiment=vgg_cifar100 with its seven rows (shrunk: 4 filters, 1 epoch, 160 images), then
    vgsweep report from the store: the table, the figures, and the page that shows every one of them."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(["experiment=vgg_cifar100", f"data.root={cifar_root}", "data.verify=false",
                    "data.download=false", "device=cpu", "model.filters=4", "train.epochs=2", "train.batch_size=20",
                    "data.val_size=40", "diagnostics.probe_examples=40", "tracking.learning_curve=false",
                    f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'mr'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("vgg_cifar100")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == 7 and {r.info.status for r in runs} == {"FINISHED"}
    rows = {(r.data.params["model.name"], r.data.params["optimizer.lr"]) for r in runs}
    assert rows == {("vgg08", "0.001"), ("vgg38", "0.001"), ("vgg38_bn", "0.01"), ("vgg38_bn", "0.001"),
                    ("vgg38_rc", "0.001"), ("vgg38_bn_rc", "0.001"), ("vgg38_bn_rc", "0.01")}
    r = runs[0]
    assert {"val_acc", "val_loss", "best_val_acc", "test_acc_at_best_val", "grad/fc/mean_abs"} <= set(r.data.metrics)
    assert r.data.params["data.val_size"] == "40" and r.data.params["optimizer.schedule.name"] == "cosine"

    report = run_cli(["report", "--tracking-uri", uri, "--out", str(tmp_path / "res")], cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    md = (tmp_path / "res" / "table.md").read_text()
    assert "| model | lr | parameters | val acc (%) |" in md
    assert "| vgg38_bn_rc | 0.01 |" in md and "not comparable with the published values" in md
    assert "published accuracy 0.01 is read as a fraction" not in md  # a note on published values none shows
    lines = [x for x in md.splitlines() if x.startswith("| vgg")]
    assert [x.split(" | ")[0][2:] for x in lines] == ["vgg08", "vgg38", "vgg38_bn", "vgg38_bn", "vgg38_rc",
                                                       "vgg38_bn_rc", "vgg38_bn_rc"]
    tex = (tmp_path / "res" / "table.tex").read_text()
    assert r"vgg38\_bn\_rc & 0.01 & " in tex and r"\begin{tabular}{llr" in tex  # model, lr; parameters
    print(md)
    made = {p.name for p in (tmp_path / "res" / "figures" / "vgg_cifar100").iterdir()}
    stems = ("curves", "gradient_flow_epochs", "gradient_flow", "results")
    assert {f"{s}.png" for s in stems} <= made
    page = (tmp_path / "res" / "report.md").read_text()
    # gradient_flow.png was drawn but left out of the page: only gradient_flow_d<depth> (the MLP's) was looked for
    assert all(f"(figures/vgg_cifar100/{s}.png)" in page for s in stems), page


def test_a_saved_vgg_run_gives_back_its_test_and_validation_numbers(cifar_root, tmp_path):
    """tracking.save_weights with a CNN (batch norm's running statistics, residual connections, a
    normalised, augmented data set with a validation split): the network load_run rebuilds computes the
    run's recorded test and validation accuracy."""
    from mlflow.tracking import MlflowClient

    from vgsweep.jobs import Job
    from vgsweep.saved import load_run
    from vgsweep.sweep import run_jobs

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    [o] = run_jobs([Job(_tiny(cifar_root, "tracking.save_weights=true", f"tracking.uri={uri}",
                              "tracking.learning_curve=false"))])
    assert o.status == "FINISHED"
    run = load_run(o.run_id, uri)
    metrics = MlflowClient(uri).get_run(o.run_id).data.metrics
    data = run.data()
    for split, key in ((data.test, "test_acc"), (data.val, "val_acc")):
        correct = int((run.forward(split.x).argmax(-1) == split.y).sum())
        assert correct == round(metrics[key] * len(split)), key
    params = run.parameters()
    first = run.model.layout[0].name  # the entry convolution
    assert params["fc.w"].shape == (4, 100) and params[first].shape == (4, 3, 3, 3), list(params)
