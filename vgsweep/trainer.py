"""The one trainer: a pack of K >= 1 runs with the same shapes, trained as one program.

The whole data set sits on the device. Each epoch, each run draws its own permutation; a step
gathers (K, B, D) inputs, runs the packed forward/backward, adds each run's gradient noise and
takes the optimiser step, all without a host sync. Loss and accuracy sums stay on the device and
are read once per epoch, together with the test metrics.

Packing never changes a run: every random stream (init, input noise, shuffling, gradient noise)
comes from a generator seeded by the run's own seed and the stream's name, never from its
position in the pack, and every operation acts on each row of K separately.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from omegaconf import DictConfig

from vgsweep.config import enum_value, resolve_device, to_container
from vgsweep.data import Dataset, load
from vgsweep.diagnostics import GradientProbe
from vgsweep.nn import Arch, Member, PackedMLP
from vgsweep.optim import PackOptimizer, noise_std

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
PHASES = ("shuffle", "forward", "backward", "noise", "optimizer", "diagnostics", "metrics", "epoch_end")
_NULL = contextlib.nullcontext()


class _Scopes:
    """Named profiler ranges around the phases of a step; vgsweep.profile switches them on.
    Off (the default) a phase costs a call that returns one shared null context (well under a
    microsecond), not a profiler call."""

    enabled = False

    def __call__(self, name: str):
        return torch.profiler.record_function(f"vgsweep.{name}") if self.enabled else _NULL


scope = _Scopes()
EVAL_CHUNK = 4096  # test rows per forward pass in evaluation: bounds memory at K x 4096 x width


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream of one run."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "big") >> 1


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(stream_seed(seed, stream))
    return g


def arch_of(cfg: DictConfig, input_dim: int, num_classes: int) -> Arch:
    hidden = list(cfg.model.hidden)
    bn = cfg.regime.bn
    placement = enum_value(bn.placement)
    layers = {"none": (), "last": (len(hidden) - 1,), "all": tuple(range(len(hidden)))}[placement]
    return Arch(sizes=(input_dim, *hidden, num_classes), bn_layers=layers,
                bn_mode=enum_value(bn.mode), bn_eps=float(bn.eps),
                bn_momentum=float(bn.momentum), residual=bool(cfg.model.residual),
                weight_norm=bool(cfg.regime.weight_norm))


def member_of(cfg: DictConfig) -> Member:
    return Member(activation=cfg.activation.name, negative_slope=float(cfg.activation.negative_slope),
                  init=cfg.init.name, init_std=float(cfg.init.std),
                  double_softmax=bool(cfg.model.double_softmax))


def pack_key(cfg: DictConfig) -> tuple:
    """Runs with equal keys can share a pack: same shapes, BN math, data, schedule and device."""
    d, t, bn = cfg.data, cfg.train, cfg.regime.bn
    bn_key = (enum_value(bn.placement), enum_value(bn.mode), float(bn.eps), float(bn.momentum))
    diag = json.dumps(to_container(cfg.diagnostics), sort_keys=True)  # one probe setting per pack
    return (tuple(cfg.model.hidden), bool(cfg.model.residual), bool(cfg.regime.weight_norm), bn_key, d.name, str(d.root), d.limit_train, d.limit_test, d.verify,
            t.epochs, t.batch_size, t.drop_last, cfg.optimizer.name, enum_value(cfg.precision),
            str(resolve_device(cfg.device)), cfg.checkpoint.every, cfg.deterministic, diag)


class GradNoise:
    """Adds each run's N(0, s_t^2) to its gradient row, from the run's own generator.

    s_t = eta / (1 + t)^gamma with t the epoch or the step (per run), read as the standard
    deviation or the variance (per run). Runs without noise draw nothing and get nothing.
    """

    def __init__(self, cfgs: list, seeds: list[int], theta: torch.Tensor):
        K, device = theta.shape[0], theta.device

        def vec(values):
            return torch.tensor(values, dtype=torch.float32, device=device)

        self.noisy = [k for k, g in enumerate(cfgs) if g.enabled and g.eta > 0]
        self.gens = {k: generator(seeds[k], "grad_noise", device) for k in self.noisy}
        self.eta = vec([float(g.eta) if g.enabled else 0.0 for g in cfgs])
        self.gamma = vec([float(g.gamma) for g in cfgs])
        self.per_step = vec([enum_value(g.unit) == "step" for g in cfgs])
        self.as_var = vec([enum_value(g.gives) == "variance" for g in cfgs]) > 0
        self.buf = torch.zeros_like(theta) if self.noisy else None  # rows of quiet runs stay 0
        self.K = K
        self.any_step = any(enum_value(g.unit) == "step" for g in cfgs)
        self._cached: tuple[int, torch.Tensor] | None = None  # (epoch, std) when no run counts steps

    def std(self, epoch: int, step: int) -> torch.Tensor:
        """(K,) standard deviations at this epoch and step (0-based), computed on the device."""
        t = self.per_step * step + (1 - self.per_step) * epoch
        s = noise_std(t, self.eta, self.gamma, "std")  # s_t, then per run: std itself or sqrt(variance)
        return torch.where(self.as_var, s.sqrt(), s)

    def apply(self, grad: torch.Tensor, epoch: int, step: int) -> None:
        if not self.noisy:
            return
        for k in self.noisy:
            self.buf[k].normal_(generator=self.gens[k])
        if self.any_step:
            std = self.std(epoch, step)
        else:  # the schedule moves once per epoch: compute it then, not at every step
            if self._cached is None or self._cached[0] != epoch:
                self._cached = (epoch, self.std(epoch, step))
            std = self._cached[1]
        grad.addcmul_(self.buf, std.view(self.K, 1))


# (train examples, test examples, input dim) of the known data sets, for memory estimates.
DATASET_SIZES = {"mnist": (60000, 10000, 784), "fashion_mnist": (60000, 10000, 784)}


def bytes_per_run(cfg: DictConfig) -> int:
    """Device memory one run adds to a pack (upper estimate, bytes): its noisy copy of the training
    inputs, parameters with gradient, optimiser and noise buffers, one step's activations, and
    its share of evaluation and permutation."""
    n_train, _, dim = DATASET_SIZES.get(cfg.data.name, (60000, 10000, 784))
    n_train = min(n_train, cfg.data.limit_train or n_train)
    sizes = (dim, *cfg.model.hidden, 10)
    P = sum(a * b + 2 * b for a, b in zip(sizes[:-1], sizes[1:])) + 2 * sum(cfg.model.hidden)  # + g, BN
    B = int(cfg.train.batch_size)
    acts = B * (dim + 4 * sum(sizes[1:]))  # gathered batch; pre/post activations and their grads
    evals = EVAL_CHUNK * 3 * max(sizes[1:])
    return 4 * (n_train * dim + 5 * P + acts + evals) + 8 * n_train


def memory_budget(device: torch.device, budget_gb: float | None) -> int:
    """Bytes a pack may use: the given budget, else 80% of free GPU memory or half the free RAM."""
    if budget_gb:
        return int(budget_gb * 2**30)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.8 * free)
    import os

    return int(0.5 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@dataclass
class EpochReport:
    epoch: int  # 0-based
    metrics: list[dict[str, float]]  # one per run, in the order the configs were given
    seconds: float  # wall time of this epoch for the whole pack (training + evaluation)
    diverged: list[bool]  # runs whose training loss became NaN or inf in this epoch
    diagnostics: Optional[list] = None  # per run: dict of arrays (see diagnostics.GradientProbe.split)


@dataclass
class PackResult:
    history: list[list[dict[str, float]]]  # [run][epoch] -> metrics
    diverged_at: list[Optional[int]]  # epoch at which a run diverged, or None
    device_name: str


def _precision_ctx(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _tf32(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def _deterministic(enabled: bool):
    """torch.use_deterministic_algorithms for this pack only (it is process-wide state)."""
    old = torch.are_deterministic_algorithms_enabled()
    if enabled:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
    torch.use_deterministic_algorithms(enabled or old)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def train_pack(cfgs: list[DictConfig], on_epoch: Callable[[EpochReport], None] | None = None,
               dataset: Dataset | None = None, resume: list[Optional[dict]] | None = None,
               on_checkpoint: Callable[[int, list[dict]], None] | None = None) -> PackResult:
    """Train the runs of `cfgs` (all with the same `pack_key`) together; returns their histories.

    resume: per run, a state from `on_checkpoint` to continue from (all at the same epoch), or None.
    on_checkpoint(epochs_done, states): called every `checkpoint.every` epochs with one state per run.
    """
    keys = {pack_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError(f"configs of one pack must share shapes and schedule, got {len(keys)} kinds")
    c0 = cfgs[0]
    device = resolve_device(c0.device)
    ds = dataset or load(c0.data.name, c0.data.root, c0.data.download, device,
                         c0.data.limit_train, c0.data.limit_test, c0.data.verify)
    # Order runs by activation so each activation acts on a contiguous slice of K; undo at the end.
    order = sorted(range(len(cfgs)), key=lambda k: (cfgs[k].activation.name, cfgs[k].activation.negative_slope))
    runs = [cfgs[k] for k in order]
    K = len(runs)
    seeds = [int(c.seed) for c in runs]

    model = PackedMLP(arch_of(c0, ds.input_dim, ds.num_classes), [member_of(c) for c in runs],
                      [generator(s, "init") for s in seeds], device)

    def col(values, dtype=torch.float32):  # per-run setting as a (K, 1) tensor on the device
        return torch.tensor(values, dtype=dtype, device=device).view(K, 1)

    o = [c.optimizer for c in runs]
    lr = col([x.lr for x in o])
    opt = PackOptimizer(c0.optimizer.name, model.theta, {
        "lr": lr, "momentum": col([x.momentum for x in o]), "beta1": col([x.beta1 for x in o]),
        "beta2": col([x.beta2 for x in o]), "eps": col([x.eps for x in o])})

    # Training inputs, each run with its own fixed input noise: (K, N, D).
    N, B = ds.train.x.shape[0], int(c0.train.batch_size)
    X = ds.train.x.unsqueeze(0).repeat(K, 1, 1)
    for k, c in enumerate(runs):
        if c.data.input_noise_std > 0:
            noise = torch.randn(X.shape[1:], generator=generator(seeds[k], "input_noise", device), device=device)
            X[k].add_(noise, alpha=float(c.data.input_noise_std))
    Y = ds.train.y
    shuffle_g = [generator(s, "shuffle", device) for s in seeds]

    grad_noise = GradNoise([c.regime.grad_noise for c in runs], seeds, model.theta)

    steps = N // B if c0.train.drop_last else math.ceil(N / B)
    if steps == 0:
        raise ValueError(f"train.batch_size={B} is larger than the {N} training examples with drop_last")
    kidx = torch.arange(K, device=device).view(K, 1)
    probe = GradientProbe(model, c0.diagnostics, steps) if c0.diagnostics.enabled else None
    precision = enum_value(c0.precision)
    history: list[list[dict[str, float]]] = [[] for _ in range(K)]
    diverged_at: list[Optional[int]] = [None] * K
    live = torch.ones(K, 1, device=device)  # 0 for diverged runs: their updates stop
    gstep, start = 0, 0
    if resume is not None and any(r is not None for r in resume):
        states = [resume[k] for k in order]
        if any(st is None for st in states) or len({st["epochs_done"] for st in states}) != 1:
            raise ValueError("runs resumed together must all have checkpoints of the same epoch")
        start, gstep, opt.t = states[0]["epochs_done"], states[0]["gstep"], states[0]["opt_t"]
        with torch.no_grad():
            for k, st in enumerate(states):
                model.theta[k].copy_(st["theta"])
                opt.buf[k].copy_(st["opt_buf"])
                if opt.buf2 is not None:
                    opt.buf2[k].copy_(st["opt_buf2"])
                for i, (m, v) in st["bn_running"].items():
                    model.running[i][0][k].copy_(m)
                    model.running[i][1][k].copy_(v)
                shuffle_g[k].set_state(st["shuffle_rng"])
                if k in grad_noise.gens:
                    grad_noise.gens[k].set_state(st["noise_rng"])
                history[k], diverged_at[k] = list(st["history"]), st["diverged_at"]
                if diverged_at[k] is not None:
                    live[k] = 0.0
            opt.hp["lr"] = lr * live

    def state(k: int, epochs_done: int) -> dict:
        return {"epochs_done": epochs_done, "gstep": gstep, "opt_t": opt.t,
                "theta": model.theta[k].detach().cpu().clone(), "opt_buf": opt.buf[k].cpu().clone(),
                "opt_buf2": None if opt.buf2 is None else opt.buf2[k].cpu().clone(),
                "bn_running": {i: (m[k].cpu().clone(), v[k].cpu().clone()) for i, (m, v) in model.running.items()},
                "shuffle_rng": shuffle_g[k].get_state(),
                "noise_rng": grad_noise.gens[k].get_state() if k in grad_noise.gens else None,
                "history": list(history[k]), "diverged_at": diverged_at[k]}

    every = int(c0.checkpoint.every)
    with _tf32(precision == "tf32" and device.type == "cuda"), _deterministic(bool(c0.deterministic)):
        for epoch in range(start, int(c0.train.epochs)):
            t0 = time.perf_counter()
            with scope("shuffle"):
                perm = torch.stack([torch.randperm(N, generator=g, device=device) for g in shuffle_g])  # (K, N)
            loss_sum = torch.zeros(K, device=device)
            correct = torch.zeros(K, device=device)
            for s in range(steps):
                with scope("forward"):
                    idx = perm[:, s * B:(s + 1) * B]  # (K, B)
                    xb, yb = X[kidx, idx], Y[idx]  # (K, B, D), (K, B)
                    with _precision_ctx(precision, device):
                        logits = model.forward(xb, train=True)  # (K, B, C)
                    losses = model.loss(logits, yb)  # (K,)
                with scope("backward"):
                    grad = model.grad(losses.sum())  # (K, P)
                if probe:
                    with scope("diagnostics"):
                        probe.grad_stats(s, grad, after_noise=False)
                with scope("noise"):
                    grad_noise.apply(grad, epoch, gstep)
                if probe:
                    with scope("diagnostics"):
                        probe.grad_stats(s, grad, after_noise=True)
                with scope("optimizer"):
                    opt.step(model.theta.data, grad)
                if probe:
                    with scope("diagnostics"):
                        probe.update_stats(s, opt.last_update, model.theta.data)
                with scope("metrics"), torch.no_grad():
                    loss_sum += losses.detach()
                    correct += (logits.argmax(-1) == yb).sum(1)
                gstep += 1
            with scope("epoch_end"):  # evaluation, the probe pass, the host copy
                test_loss, test_correct = _evaluate(model, ds, precision, device)
                row = torch.stack([loss_sum / steps, correct / (steps * B) if c0.train.drop_last else correct / N,
                                   test_loss / ds.test.x.shape[0], test_correct / ds.test.x.shape[0]], 1)
                if probe:
                    with _precision_ctx(precision, device):
                        row = torch.cat([row, probe.epoch_tensor(X, EVAL_CHUNK)], 1)
                row = row.float().cpu()  # the one host sync of the epoch
            diag = [probe.split(row[k, len(METRICS):].numpy()) for k in range(K)] if probe else None
            seconds = time.perf_counter() - t0
            bad = [bool(not math.isfinite(row[k, 0])) and diverged_at[k] is None for k in range(K)]
            for k in range(K):
                if bad[k]:
                    diverged_at[k] = epoch
                    live[k] = 0.0
                    opt.hp["lr"] = lr * live  # a diverged run's weights stop changing
                if diverged_at[k] is None or bad[k]:
                    history[k].append({m: float(row[k, i]) for i, m in enumerate(METRICS)})
            if on_epoch:
                inv = {k_sorted: k_orig for k_sorted, k_orig in enumerate(order)}
                metrics = [None] * K
                div = [False] * K
                diags = [None] * K
                for k in range(K):
                    if diverged_at[k] is None or bad[k]:
                        metrics[inv[k]] = history[k][-1]
                        diags[inv[k]] = diag[k] if diag else None
                    div[inv[k]] = bad[k]
                on_epoch(EpochReport(epoch, metrics, seconds, div, diags if diag else None))  # type: ignore[arg-type]
            if all(d is not None for d in diverged_at):
                break
            if on_checkpoint and every and (epoch + 1) % every == 0 and epoch + 1 < c0.train.epochs:
                by_sorted = [state(k, epoch + 1) for k in range(K)]
                on_checkpoint(epoch + 1, [by_sorted[order.index(k)] for k in range(K)])

    out_hist: list = [None] * K
    out_div: list = [None] * K
    for k_sorted, k_orig in enumerate(order):
        out_hist[k_orig], out_div[k_orig] = history[k_sorted], diverged_at[k_sorted]
    return PackResult(out_hist, out_div, device_name(device))


@torch.no_grad()
def _evaluate(model: PackedMLP, ds: Dataset, precision: str, device: torch.device):
    """Summed test loss and correct count per run, (K,) each; the test inputs are shared and clean."""
    K = model.K
    loss_sum = torch.zeros(K, device=device)
    correct = torch.zeros(K, device=device)
    for i in range(0, ds.test.x.shape[0], EVAL_CHUNK):
        x, y = ds.test.x[i:i + EVAL_CHUNK], ds.test.y[i:i + EVAL_CHUNK]
        with _precision_ctx(precision, device):
            logits = model.forward(x, train=False)  # (K, n, C)
        loss_sum += model.loss(logits, y) * x.shape[0]
        correct += (logits.argmax(-1) == y).sum(1)
    return loss_sum, correct
