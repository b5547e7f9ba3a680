"""Diagnostics against hand computation on a tiny net, and verdicts on nets made to fail or not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from vgsweep.config import VerdictConfig
from vgsweep.diagnostics import GRAD_COLS, RunDiagnostics, verdict
from vgsweep.families.base import Member
from vgsweep.families.mlp import Arch, PackedMLP
from vgsweep.probe import GradientProbe
from vgsweep.trainer import train_pack

DCFG = OmegaConf.structured({"grad_samples": 2, "probe_examples": 6, "saturation_threshold": 0.01,
                             "hist_bins": 12, "hist_min": -10.0, "hist_max": 2.0})


def _tiny(act="relu", K=2):
    arch = Arch((4, 3, 3, 2), (), "frozen", 1e-3, 0.99)
    gens = [torch.Generator().manual_seed(i) for i in range(K)]
    return PackedMLP(arch, [Member(act, 0.2, "xavier", 0.05, False)] * K, gens, torch.device("cpu"))


def test_gradient_statistics_match_a_hand_computation():
    m = _tiny()
    probe = GradientProbe(m, DCFG, steps=5)
    assert probe.sample_steps == {0, 4}
    grads = [torch.randn(2, m.P) for _ in range(2)]
    noisy = [g + 0.5 for g in grads]
    for step, g, gn in zip((0, 4), grads, noisy):
        probe.grad_stats(step, g, after_noise=False)
        probe.grad_stats(step, gn, after_noise=True)
        probe.update_stats(step, 0.1 * gn, m.theta.detach())
    probe.grad_stats(2, torch.full((2, m.P), 1e6), after_noise=False)  # not a sampled step: ignored
    row = probe.epoch_tensor(torch.rand(2, 6, 4), chunk=4)
    d = probe.split(row[1].numpy())
    w = [(e.offset, e.numel) for e in m.weights()]
    for li, (o, n) in enumerate(w):
        for c, src in ((0, grads), (3, noisy)):
            x = [g[1, o:o + n].numpy().astype(np.float64) for g in src]
            assert d["grad"][li, c] == pytest.approx(np.mean([np.abs(v).mean() for v in x]), rel=1e-5)
            assert d["grad"][li, c + 1] == pytest.approx(np.mean([v.std(ddof=1) for v in x]), rel=1e-5)
            assert d["grad"][li, c + 2] == pytest.approx(np.mean([np.linalg.norm(v) for v in x]), rel=1e-5)
        theta = m.theta.detach()[1, o:o + n].numpy()
        ratio = np.mean([np.linalg.norm(0.1 * g[1, o:o + n].numpy()) / np.linalg.norm(theta) for g in noisy])
        assert d["grad"][li, 6] == pytest.approx(ratio, rel=1e-5)
        # histogram of the last sampled step: fractions summing to 1, in the right bins
        counts, _ = np.histogram(np.clip(np.log10(np.abs(grads[1][1, o:o + n].numpy())), -10, 2), bins=12, range=(-10, 2))
        assert d["hist"][0, li] == pytest.approx(counts / n, abs=1e-6)


def test_saturated_and_dead_units_by_construction():
    m = _tiny("relu", K=1)
    with torch.no_grad():
        p = m.params()
        p["b0"][0, 0] = -100.0  # unit 1 of hidden layer 1 is never active: dead
        p["W0"][0].abs_()
        p["b0"][0, 1:] = 1.0  # the others are always active on non-negative inputs
    probe = GradientProbe(m, DCFG, steps=1)
    sat, dead = probe.units(torch.rand(1, 6, 4), chunk=4)
    assert dead[0, 0].item() == pytest.approx(1 / 3)
    assert sat[0, 0].item() == pytest.approx(1 / 3)
    lg = _tiny("logistic", K=1)
    with torch.no_grad():
        lg.params()["b0"][0] = torch.tensor([50.0, -50.0, 0.0])  # sigmoid'(+-50) ~ 2e-22: saturated
        lg.params()["W0"][0].zero_()
    sat, dead = GradientProbe(lg, DCFG, steps=1).units(torch.rand(1, 6, 4), chunk=6)
    assert sat[0, 0].item() == pytest.approx(2 / 3) and dead[0, 0].item() == pytest.approx(2 / 3)


def _diag(norms, dead=0.0):
    g = np.zeros((len(norms), len(norms[0]), len(GRAD_COLS)))
    g[:, :, GRAD_COLS.index("grad/norm")] = norms
    g[:, :, GRAD_COLS.index("grad/mean_abs")] = np.array(norms) / 100
    E = len(norms)
    return RunDiagnostics(g, np.zeros((E, 2, len(norms[0]), 4)), np.zeros((E, 1)), np.full((E, 1), dead), np.zeros(5))


V = VerdictConfig()


@pytest.mark.parametrize("norms,dead,acc,diverged,expected", [
    ([[1.0, 1.0], [0.5, 1.0]], 0.0, 0.9, False, "healthy"),
    ([[1e-4, 1.0], [1e-4, 1.0]], 0.0, 0.9, False, "vanishing"),
    ([[1.0, 1.0], [1e-4, 0.5]], 0.0, 0.9, False, "vanishing"),  # collapsed over training
    ([[1.0, 1.0], [1e-4, 1e-4]], 0.0, 0.9, False, "healthy"),  # every layer fell alike: the loss neared zero
    ([[1.0, 1.0], [1e-6, 1e-2]], 0.0, 0.9, False, "vanishing"),  # the first fell 10,000 x further than the last
    ([[1.0, 5e3], [1.0, 1.0]], 0.0, 0.9, False, "exploding"),
    ([[1.0, 1.0], [1.0, 1.0]], 0.9, 0.9, False, "dead_units"),
    ([[1.0, 1.0], [1.0, 1.0]], 0.0, 0.11, False, "not_learning"),
    ([[1.0, 1.0], [1.0, 1.0]], 0.0, 0.9, True, "exploding"),
])
def test_verdict_rules(norms, dead, acc, diverged, expected):
    v, why = verdict(_diag(norms, dead), acc, 10, V, diverged)
    assert v == expected and why


def test_a_first_layer_no_gradient_reaches_is_said_so():
    """A zero init (init=zero) passes no gradient back at all: its reason said `0 x the last layer's`, as if
    the gradient had faded with depth; it says none reaches the first layer, and why that may be (a deep
    net's gradient that underflowed float32 too: it named zero weights and dead units only)."""
    v, why = verdict(_diag([[0.0, 1.0], [0.0, 1.0]]), 0.1135, 10, V)
    assert v == "vanishing" and why.startswith("no gradient reaches the first layer"), why
    assert why.endswith("zero weights, every unit off, or a gradient shrunk layer by layer below float32's smallest "
                        "number, about 1e-45)"), why
    v, why = verdict(_diag([[1e-9, 1.0], [0.0, 1.0]]), 0.1135, 10, V)
    assert v == "vanishing" and why.startswith("first layer's mean |gradient| is"), why


def test_a_net_made_to_vanish_and_a_healthy_one(small_cfg):
    """Real training: 8 logistic layers from small weights vanish; a 2-layer ReLU net is healthy."""
    deep = small_cfg("activation=logistic", "depth=10", "model.hidden=[16,16,16,16,16,16,16,16,16,16]",
                     "init=normal", "init.std=0.1", "train.epochs=3")
    fine = small_cfg("activation=relu", "init=he", "train.epochs=6")
    for cfg, expected in ((deep, "vanishing"), (fine, "healthy")):
        seen = []
        res = train_pack([cfg], on_epoch=lambda r, seen=seen: seen.append(r.diagnostics[0]))
        d = RunDiagnostics.from_epochs(seen, -10, 2)
        v, why = verdict(d, res.history[0][-1]["test_acc"], 10, cfg.diagnostics.verdict)
        assert v == expected, why
        assert d.grad.shape == (len(res.history[0]), len(cfg.model.hidden) + 1, len(GRAD_COLS))
        assert np.all(d.hist.sum(-1) == pytest.approx(1.0, abs=1e-5))


def test_diagnostics_do_not_change_training(small_cfg):
    on = train_pack([small_cfg("regime=gna_bn_batch", "activation=tanh")]).history[0]
    off = train_pack([small_cfg("regime=gna_bn_batch", "activation=tanh", "diagnostics.enabled=false")]).history[0]
    assert on == off


def test_npz_artifact_round_trip():
    d = _diag([[1.0, 2.0], [3.0, 4.0]])
    back = RunDiagnostics.from_npz(d.to_npz())
    assert np.array_equal(back.grad, d.grad.astype(np.float32))
    m = back.metrics(1)
    assert m["grad/dense2/norm"] == 4.0 and "units/hidden1/dead" in m and "update_ratio/dense1" in m
