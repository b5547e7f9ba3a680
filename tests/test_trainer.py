"""The trainer: gradient noise, determinism, learning, divergence, and packing never changes a run."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import compose_cfg
from vgsweep.app import CONF_DIR
from vgsweep.optim import GradNoise, noise_std
from vgsweep.trainer import Pack, StepGraph, train_pack


def test_noise_schedule_formula():
    assert noise_std(0, 1.0, 0.55, "std") == 1.0
    assert noise_std(3, 1.0, 0.55, "std") == pytest.approx(4 ** -0.55)
    assert noise_std(3, 0.3, 0.55, "variance") == pytest.approx(math.sqrt(0.3 * 4 ** -0.55))


def _gn(**kw):
    cfg = compose_cfg(["regime=gna", *[f"regime.grad_noise.{k}={v}" for k, v in kw.items()]])
    return cfg.regime.grad_noise


def test_grad_noise_has_the_scheduled_std_per_run():
    quiet = compose_cfg(["regime=baseline"]).regime.grad_noise
    cfgs = [_gn(), quiet, _gn(unit="step"), _gn(gives="variance", eta=0.25)]
    theta = torch.zeros(4, 200_000)
    gn = GradNoise(cfgs, [1, 2, 3, 4], theta)
    epoch, step = 3, 10
    grad = torch.zeros_like(theta)
    gn.apply(grad, epoch, step)
    expected = [noise_std(epoch, 1.0, 0.55, "std"), 0.0, noise_std(step, 1.0, 0.55, "std"),
                noise_std(epoch, 0.25, 0.55, "variance")]
    for k, e in enumerate(expected):
        assert grad[k].std().item() == pytest.approx(e, rel=0.02, abs=1e-9)
        assert abs(grad[k].mean().item()) < 0.02 * max(e, 1e-3) + 1e-9
    assert torch.allclose(gn.std(epoch, step), torch.tensor(expected))


def test_epoch_schedule_follows_the_epoch_across_steps():
    gn = GradNoise([_gn(), _gn(gives="variance")], [1, 2], torch.zeros(2, 100_000))
    for epoch, step in ((0, 0), (0, 7), (3, 8), (3, 9), (9, 20)):
        grad = torch.zeros(2, 100_000)
        gn.apply(grad, epoch, step)
        for k, gives in enumerate(("std", "variance")):
            assert grad[k].std().item() == pytest.approx(noise_std(epoch, 1.0, 0.55, gives), rel=0.03)


def test_grad_noise_stream_depends_on_the_seed_only():
    a = GradNoise([_gn(), _gn()], [7, 8], torch.zeros(2, 50))
    b = GradNoise([_gn()], [8], torch.zeros(1, 50))
    ga, gb = torch.zeros(2, 50), torch.zeros(1, 50)
    a.apply(ga, 0, 0)
    b.apply(gb, 0, 0)
    assert torch.equal(ga[1], gb[0])


def _acc(res):
    return [h[-1]["test_acc"] for h in res.history]


@pytest.mark.usefixtures("several_threads")
def test_sgd_with_momentum_and_weight_decay_matches_torch_and_packs_bit_for_bit():
    """PackOptimizer's SGD (momentum, weight decay, each run its own rate) against torch.optim.SGD run
    by run; and a run's rows packed with others equal to the run alone, to the last bit."""
    from vgsweep.optim import PackOptimizer

    K, P = 3, 1003  # P not a multiple of any vector width: the rows' tails count too
    lrs, moms, wds = [0.1, 0.01, 0.5], [0.9, 0.0, 0.5], [0.0, 1e-3, 0.0]

    def col(v):
        return torch.tensor(v, dtype=torch.float32).view(-1, 1)

    def hp(ks):
        return {"lr": col([lrs[k] for k in ks]), "momentum": col([moms[k] for k in ks]),
                "weight_decay": col([wds[k] for k in ks])}

    gen = torch.Generator().manual_seed(0)
    theta0, grads = torch.randn(K, P, generator=gen), torch.randn(6, K, P, generator=gen)
    packed, alone = theta0.clone(), [theta0[k:k + 1].clone() for k in range(K)]
    opt = PackOptimizer("sgd", packed, hp(range(K)))
    opts = [PackOptimizer("sgd", a, hp([k])) for k, a in enumerate(alone)]
    refs = [torch.nn.Parameter(theta0[k].clone()) for k in range(K)]
    ref_opts = [torch.optim.SGD([w], lr=lrs[k], momentum=moms[k], weight_decay=wds[k]) for k, w in enumerate(refs)]
    for g in grads:
        opt.step(packed, g.clone())
        for k in range(K):
            opts[k].step(alone[k], g[k:k + 1].clone())
            refs[k].grad = g[k].clone()
            ref_opts[k].step()
    assert opt.t == len(grads)
    for k in range(K):
        assert torch.equal(packed[k], alone[k][0])
        assert torch.allclose(packed[k], refs[k].detach(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(packed, theta0)


def test_same_config_twice_gives_identical_metrics(small_cfg):
    cfg = small_cfg("regime=gna_bn", "activation=swish")
    a, b = train_pack([cfg]), train_pack([cfg])
    assert a.history == b.history
    assert len(a.history[0]) == 2 and set(a.history[0][0]) == {"train_loss", "train_acc", "test_loss", "test_acc"}


def test_it_learns(small_cfg):
    res = train_pack([small_cfg("activation=relu", "train.epochs=8")])
    hist = res.history[0]
    assert hist[-1]["test_acc"] > 0.5  # 10 classes: chance is 0.1
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_seeds_differ(small_cfg):
    a, b = train_pack([small_cfg("seed=1")]), train_pack([small_cfg("seed=2")])
    assert a.history[0][0]["train_loss"] != b.history[0][0]["train_loss"]


VARIANTS = {p.stem: [f"regime={p.stem}"] for p in (Path(CONF_DIR) / "regime").glob("*.yaml")}  # every regime
VARIANTS["residual"] = ["regime=gna_bn_batch", "model.hidden=[16,16,16]", "model.depth=3", "model.residual=true"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.usefixtures("several_threads")
def test_packing_never_changes_a_run(small_cfg, variant):
    """A job alone and the same job packed with differently-configured others: same per-epoch metrics."""
    common = VARIANTS[variant]
    job = small_cfg(*common, "activation=tanh", "seed=5")
    zero = "normal" if job.regime.weight_norm else "zero"  # weight norm needs nonzero weights
    alone = train_pack([job]).history[0]
    others = [small_cfg(*common, f"activation={a}", f"seed={s}", f"init={i}",
                        "regime.grad_noise.enabled=true", "regime.grad_noise.unit=step",
                        f"optimizer.lr={lr}")
              for a, s, i, lr in (("relu", 1, "he", 0.02), ("logistic", 2, "normal", 0.005),
                                  ("tanh", 3, "xavier", 0.01), ("swish", 4, zero, 0.01))]
    packed = train_pack([others[0], others[1], job, others[2], others[3]])
    for e_alone, e_packed in zip(alone, packed.history[2]):
        for m in e_alone:
            assert e_packed[m] == pytest.approx(e_alone[m], rel=1e-5, abs=1e-6), m
    assert len(packed.history[2]) == len(alone)


@pytest.mark.usefixtures("several_threads")
def test_the_skips_scale_is_each_runs_own_in_a_pack(small_cfg):
    """model.residual_scale: a run packed with runs of other scales (1 among them: the plain skip) keeps
    the numbers it has alone, and its scale changes them."""
    common = ["model.hidden=[16,16,16]", "model.depth=3", "model.residual=true", "activation=relu"]
    job = small_cfg(*common, "model.residual_scale=0.3", "seed=5")
    alone = train_pack([job]).history[0]
    packed = train_pack([small_cfg(*common, "seed=1"), job, small_cfg(*common, "model.residual_scale=2", "seed=2")])
    for e_alone, e_packed in zip(alone, packed.history[1]):
        for m in e_alone:
            assert e_packed[m] == pytest.approx(e_alone[m], rel=1e-5, abs=1e-6), m
    plain = train_pack([small_cfg(*common, "seed=5")]).history[0]
    assert plain[0]["train_loss"] != pytest.approx(alone[0]["train_loss"], rel=1e-4)
    assert train_pack([small_cfg(*common, "seed=1")]).history[0] == packed.history[0]


@pytest.mark.usefixtures("several_threads")
def test_weight_norms_data_init_normalises_each_layer_on_its_batch_and_is_each_runs_own(small_cfg):
    """regime.wn_init=data (Salimans & Kingma 2016): after the init, every layer's pre-activations on
    the first batch of training images have mean 0 and std 1 per unit, the output layer's too, with the
    directions v as drawn. A run with g = ||v|| (wn_init=weights) packed with such runs starts and
    trains bit for bit as alone; a data-init run packed keeps its numbers alone; and the init changes
    the training (with weights, an SGD step on v and g is to first order the step on W: no change)."""
    common = ["regime=wn", "model.hidden=[16,16,16]", "model.depth=3", "activation=logistic"]
    data = small_cfg(*common, "regime.wn_init=data", "seed=5")
    pack = Pack([data, small_cfg(*common, "seed=6")])
    x = pack.ds.train.x[:pack.B]
    pre: list = []
    with torch.no_grad():
        pack.model.forward(x, train=False, preacts=pre, output_preact=True)
    assert len(pre) == 4
    for h in pre:
        assert torch.allclose(h[0].mean(0), torch.zeros(h.shape[-1]), atol=1e-4)
        assert torch.allclose(h[0].std(0, unbiased=False), torch.ones(h.shape[-1]), atol=1e-3)
        assert not torch.allclose(h[1].std(0, unbiased=False), torch.ones(h.shape[-1]), atol=0.05)  # as drawn
    drawn = Pack([small_cfg(*common, "seed=5")]).model.params()
    for name, t in pack.model.params().items():
        if name.startswith("W"):  # directions v untouched; g and b set
            assert torch.equal(t[0], drawn[name][0])
    alone = train_pack([data]).history[0]
    packed = train_pack([small_cfg(*common, "seed=1"), data, small_cfg(*common, "regime.wn_init=data", "seed=2")])
    for e_alone, e_packed in zip(alone, packed.history[1]):
        for m in e_alone:
            assert e_packed[m] == pytest.approx(e_alone[m], rel=1e-5, abs=1e-6), m
    assert train_pack([small_cfg(*common, "seed=1")]).history[0] == packed.history[0]
    plain = train_pack([small_cfg(*common, "seed=5")]).history[0]
    assert plain[-1]["train_loss"] != pytest.approx(alone[-1]["train_loss"], rel=1e-3)


def test_a_diverging_run_fails_alone(small_cfg):
    bad = small_cfg("activation=relu", "seed=2", "optimizer.lr=1e20", "train.epochs=3")
    good3 = small_cfg("activation=relu", "seed=1", "train.epochs=3")
    res = train_pack([good3, bad])
    assert res.diverged_at == [None, 0]
    assert len(res.history[0]) == 3 and len(res.history[1]) == 1
    alone = train_pack([good3]).history[0]
    assert res.history[0][-1]["test_acc"] == pytest.approx(alone[-1]["test_acc"], abs=1e-6)


def test_a_pack_needs_one_shape(small_cfg):
    with pytest.raises(ValueError, match="share shapes"):
        train_pack([small_cfg("depth=2", "model.hidden=[16,16]"), small_cfg("depth=5", "model.hidden=[8,8,8,8,8]")])


def test_bf16_autocast_path_runs_and_stays_close_to_fp32(small_cfg):
    """The GPU option bf16 (refused on the CPU by validation) exercised through the trainer on the CPU."""
    from omegaconf import open_dict

    fp32 = small_cfg("activation=tanh", "regime=gna_bn_batch", "regime.grad_noise.eta=0.01", "train.epochs=4")
    bf16 = small_cfg("activation=tanh", "regime=gna_bn_batch", "regime.grad_noise.eta=0.01", "train.epochs=4")
    with open_dict(bf16):
        bf16.precision = "bf16"
    a, b = train_pack([fp32]).history[0], train_pack([bf16]).history[0]
    assert all(math.isfinite(e["train_loss"]) for e in b)
    assert b[-1]["train_loss"] == pytest.approx(a[-1]["train_loss"], rel=0.05)
    assert b[-1]["test_acc"] == pytest.approx(a[-1]["test_acc"], abs=0.05)


def test_deterministic_switch_is_scoped_to_its_pack(small_cfg):
    before = torch.are_deterministic_algorithms_enabled()
    det = train_pack([small_cfg("deterministic=true", "regime=gna_bn_batch")]).history[0]
    assert torch.are_deterministic_algorithms_enabled() == before
    assert det == train_pack([small_cfg("regime=gna_bn_batch")]).history[0]  # the CPU is deterministic anyway


# baseline, gna and gna_bn of one depth (and every other normalisation) train as one pack
MIXED = ("regime=baseline", "regime=gna", "regime=gna_bn", "regime=bn_batch", "regime=ln",
         "regime=gna_bn_batch", "regime=gna_bn regime.bn.placement=all regime.bn.eps=0.01")


@pytest.mark.usefixtures("several_threads")
def test_runs_with_and_without_batch_norm_share_a_pack_and_keep_their_numbers(small_cfg):
    """One pack per depth for the paper's three regimes: runs with no batch norm, frozen or real batch
    norm at the last or every layer, and layer norm pack together, and each run's numbers are the
    ones it has alone, bit for bit (a run without a normalisation passes through it exactly)."""
    from vgsweep.packing import group_packs

    cfgs = [small_cfg(*r.split(), f"activation={a}", f"seed={s}", "regime.grad_noise.eta=0.05")
            for s, (r, a) in enumerate(zip(MIXED, ("tanh", "relu", "tanh", "swish", "relu", "tanh", "logistic")))]
    assert group_packs(cfgs) == [list(range(len(cfgs)))]
    packed = train_pack(cfgs)
    for k, c in enumerate(cfgs):
        alone = train_pack([c]).history[0]
        assert packed.history[k] == alone, MIXED[k]
    assert packed.history[0] != packed.history[2]  # the regimes do differ


@pytest.mark.usefixtures("several_threads")
def test_a_run_checkpointed_in_a_mixed_pack_resumes_alone(small_cfg):
    """A checkpoint holds the run's own layout: a run without batch norm saved from a pack with
    batch-norm runs, and a batch-norm run saved from that pack, each continue alone to the numbers
    of an uninterrupted run."""
    cfgs = [small_cfg(r, f"seed={s}", "checkpoint.every=1", "train.epochs=3", "regime.grad_noise.eta=0.05")
            for s, r in enumerate(("regime=gna", "regime=gna_bn_batch"))]
    saved: dict[int, list[dict]] = {}
    train_pack(cfgs, on_checkpoint=lambda done, states: saved.setdefault(done, states))
    for k, c in enumerate(cfgs):
        whole = train_pack([c]).history[0]
        assert saved[1][k]["theta"].numel() == Pack([c]).model.P
        resumed = train_pack([c], resume=[saved[1][k]]).history[0]
        assert resumed == whole, c.regime.name


class _ReplayOnCPU(StepGraph):
    """StepGraph's bookkeeping on the CPU: 'capture' keeps the step's work, 'replay' runs it with no
    host values (s=-1, no probe) on the pack's fixed tensors, as a CUDA graph would. The real graph
    is tested on the GPU (tests/test_gpu.py)."""

    made: list = []

    @staticmethod
    def wanted(cfg, device) -> bool:
        return True

    def __init__(self, pack):
        self.pack, self.eager_steps, self.replays, self.graph, self.failed = pack, 0, 0, None, None
        _ReplayOnCPU.made.append(self)

    def warmup(self):
        return contextlib.nullcontext()

    def _capture(self):
        p = self.pack

        class Replay:
            def replay(self):
                p._step(-1, p.idx, p.sums, None)

        self.graph = Replay()


def test_a_replayed_step_reads_only_the_packs_device_tensors(small_cfg, monkeypatch):
    """What makes a CUDA graph of the step correct, checked on the CPU: replaying the step's work
    with no host values (no step number, no epoch, no probe) gives the eager numbers, with a clock
    read per step (step-wise noise and cosine), diagnostics samples and a last partial batch run
    eagerly in between, and a resume."""
    from vgsweep import trainer

    over = ("regime=gna", "regime.grad_noise.unit=step", "optimizer=adam", "optimizer.schedule.name=cosine",
            "optimizer.schedule.every=step", "train.drop_last=false", "train.epochs=3", "checkpoint.every=1")
    cfgs = [small_cfg(*over, f"activation={a}", f"seed={s}") for s, a in enumerate(("relu", "tanh", "tanh"))]
    eager = train_pack(cfgs)
    monkeypatch.setattr(trainer, "StepGraph", _ReplayOnCPU)
    _ReplayOnCPU.made.clear()
    saved: dict = {}
    replayed = train_pack(cfgs, on_checkpoint=lambda done, st: saved.setdefault(done, st))
    g = _ReplayOnCPU.made[0]
    assert g.replays > 0 and g.eager_steps > StepGraph.WARMUP  # replays, and eager steps between them
    assert replayed.history == eager.history
    resumed = train_pack(cfgs, resume=saved[2])
    assert resumed.history == eager.history


def _tf_shuffle_reference(n: int, buffer: int, slots: list[int], tail: list[int]) -> list[int]:
    """TensorFlow's Dataset.shuffle(buffer) step by step, on given draws: each step emits the chosen
    slot's example and refills the slot from the file; at the end the buffer empties in `tail`'s order."""
    b = min(buffer, n)
    slot, nxt, out = list(range(b)), b, []
    for s in slots:
        out.append(slot[s])
        slot[s], nxt = nxt, nxt + 1
    return out + [slot[i] for i in tail]


@pytest.mark.parametrize("n,buffer", [(1000, 64), (1000, 1), (300, 300), (300, 5000), (2, 1), (61, 60)])
def test_the_buffered_order_is_tensorflows_shuffle_buffer(n, buffer):
    """train.shuffle_buffer's closed form (data/order.py) against the buffer simulated step by step
    with the same random draws; a buffer of 1 keeps the file's order, one of n or more is a full shuffle."""
    from vgsweep.data.order import buffered_order
    from vgsweep.seeding import generator

    g = generator(3, "shuffle")
    draws = g.get_state()
    order = buffered_order(n, buffer, g, torch.device("cpu")).tolist()
    g.set_state(draws)
    b = min(buffer, n)
    slots = torch.randint(0, b, (n - b,), generator=g).tolist()
    tail = torch.randperm(b, generator=g).tolist()
    assert sorted(order) == list(range(n))
    assert order == _tf_shuffle_reference(n, buffer, slots, tail)
    assert all(pos >= i - b for pos, i in ((p, x) for p, x in enumerate(order)))  # no example earlier than B steps ahead
    if buffer == 1:
        assert order == list(range(n))


@pytest.mark.usefixtures("several_threads")
def test_a_run_with_a_shuffle_buffer_packs_with_others_unchanged(small_cfg):
    """The buffered order is the run's own (its generator, its setting): alone, or packed with runs that
    shuffle fully or through another buffer, the same numbers."""
    job = small_cfg("activation=tanh", "seed=5", "train.shuffle_buffer=48")
    alone = train_pack([job]).history[0]
    others = [small_cfg("activation=relu", "seed=1"), small_cfg("activation=tanh", "seed=2", "train.shuffle_buffer=7")]
    packed = train_pack([others[0], job, others[1]]).history[1]
    for e_alone, e_packed in zip(alone, packed):
        for m in e_alone:
            assert e_packed[m] == pytest.approx(e_alone[m], rel=1e-5, abs=1e-6), m
    full = train_pack([small_cfg("activation=tanh", "seed=5")]).history[0]
    assert full[-1]["train_loss"] != alone[-1]["train_loss"]  # the setting changes the run
