"""Activations (derivative bounds), initialisers, and the MLP family: its packing, norms, skips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vgsweep.app import CONF_DIR
from vgsweep.activations import ACTIVATIONS, DERIVATIVES, INITS
from vgsweep.families.base import Member
from vgsweep.families.mlp import Arch, PackedMLP

# Supremum of |f'(z)| over the real line (Agarap et al. discuss the first three).
DERIVATIVE_MAX = {"logistic": 0.25, "tanh": 1.0, "swish": 1.0998, "relu": 1.0, "leaky_relu": 1.0,
                  "identity": 1.0, "elu": 1.0, "gelu": 1.1289}


def test_every_activation_has_a_config_file_and_a_bound():
    options = {p.stem for p in (Path(CONF_DIR) / "activation").glob("*.yaml")}
    assert options == set(ACTIVATIONS) == set(DERIVATIVE_MAX)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative_bound(name):
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(ACTIVATIONS[name](z, 0.2).sum(), z)
    assert d.abs().max().item() == pytest.approx(DERIVATIVE_MAX[name], abs=1e-4)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_written_out_derivative_matches_autograd(name):
    assert set(DERIVATIVES) == set(ACTIVATIONS)
    z = torch.linspace(-8, 8, 10_001, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(ACTIVATIONS[name](z, 0.2).sum(), z)
    mask = z.detach().abs() > 1e-9  # the kink of relu-like functions at 0
    assert torch.allclose(DERIVATIVES[name](z.detach(), 0.2)[mask], d[mask], atol=1e-9)


def test_activation_values():
    z = torch.tensor([-2.0, 0.0, 3.0])
    assert torch.allclose(ACTIVATIONS["leaky_relu"](z, 0.2), torch.tensor([-0.4, 0.0, 3.0]))
    assert torch.allclose(ACTIVATIONS["swish"](z, 0.2), z * torch.sigmoid(z))
    assert torch.allclose(ACTIVATIONS["logistic"](z, 0.2), 1 / (1 + torch.exp(-z)))


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_grouped_activation_is_each_activation_alone_bit_for_bit(layout):
    """A pack's activations as one autograd function (no concatenation) give what each activation
    gives alone under autograd, forward and backward, to the last bit: all eight at once, each alone,
    and a mix whose backward reads both input and result; zeros of both signs included."""
    from vgsweep.families.base import GroupedActivation

    names = sorted(ACTIVATIONS)
    assert set(GroupedActivation.KERNELS) == set(GroupedActivation.READS) == set(names)
    g = torch.Generator().manual_seed(0)
    for combo in [names, *([n] for n in names), ["relu", "swish"]]:
        groups = [(2 * i, 2 * i + 2, a, 0.2) for i, a in enumerate(combo)]
        h = torch.randn(2 * len(combo), 9, 7, generator=g) * 3
        h[0, 0, :2] = torch.tensor([0.0, -0.0])
        if layout == "transposed":  # as a conv family's (K, B, ...) view of a (B, K, ...) tensor may come
            h = h.transpose(1, 2).contiguous().transpose(1, 2)
        up = torch.randn(h.shape, generator=g)
        a, b = h.clone().requires_grad_(True), h.clone().requires_grad_(True)
        alone = torch.cat([ACTIVATIONS[n](a[s:e], ns) for s, e, n, ns in groups])
        grouped = GroupedActivation.apply(b, groups)
        assert torch.equal(grouped, alone), combo
        assert torch.equal(torch.autograd.grad(grouped, b, up)[0], torch.autograd.grad(alone, a, up)[0]), combo


def test_a_mixed_pack_step_neither_concatenates_nor_selects_full_size():
    """The paper grid's pack shape (five activations; batch norm on some runs only) trains without a
    concatenation of activation groups, without autograd's zero-filled slice gradients, and without a
    full-size torch.where for the runs without batch norm: on a GPU each was a kernel per group and layer
    (BENCHMARKS.md)."""
    from torch.profiler import ProfilerActivity, profile

    acts = ["logistic", "tanh", "relu", "leaky_relu", "swish"]
    members = [Member(a, 0.2, "xavier", 0.05, False) for a in acts for _ in range(2)]
    archs = [Arch((6, 5, 4, 3), (1,) if k % 2 else (), "frozen", 1e-3, 0.99) for k in range(len(members))]
    gens = [torch.Generator().manual_seed(k) for k in range(len(members))]
    m = PackedMLP(archs, members, gens, torch.device("cpu"))
    x = torch.randn(len(members), 7, 6)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        m.grad(m.loss(m.forward(x, train=True), torch.randint(0, 3, (7,))).sum())
    ops = [(e.name, e.input_shapes) for e in prof.events()
           if not (e.cpu_parent and e.cpu_parent.name == "aten::stack")]  # the CPU's per-run products, stacked
    assert not [n for n, _ in ops if n in ("aten::cat", "aten::slice_backward")]
    assert not [n for n, shapes in ops if n == "aten::where" and shapes and len(shapes[0]) == 3]
    assert [n for n, _ in ops if n == "aten::where"]  # the per-run (K, F) scale and shift: the profile saw them
    # swish is SiLU's kernel each way (z * sigmoid(z) was 2 kernels forward and 5 backward per layer);
    # the only sigmoid left is logistic's, once per hidden layer
    names = [n for n, _ in ops]
    assert names.count("aten::silu") == names.count("aten::silu_backward") == names.count("aten::sigmoid") == 2


def test_every_init_has_a_config_file():
    assert {p.stem for p in (Path(CONF_DIR) / "init").glob("*.yaml")} == set(INITS)


@pytest.mark.parametrize("name,expected_std", [
    ("xavier", math.sqrt(2.0 / (300 + 200))),  # uniform(-l, l) has std l / sqrt(3), l = sqrt(6/(in+out))
    ("he", math.sqrt(2.0 / 300)),
    ("normal", 0.05),
    ("zero", 0.0),
    ("torch_default", math.sqrt(1.0 / 300 / 3)),  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) has std 1/sqrt(3 fan_in)
])
def test_init_statistics(name, expected_std):
    g = torch.Generator().manual_seed(0)
    w = INITS[name]((300, 200), 300, 200, g, 0.05)
    assert w.shape == (300, 200)
    assert w.std().item() == pytest.approx(expected_std, rel=0.03, abs=1e-12)
    if name == "xavier":
        assert w.abs().max().item() <= math.sqrt(6.0 / 500)


@pytest.mark.parametrize("family,overrides", [
    ("mlp", ["depth=2", "model.hidden=[20,10]"]),
    ("vgg", ["model=vgg08", "dataset=cifar100", "model.filters=4"]),
])
def test_init_gain_scales_the_drawn_weights_of_the_schemes_without_a_scale_and_nothing_else(family, overrides):
    """init.gain multiplies xavier, he and torch_default weights (not biases: torch_default draws them
    too); normal has its std and zero stays zero, so there it changes nothing. A pack of runs with
    different gains is each run alone."""
    from tests.conftest import compose_cfg
    from vgsweep.config import validate
    from vgsweep.families import family_of
    from vgsweep.seeding import generator

    shape, classes = ((1, 28, 28), 10) if family == "mlp" else ((3, 32, 32), 100)
    cases = [(init, gain) for init in ("xavier", "he", "torch_default", "normal", "zero") for gain in (1, 3.5)]
    cfgs = [compose_cfg(["device=cpu", *overrides, f"init={init}", f"init.gain={gain}"]) for init, gain in cases]
    for c in cfgs:
        validate(c)
    fam = family_of(cfgs[0])
    packed = fam.build(cfgs, shape, classes, [generator(0, "init") for _ in cfgs], torch.device("cpu"))
    entries = {e.name: e for e in packed.layout}
    p = {name: t.detach() for name, t in packed.params().items()}
    weights = [n for n, e in entries.items() if e.role == "weight"]
    others = [n for n, e in entries.items() if e.role != "weight"]
    assert weights and any(entries[n].role == "bias" for n in others)
    for k in range(0, len(cases), 2):
        init, scales = cases[k][0], cases[k][0] in ("xavier", "he", "torch_default")
        for n in weights:
            one, g = p[n][k], p[n][k + 1]
            # drawn in float64, scaled, then cast: equal to the cast weight x 3.5 up to one rounding
            assert torch.allclose(g, one * 3.5, rtol=1e-6, atol=0) if scales else torch.equal(g, one), (init, n)
            assert init == "zero" or torch.count_nonzero(one) > 0
        for n in others:
            assert torch.equal(p[n][k], p[n][k + 1]), (init, n)
        alone = fam.build([cfgs[k + 1]], shape, classes, [generator(0, "init")], torch.device("cpu"))
        for n, t in alone.params().items():
            assert torch.equal(t.detach()[0], p[n][k + 1]), (init, n)


def _model(members, bn_layers=(), bn_mode="frozen", seed_base=0, sizes=(6, 5, 4, 3)):
    arch = Arch(sizes, bn_layers, bn_mode, 1e-3, 0.99)
    gens = [torch.Generator().manual_seed(seed_base + i) for i in range(len(members))]
    return PackedMLP(arch, members, gens, torch.device("cpu"))


M = Member("relu", 0.2, "xavier", 0.05, False)


def test_biases_zero_and_bn_gamma_one():
    m = _model([M, M], bn_layers=(1,))
    p = m.params()
    for name, t in p.items():
        if name.startswith("b") and not name.startswith("bn"):
            assert torch.count_nonzero(t) == 0, name
    assert torch.all(p["bn1.gamma"] == 1) and torch.all(p["bn1.beta"] == 0)


def test_packed_forward_equals_each_run_alone():
    acts = [Member(a, 0.2, "xavier", 0.05, False) for a in ("logistic", "logistic", "relu", "tanh")]
    packed = _model(acts)
    x = torch.randn(4, 7, 6)
    out = packed.forward(x, train=True)
    for k, a in enumerate(acts):
        alone = _model([a], seed_base=k)
        assert torch.allclose(alone.forward(x[k:k + 1], train=True)[0], out[k], atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shared", [False, True], ids=["own_batches", "shared_batch"])
def test_a_packed_layer_gives_each_run_its_alone_bits_and_gradients(threads, shared):
    """packed_linear on the CPU, K=7 against each run at K=1, forward and backward, bit for bit, at
    thread counts where MKL's batched product rounds a batch of 7 and a single product differently
    (with 2 threads at these shapes, torch 2.14 / MKL 2024.2)."""
    from tests.conftest import torch_threads
    from vgsweep.families.base import packed_linear

    with torch_threads(threads):
        g = torch.Generator().manual_seed(threads)
        K, B, D, O = 7, 32, 784, 16
        b, W = torch.randn(K, 1, O, generator=g), torch.randn(K, D, O, generator=g)
        h = torch.randn(B, D, generator=g) if shared else torch.randn(K, B, D, generator=g)
        grad_out = torch.randn(K, B, O, generator=g)

        def run(b, h, W, go):
            b, h, W = (t.clone().requires_grad_() for t in (b, h, W))
            out = packed_linear(b, h, W)
            out.backward(go)
            return out.detach(), b.grad, h.grad, W.grad

        out, gb, gh, gW = run(b, h, W, grad_out)
        for k in range(K):
            o1, gb1, gh1, gW1 = run(b[k:k + 1], h if shared else h[k:k + 1], W[k:k + 1], grad_out[k:k + 1])
            assert torch.equal(o1[0], out[k]) and torch.equal(gb1[0], gb[k]) and torch.equal(gW1[0], gW[k])
            if not shared:  # a shared input's gradient is the sum over the runs
                assert torch.equal(gh1[0], gh[k])


def test_frozen_bn_is_an_affine_map_with_the_keras_constant():
    m = _model([M], bn_layers=(0,), bn_mode="frozen")
    with torch.no_grad():
        p = m.params()
        p["bn0.gamma"].fill_(2.0)
        p["bn0.beta"].fill_(0.5)
    h = torch.randn(1, 9, 5, generator=torch.Generator().manual_seed(0))
    expected = 2.0 * h / math.sqrt(1 + 1e-3) + 0.5
    # atol: an output near 0 differs from `expected` by a float32 rounding, which allclose's default
    # atol (1e-8) refused for 8 of 2,000 random h (a CI run drew one)
    assert torch.allclose(m._norm(0, h, m.params(), train=True), expected, atol=1e-6)
    assert torch.allclose(m._norm(0, h, m.params(), train=False), expected, atol=1e-6)  # same in both modes


def test_batch_bn_matches_torch_batchnorm():
    m = _model([M, M], bn_layers=(0,), bn_mode="batch")
    ref = torch.nn.BatchNorm1d(5, eps=1e-3, momentum=0.01)  # torch's momentum = 1 - Keras' 0.99
    h = torch.randn(2, 16, 5) * 3 + 1
    y = m._norm(0, h, m.params(), train=True)
    y_ref = ref.train()(h[1])
    assert torch.allclose(y[1], y_ref, atol=1e-5)
    assert torch.allclose(y[0].mean(0), torch.zeros(5), atol=1e-5)  # each run uses its own batch
    mean_r, var_r = m.buffers["bn0.mean"], m.buffers["bn0.var"]
    assert torch.allclose(mean_r[1], ref.running_mean, atol=1e-6)
    assert torch.allclose(var_r[1], ref.running_var, atol=1e-6)
    h2 = torch.randn(2, 4, 5)
    assert torch.allclose(m._norm(0, h2, m.params(), train=False)[1], ref.eval()(h2[1]), atol=1e-5)


def test_layer_norm_mode_matches_torch():
    m = _model([M, M], bn_layers=(0,), bn_mode="layer")
    with torch.no_grad():
        m.params()["bn0.gamma"].uniform_(0.5, 2)
        m.params()["bn0.beta"].normal_()
    h = torch.randn(2, 7, 5) * 3 + 1
    p = m.params()
    for k in range(2):
        ref = torch.nn.functional.layer_norm(h[k], (5,), p["bn0.gamma"][k], p["bn0.beta"][k], eps=1e-3)
        for train in (True, False):
            assert torch.allclose(m._norm(0, h, p, train=train)[k], ref, atol=1e-5)


def test_residual_connections_by_hand():
    arch = Arch((6, 4, 4, 4, 3), (), "frozen", 1e-3, 0.99, residual=True)
    m = PackedMLP(arch, [M], [torch.Generator().manual_seed(0)], torch.device("cpu"))
    p = {n: t[0] for n, t in m.params().items()}
    x = torch.randn(1, 5, 6)
    h1 = torch.relu(x[0] @ p["W0"] + p["b0"])  # 6 -> 4: width changes, no skip
    h2 = torch.relu(h1 @ p["W1"] + p["b1"]) + h1  # 4 -> 4: skip
    h3 = torch.relu(h2 @ p["W2"] + p["b2"]) + h2
    assert torch.allclose(m.forward(x, train=True)[0], h3 @ p["W3"] + p["b3"], atol=1e-6)
    plain = PackedMLP(Arch((6, 4, 4, 4, 3), (), "frozen", 1e-3, 0.99), [M], [torch.Generator().manual_seed(0)],
                      torch.device("cpu"))
    assert not torch.allclose(plain.forward(x, train=True), m.forward(x, train=True))


def _wn_pair(members, sizes=(6, 5, 4, 3)):
    """The same runs as a plain and as a weight-normalised pack, from the same generators."""
    def make(wn):
        gens = [torch.Generator().manual_seed(i) for i in range(len(members))]
        return PackedMLP(Arch(sizes, (), "frozen", 1e-3, 0.99, weight_norm=wn), members, gens, torch.device("cpu"))
    return make(False), make(True)


def test_weight_norm_starts_as_the_init():
    plain, wn = _wn_pair([M, Member("tanh", 0.2, "he", 0.05, False)])
    x = torch.randn(2, 7, 6)
    assert torch.allclose(plain.forward(x, train=True), wn.forward(x, train=True), atol=1e-6)
    assert wn.P == plain.P + 5 + 4 + 3  # one length per unit of every dense layer


def test_weight_norm_by_hand_and_its_gradient_is_orthogonal_to_v():
    _, wn = _wn_pair([M])
    with torch.no_grad():
        wn.theta.add_(0.1 * torch.randn_like(wn.theta))  # lengths no longer equal to ||v||
    p = {n: t[0] for n, t in wn.params().items()}
    x = torch.randn(1, 9, 6)
    h = x[0]
    for i in range(3):
        v = p[f"W{i}"]
        h = h @ (v * p[f"g{i}"] / v.norm(dim=0)) + p[f"b{i}"]
        h = torch.relu(h) if i < 2 else h
    out = wn.forward(x, train=True)
    assert torch.allclose(out[0], h, atol=1e-5)
    grad = wn.grad(wn.loss(out, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])).sum())
    for e in wn.weights():  # L(v) = L(c v): the gradient has no component along each unit's v
        v, gv = p[e.name].detach(), grad[0, e.offset:e.offset + e.numel].view(e.shape)
        assert torch.allclose((v * gv).sum(dim=0), torch.zeros(e.shape[1]), atol=1e-6), e.name
