"""compile=true: the step's forward pass and update through torch.compile.

On the CPU the tests compile with the `aot_eager` backend (VGSWEEP_COMPILE_BACKEND): torch.compile's
real graph capture (dynamo) and autograd (AOTAutograd), with no code generation, which would take
a minute per shape on two cores. Inductor's kernels are tested on the GPU (tests/test_gpu.py).
"""

from __future__ import annotations

import logging

import pytest
import torch

from vgsweep import compiling
from vgsweep.config import config_hash
from vgsweep.trainer import Pack, train_pack

MIXED = (("regime=baseline", "relu"), ("regime=gna", "tanh"), ("regime=gna_bn", "logistic"),
         ("regime=gna_bn_batch", "swish"), ("regime=gna regime.grad_noise.unit=step", "leaky_relu"))


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setenv(compiling.BACKEND_ENV, "aot_eager")
    torch._dynamo.reset()
    compiling._COMPILED.clear()
    yield
    torch._dynamo.reset()
    compiling._COMPILED.clear()


def _cfgs(small_cfg, *extra):
    return [small_cfg(*r.split(), f"activation={a}", f"seed={s}", "regime.grad_noise.eta=0.05",
                      "optimizer.momentum=0.9", "optimizer.weight_decay=1e-3", "diagnostics.grad_samples=3", *extra)
            for s, (r, a) in enumerate(MIXED)]


def _train(cfgs):
    reports = []
    res = train_pack(cfgs, on_epoch=reports.append)
    return res.history, [r.diagnostics for r in reports]


def _close(a, b, rel=1e-5, abs_=1e-6):
    for run_a, run_b in zip(a, b):
        assert len(run_a) == len(run_b)
        for e_a, e_b in zip(run_a, run_b):
            for m in e_a:
                assert e_b[m] == pytest.approx(e_a[m], rel=rel, abs=abs_), m


@pytest.mark.usefixtures("aot_eager", "several_threads")
def test_the_compiled_step_gives_the_eager_numbers_alone_and_packed(small_cfg, caplog):
    """A pack of five activations with and without noise (per epoch and per step), frozen and real batch
    norm, momentum and weight decay, diagnostics on, a last partial batch: compiled (the graphs dynamo
    captures, run by AOTAutograd), each run's metrics and diagnostics are the eager ones, and a run
    alone gets its packed numbers. The two functions compile once each, whole (fullgraph: a graph break
    would leave the step's kernels unfused); the partial batch runs eagerly rather than compiling again."""
    from torch._dynamo.utils import counters

    extra = ["train.batch_size=40", "train.drop_last=false"]  # 384 examples: 9 batches of 40 and one of 24
    eager, eager_diag = _train(_cfgs(small_cfg, *extra))
    counters.clear()
    cfgs = _cfgs(small_cfg, *extra, "compile=true")
    with caplog.at_level(logging.WARNING, logger="vgsweep.compiling"):
        compiled, compiled_diag = _train(cfgs)
    assert not [r for r in caplog.records if r.name == "vgsweep.compiling"]  # fullgraph: a break would fail, said
    assert counters["aot_autograd"]["ok"] == counters["stats"]["unique_graphs"] == 2, dict(counters)
    _close(eager, compiled)
    assert eager[0] != eager[3]  # the runs do differ
    for e_epoch, c_epoch in zip(eager_diag, compiled_diag):
        for e_run, c_run in zip(e_epoch, c_epoch):
            assert e_run.keys() == c_run.keys()
            for key in e_run:
                c, e = torch.as_tensor(c_run[key]), torch.as_tensor(e_run[key])
                if key == "hist":  # shares of the weights per bin of log10|g|: a rounding moves one across an edge
                    assert (c - e).abs().sum(-1).max() <= 0.01, key
                else:
                    assert torch.allclose(c, e, rtol=1e-4, atol=1e-7, equal_nan=True), key
    _close([train_pack([cfgs[3]]).history[0]], [compiled[3]])  # batch norm on the run, not on all its pack mates


@pytest.mark.usefixtures("aot_eager")
def test_a_failing_compiler_leaves_the_pack_eager_and_says_so(small_cfg, monkeypatch, caplog):
    """A compiler that fails (no Triton, no C++ compiler, a bug): one warning per part of the step, and
    the pack trains on eagerly, to the eager numbers."""
    from torch._dynamo import register_backend

    @register_backend(name="vgsweep_test_broken")
    def broken(gm, example_inputs):
        raise RuntimeError("this compiler is broken on purpose")

    monkeypatch.setenv(compiling.BACKEND_ENV, "vgsweep_test_broken")
    cfgs = _cfgs(small_cfg)[:2]
    eager = train_pack(cfgs).history
    with caplog.at_level(logging.WARNING, logger="vgsweep.compiling"):
        pack_cfgs = _cfgs(small_cfg, "compile=true")[:2]
        compiled = train_pack(pack_cfgs).history
    assert compiled == eager
    said = [r.getMessage() for r in caplog.records if r.name == "vgsweep.compiling"]
    assert len(said) == 2 and all("broken on purpose" in m and "without compiling" in m for m in said), said
    assert Pack(pack_cfgs).compiled is not None


def test_compile_keeps_the_hash_of_the_runs_made_before_it_and_marks_its_own(small_cfg):
    """compile=false (the default) is the config of every run made before the key existed; compile=true
    rounds differently, so it is another config (a store's eager run does not stand in for it)."""
    plain, compiled = small_cfg(), small_cfg("compile=true")
    assert config_hash(small_cfg("compile=false")) == config_hash(plain)
    assert config_hash(compiled) != config_hash(plain)


@pytest.mark.usefixtures("aot_eager")
def test_a_vgg_pack_compiles_whole_to_the_eager_numbers(tmp_path, caplog):
    """The VGG family (its convolutions, batch norm on some runs, skips on some), with Adam, compiles
    as one graph too: its forward pass reads no config object (a DictConfig read inside it broke the graph)."""
    from tests.test_vgg import _tiny, write_cifar

    cifar_root = write_cifar(tmp_path)
    rows = ("vgg38_bn", "vgg38_rc")  # batch norm on one, a skip on the other: each a torch.where

    def cfgs(flag):
        return [_tiny(cifar_root, f"model={v}", f"seed={k}", f"compile={flag}", "train.epochs=1")
                for k, v in enumerate(rows)]

    eager = train_pack(cfgs("false")).history
    with caplog.at_level(logging.WARNING, logger="vgsweep.compiling"):
        compiled = train_pack(cfgs("true")).history
    assert not [r.getMessage() for r in caplog.records if r.name == "vgsweep.compiling"]
    _close(eager, compiled)


@pytest.mark.usefixtures("aot_eager")
def test_out_of_memory_in_a_compiled_step_is_not_taken_for_a_compiler_failure(small_cfg, monkeypatch):
    """Device memory running out inside compiled code reaches the sweep, which splits the pack and retries
    it (sweep.run_isolated); it is not logged as a compiler failure and run again eagerly."""
    from torch._dynamo import register_backend

    @register_backend(name="vgsweep_test_oom")
    def oom(gm, example_inputs):
        def run(*args):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (raised by the test)")
        return run

    monkeypatch.setenv(compiling.BACKEND_ENV, "vgsweep_test_oom")
    with pytest.raises(torch.cuda.OutOfMemoryError, match="raised by the test"):
        train_pack(_cfgs(small_cfg, "compile=true")[:1])
