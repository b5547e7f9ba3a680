"""The one trainer: a pack of K >= 1 runs of one model family and shape, trained as one program.

    pack = Pack(cfgs)            set-up: data on the device, the packed model, optimiser, schedules,
                                 noise, per-run inputs, generators, diagnostics probe
    pack.restore(states)         continue from checkpoints (all runs at the same epoch)
    pack.run_epoch(epoch)        the steps of an epoch, then evaluation: one host copy per epoch
    pack.state(k)                run k's checkpoint (tensors and plain values only)

`train_pack(cfgs, ...)` puts these together. The whole data set sits on the device. Each epoch each
run draws its own permutation; a step gathers every run's batch, runs the packed forward and
backward, adds each run's gradient noise and takes the optimiser step, with no host sync. Loss and
accuracy sums stay on the device until the epoch's end.

Packing never changes a run: every random stream (init, input noise, shuffling, augmentation,
gradient noise) comes from a generator seeded by the run's own seed and the stream's name, never
from its position in the pack, and every operation acts on each row of K separately.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from omegaconf import DictConfig

from vgsweep.compiling import CompiledStep
from vgsweep.config import enum_value, resolve_device
from vgsweep.data.loader import Dataset, Split, load
from vgsweep.data.order import epoch_order
from vgsweep.data.transforms import TrainInputs
from vgsweep.families import family_of
from vgsweep.optim import GradNoise, PackOptimizer, Schedules
from vgsweep.packing import pack_key
from vgsweep.probe import GradientProbe
from vgsweep.seeding import generator

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
VAL_METRICS = ("val_loss", "val_acc")  # when data.val_size > 0
PHASES = ("shuffle", "forward", "backward", "noise", "optimizer", "diagnostics", "metrics", "epoch_end")
CHECKPOINT_FORMAT = 3  # tensors and plain values only (torch.load(..., weights_only=True) reads it); 3: own layout
_NULL = contextlib.nullcontext()
log = logging.getLogger(__name__)


class _Scopes:
    """Named profiler ranges around the phases of a step; vgsweep.profile switches them on.
    Off (the default) a phase costs a call that returns one shared null context (well under a
    microsecond), not a profiler call."""

    enabled = False

    def __call__(self, name: str):
        return torch.profiler.record_function(f"vgsweep.{name}") if self.enabled else _NULL


scope = _Scopes()


@dataclass
class EpochReport:
    epoch: int  # 0-based
    metrics: list[Optional[dict[str, float]]]  # per run, in the order the configs were given; None once diverged
    seconds: float  # wall time of this epoch for the whole pack (training + evaluation)
    diagnostics: Optional[list] = None  # per run: dict of arrays (see probe.GradientProbe.split)
    layers: list[str] = field(default_factory=list)  # names of the weight layers the diagnostics measure
    units: list[str] = field(default_factory=list)  # names of the hidden unit layers


@dataclass
class PackResult:
    history: list[list[dict[str, float]]]  # [run][epoch] -> metrics
    diverged_at: list[Optional[int]]  # epoch at which a run diverged, or None
    # per run with tracking.save_weights: its trained parameters and buffers as `Pack.weights` gives them
    weights: list[Optional[dict]] = field(default_factory=list)
    # where the pack's time went (seconds): set_up (data, model, restore), epochs (with the callbacks and
    # checkpoints), first_epoch (of them: on a GPU also the first kernels, a CUDA graph's capture,
    # compilation), n_epochs (trained here)
    timing: dict = field(default_factory=dict)


def precision_ctx(precision: str, device: torch.device):
    if precision == "bf16":  # no weight-cast cache: a CUDA graph cannot capture one (same numbers)
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return _NULL


@contextlib.contextmanager
def tf32(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def deterministic(enabled: bool):
    """torch.use_deterministic_algorithms for this pack only (it is process-wide state). Set only when
    it changes: the setter imports torch._inductor's config, a second of start-up for nothing."""
    old = torch.are_deterministic_algorithms_enabled()
    if not enabled or old:
        yield
        return
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class StepGraph:
    """The pack's training step captured once as a CUDA graph and replayed: one launch per step
    instead of one per kernel (a small MLP's step is a hundred short kernels, bound by the host).

    `cuda_graph=true` (the default) turns it on for packs on CUDA. The first WARMUP ordinary steps
    run eagerly on a side stream (cuBLAS and autograd set up there, as capture requires), the next
    ordinary step is captured and replayed, and so are all later ones; the steps the diagnostics
    sample and a last partial batch run eagerly, on the same tensors. Nothing a step reads changes
    address: batch indices, the clock (epoch, step), learning rates, the noise schedule and the
    metric sums are fixed device tensors moved in place; the per-run generators (gradient noise,
    augmentation) are registered with the graph, which advances them on each replay exactly as the
    eager step does. If capture fails, the pack says so once and goes on eagerly.
    """

    WARMUP = 3

    @staticmethod
    def wanted(cfg: DictConfig, device: torch.device) -> bool:
        return device.type == "cuda" and bool(cfg.get("cuda_graph", True)) and \
            hasattr(torch.cuda.CUDAGraph, "register_generator_state")

    def __init__(self, pack: "Pack"):
        self.pack, self.eager_steps, self.replays = pack, 0, 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: str | None = None
        self.side = torch.cuda.Stream(pack.device)

    @contextlib.contextmanager
    def warmup(self):
        """Eager steps before the capture run on the capture's side stream."""
        if self.graph is not None or self.failed:
            yield
            return
        cur = torch.cuda.current_stream(self.pack.device)
        self.side.wait_stream(cur)
        with torch.cuda.stream(self.side):
            yield
        cur.wait_stream(self.side)

    def run(self) -> bool:
        """Replay the step (capturing it first when due); False: run this step eagerly."""
        if self.failed:
            return False
        if self.graph is None:
            if self.eager_steps < self.WARMUP:
                return False
            self._capture()
            if self.failed:
                return False
        self.graph.replay()
        self.replays += 1
        return True

    def _capture(self) -> None:
        p = self.pack
        g = torch.cuda.CUDAGraph()
        try:
            for gen in p.grad_noise.generators() + p.inputs.gens:
                g.register_generator_state(gen)
            with torch.cuda.graph(g, stream=self.side):
                p._step(-1, p.idx, p.sums, None)
        except Exception as e:  # noqa: BLE001 - any capture failure: train on eagerly, say so once
            self.failed = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            log.warning("CUDA graph capture failed (%s); this pack trains without it", self.failed)
            torch.cuda.synchronize(p.device)
            return
        self.graph = g


class Pack:
    """Everything one pack trains with. Runs are held sorted by activation (each activation acts on
    a contiguous slice of K); every list a caller sees is in the callers' order."""

    def __init__(self, cfgs: list[DictConfig], dataset: Dataset | None = None):
        if len({pack_key(c) for c in cfgs}) != 1:
            raise ValueError(f"configs of one pack must share shapes and schedule, got {len({pack_key(c) for c in cfgs})} kinds")
        c0 = cfgs[0]
        self.device = device = resolve_device(c0.device)
        self.ds = ds = dataset or load(c0.data, device)
        fam = family_of(c0)
        self.order = sorted(range(len(cfgs)), key=lambda k: fam.order_key(cfgs[k]))
        runs = self.runs = [cfgs[k] for k in self.order]
        K = self.K = len(runs)
        seeds = [int(c.seed) for c in runs]
        self.model = fam.build(runs, ds.shape, ds.num_classes, [generator(s, "init") for s in seeds], device)
        self.epochs, self.B = int(c0.train.epochs), int(c0.train.batch_size)
        self.model.init_from_data(ds.train.x[:self.B])  # the first batch in file order, clean: the same for every run
        self.N, self.drop_last = len(ds.train), bool(c0.train.drop_last)
        self.steps = self.N // self.B if self.drop_last else math.ceil(self.N / self.B)
        if self.steps == 0:
            raise ValueError(f"train.batch_size={self.B} is larger than the {self.N} training examples with drop_last")

        def col(values):  # per-run setting as a (K, 1) tensor on the device
            return torch.tensor(values, dtype=torch.float32, device=device).view(K, 1)

        o = [c.optimizer for c in runs]
        self.schedules = Schedules(o, self.epochs, self.steps, device)
        self.live = torch.ones(K, 1, device=device)  # 0 for diverged runs: their updates stop
        self.opt = PackOptimizer(c0.optimizer.name, self.model.theta, {
            "lr": self.schedules.lr(0, 0) * self.live, "momentum": col([x.momentum for x in o]),
            "beta1": col([x.beta1 for x in o]), "beta2": col([x.beta2 for x in o]), "eps": col([x.eps for x in o]),
            "weight_decay": col([x.weight_decay for x in o])})
        a = c0.data.augment
        self.inputs = TrainInputs(ds, [float(c.data.input_noise_std) for c in runs], seeds, int(a.crop_padding),
                                  bool(a.flip), device)
        self.shuffle_g = [generator(s, "shuffle", device) for s in seeds]
        self.shuffle_buffer = [c.train.get("shuffle_buffer") for c in runs]  # per run: None = a full shuffle
        self.grad_noise = GradNoise([c.regime.grad_noise for c in runs], seeds, self.model.theta,
                                   [self.model.own_index(k) for k in range(K)])
        self.probe = GradientProbe(self.model, c0.diagnostics, self.steps) if c0.diagnostics.enabled else None
        self.precision = enum_value(c0.precision)
        self.metrics = METRICS + (VAL_METRICS if ds.val is not None else ())
        self.history: list[list[dict[str, float]]] = [[] for _ in range(K)]
        self.diverged_at: list[Optional[int]] = [None] * K
        self.gstep = self.start = 0
        # What a step reads that changes over time lives in fixed device tensors, moved in place, so
        # the step has no host values in it and a CUDA graph can replay it (see StepGraph).
        self.t_epoch = torch.zeros((), device=device)  # the epoch, and the global step: the clock
        self.t_step = torch.zeros((), device=device)   # of the schedules and the gradient noise
        self.idx = torch.zeros(K, self.B, dtype=torch.long, device=device)  # this step's batch indices
        self.sums = (torch.zeros(K, device=device), torch.zeros(K, device=device))  # loss, correct
        self.compiled = CompiledStep() if bool(c0.get("compile", False)) else None
        self.graph = StepGraph(self) if StepGraph.wanted(c0, device) else None

    # --- checkpoints ------------------------------------------------------------------------------
    def restore(self, states: list[Optional[dict]] | None) -> None:
        """Continue from per-run states (in the callers' order) of `state`, all at the same epoch."""
        if states is None or all(s is None for s in states):
            return
        states = [states[k] for k in self.order]
        if any(st is None for st in states) or len({st["epochs_done"] for st in states}) != 1:
            raise ValueError("runs resumed together must all have checkpoints of the same epoch")
        st0 = states[0]
        self.start, self.gstep, self.opt.t = st0["epochs_done"], st0["gstep"], st0["opt_t"]
        self.t_step.fill_(self.gstep)
        with torch.no_grad():
            for k, st in enumerate(states):
                own = self.model.set_own
                own(k, self.model.theta[k], st["theta"])
                own(k, self.opt.buf[k], st["opt_buf"])
                if self.opt.buf2 is not None:
                    own(k, self.opt.buf2[k], st["opt_buf2"])
                self.model.restore_buffers(k, st["buffers"])
                self.shuffle_g[k].set_state(st["shuffle_rng"])
                if k in self.grad_noise.gens:
                    self.grad_noise.gens[k].set_state(st["noise_rng"])
                self.inputs.restore(k, st.get("augment_rng"))
                self.history[k], self.diverged_at[k] = list(st["history"]), st["diverged_at"]
                if self.diverged_at[k] is not None:
                    self.live[k] = 0.0
        self.opt.hp["lr"].copy_(self.schedules.lr(self.start, self.gstep) * self.live)

    def state(self, k_caller: int, epochs_done: int) -> dict:
        """Run k's checkpoint: tensors, numbers, strings, lists and dicts only. Parameters and optimiser
        state in the layout the run has alone, whatever else its pack holds."""
        k = self.order.index(k_caller)
        opt, own = self.opt, self.model.own

        def row(t):
            return own(k, t[k].detach()).cpu().clone()

        return {"format": CHECKPOINT_FORMAT, "epochs_done": epochs_done, "gstep": self.gstep, "opt_t": opt.t,
                "theta": row(self.model.theta), "opt_buf": row(opt.buf),
                "opt_buf2": None if opt.buf2 is None else row(opt.buf2),
                "buffers": self.model.buffer_state(k), "shuffle_rng": self.shuffle_g[k].get_state(),
                "noise_rng": self.grad_noise.gens[k].get_state() if k in self.grad_noise.gens else None,
                "augment_rng": self.inputs.state(k),
                "history": [dict(h) for h in self.history[k]], "diverged_at": self.diverged_at[k]}

    # --- one step and one epoch -------------------------------------------------------------------
    def step(self, s: int, perm: torch.Tensor, sums: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Step s of the epoch: run k trains on perm[k, s*B:(s+1)*B]. Replayed from a CUDA graph
        when one is captured and the step is an ordinary one (a full batch, no diagnostics sample)."""
        B, sums = self.B, sums or self.sums
        idx = perm[:, s * B:(s + 1) * B]  # (K, B)
        probe = self.probe if self.probe and self.probe.samples(s) else None
        if self.graph and idx.shape[1] == B and sums is self.sums:
            self.idx.copy_(idx)  # where the captured step reads its batch
            if probe is None and self.graph.run():
                self.gstep += 1
                return  # replayed (or captured and replayed): the same kernels on the same tensors
            self.graph.eager_steps += 1
            with self.graph.warmup():
                self._step(s, self.idx, sums, probe)
        else:
            self._step(s, idx, sums, probe)
        self.gstep += 1

    def _step(self, s: int, idx: torch.Tensor, sums: tuple[torch.Tensor, torch.Tensor], probe) -> None:
        """The work of a step, all on the device: what a CUDA graph captures (with probe=None)."""
        model = self.model
        with scope("forward"):
            xb, yb = self.inputs.batch(idx), self.ds.train.y[idx]  # (K, B, C, H, W), (K, B)
            compiled = self.compiled and idx.shape[1] == self.B  # a last partial batch: eager, not compiled again
            if compiled:
                losses, correct = self.compiled.forward(model, xb, yb, self.precision == "bf16")
            else:
                with precision_ctx(self.precision, self.device):
                    logits = model.forward(xb, train=True)  # (K, B, classes)
                losses = model.loss(logits, yb)  # (K,)
        with scope("backward"):
            grad = model.grad(losses.sum())  # (K, P)
        self._update(s, grad, probe)
        with scope("metrics"), torch.no_grad():
            sums[0].add_(losses.detach())
            sums[1].add_(correct if compiled else (logits.argmax(-1) == yb).sum(1))
            self.t_step.add_(1)

    def _update(self, s: int, grad: torch.Tensor, probe) -> None:
        """Gradient noise and the optimiser's step; the probe measures the gradient before and after the
        noise, and the update. With compile=true the two are one compiled function (`optim.fused_step`),
        the noise drawn before it and added inside it; the probe then measures beside it."""
        theta, opt, fused = self.model.theta.data, self.opt, self.compiled is not None
        if probe:
            with scope("diagnostics"):
                probe.grad_stats(s, grad, after_noise=False)
        with scope("noise"):
            if fused:
                noise, std = self.grad_noise.draw(self.t_epoch, self.t_step)
            else:
                self.grad_noise.apply(grad, self.t_epoch, self.t_step)
        if probe:
            with scope("diagnostics"):
                noisy = grad.addcmul(noise, std) if fused and noise is not None else grad
                probe.grad_stats(s, noisy, after_noise=True)
        with scope("optimizer"):
            if self.schedules.any_step:
                opt.hp["lr"].copy_(self.schedules.lr(self.t_epoch, self.t_step) * self.live)
            if fused:
                self.compiled.update(opt.name, theta, grad, noise, std, opt.buf, opt.buf2, opt.t_dev, opt.hp,
                                     opt.any_wd)
            else:
                opt.step(theta, grad)
        if probe:
            with scope("diagnostics"):
                probe.update_stats(s, opt.current_update(), theta)

    @torch.no_grad()
    def evaluate(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count per run, (K,) each; the inputs are shared and clean."""
        K, rows = self.K, getattr(self.model, "eval_rows", 4096)
        loss_sum = torch.zeros(K, device=self.device)
        correct = torch.zeros(K, device=self.device)
        for i in range(0, len(split), rows):
            x, y = split.x[i:i + rows], split.y[i:i + rows]
            with precision_ctx(self.precision, self.device):
                logits = self.model.forward(x, train=False)  # (K, n, classes)
            loss_sum += self.model.loss(logits, y) * x.shape[0]
            correct += (logits.argmax(-1) == y).sum(1)
        return loss_sum, correct

    def run_epoch(self, epoch: int) -> torch.Tensor:
        """Train one epoch and evaluate: (K, metrics [+ diagnostics]) on the host, sorted order."""
        device = self.device
        with scope("shuffle"):
            perm = torch.stack([epoch_order(self.N, b, g, device)
                                for b, g in zip(self.shuffle_buffer, self.shuffle_g)])  # (K, N)
        self.t_epoch.fill_(epoch)
        self.grad_noise.begin_epoch(epoch)
        if self.schedules.any_cosine and not self.schedules.any_step:
            self.opt.hp["lr"].copy_(self.schedules.lr(epoch, self.gstep) * self.live)
        sums = self.sums
        for t in sums:
            t.zero_()
        for s in range(self.steps):
            self.step(s, perm, sums)
        with scope("epoch_end"):  # evaluation, the probe pass, the host copy
            ds = self.ds
            test_loss, test_correct = self.evaluate(ds.test)
            seen = self.steps * self.B if self.drop_last else self.N
            cols = [sums[0] / self.steps, sums[1] / seen, test_loss / len(ds.test), test_correct / len(ds.test)]
            if ds.val is not None:
                val_loss, val_correct = self.evaluate(ds.val)
                cols += [val_loss / len(ds.val), val_correct / len(ds.val)]
            row = torch.stack(cols, 1)
            if self.probe:
                n = min(int(self.runs[0].diagnostics.probe_examples), self.N)
                with precision_ctx(self.precision, device):
                    row = torch.cat([row, self.probe.epoch_tensor(self.inputs.first(n),
                                                                  getattr(self.model, "eval_rows", 4096))], 1)
            return row.float().cpu()  # the one host sync of the epoch

    def record(self, epoch: int, row: torch.Tensor, seconds: float) -> EpochReport:
        """Append the epoch to each live run's history; stop runs whose training loss is NaN or inf."""
        K, M = self.K, len(self.metrics)
        bad = [bool(not math.isfinite(row[k, 0])) and self.diverged_at[k] is None for k in range(K)]
        for k in range(K):
            if bad[k]:
                self.diverged_at[k] = epoch
                self.live[k] = 0.0
                self.opt.hp["lr"].mul_(self.live)  # a diverged run's weights stop changing
            if self.diverged_at[k] is None or bad[k]:
                self.history[k].append({m: float(row[k, i]) for i, m in enumerate(self.metrics)})
        metrics: list = [None] * K
        diags: list = [None] * K
        for k_sorted, k in enumerate(self.order):
            if self.diverged_at[k_sorted] is None or bad[k_sorted]:
                metrics[k] = self.history[k_sorted][-1]
                if self.probe:
                    diags[k] = self.probe.split(row[k_sorted, M:].numpy())
        return EpochReport(epoch, metrics, seconds, diags if self.probe else None,
                           [e.layer for e in self.model.weights()], self.model.unit_names())

    def result(self) -> PackResult:
        hist: list = [None] * self.K
        div: list = [None] * self.K
        weights: list = [None] * self.K
        for k_sorted, k in enumerate(self.order):
            hist[k], div[k] = self.history[k_sorted], self.diverged_at[k_sorted]
            if bool(self.runs[k_sorted].tracking.get("save_weights", False)):
                weights[k] = self.weights(k)
        return PackResult(hist, div, weights)

    def weights(self, k_caller: int) -> dict:
        """Run k's trained model, as it has it alone: {"parameters": {entry name: tensor of its shape},
        "buffers": {name: tensor}, "layout": [[name, shape, role, layer], ...]} on the CPU (float32)."""
        k = self.order.index(k_caller)
        entries = self.model.own_entries(k)
        theta = self.model.theta[k].detach()
        return {"parameters": {e.name: theta[e.offset:e.offset + e.numel].view(e.shape).cpu().clone() for e in entries},
                "buffers": self.model.buffer_state(k),
                "layout": [[e.name, list(e.shape), e.role, e.layer] for e in entries]}

    def all_diverged(self) -> bool:
        return all(d is not None for d in self.diverged_at)


def train_pack(cfgs: list[DictConfig], on_epoch: Callable[[EpochReport], None] | None = None,
               dataset: Dataset | None = None, resume: list[Optional[dict]] | None = None,
               on_checkpoint: Callable[[int, list[dict]], None] | None = None,
               on_data: Callable[[Dataset], None] | None = None) -> PackResult:
    """Train the runs of `cfgs` (all with the same pack key) together; returns their histories.

    on_data(dataset): called once the data set is loaded, before the first epoch.

    resume: per run, a state from `on_checkpoint` to continue from (all at the same epoch), or None.
    on_checkpoint(epochs_done, states): called every `checkpoint.every` epochs with one state per run.
    """
    t_start = time.perf_counter()
    pack = Pack(cfgs, dataset)
    if on_data:
        on_data(pack.ds)
    pack.restore(resume)
    t_ready = time.perf_counter()
    c0 = cfgs[0]
    every = int(c0.checkpoint.every)
    first, n = 0.0, 0
    with tf32(pack.precision == "tf32" and pack.device.type == "cuda"), deterministic(bool(c0.deterministic)):
        for epoch in range(pack.start, pack.epochs):
            t0 = time.perf_counter()
            row = pack.run_epoch(epoch)
            report = pack.record(epoch, row, time.perf_counter() - t0)
            if on_epoch:
                on_epoch(report)
            first, n = (first or time.perf_counter() - t0), n + 1
            if pack.all_diverged():
                break
            if on_checkpoint and every and (epoch + 1) % every == 0 and epoch + 1 < pack.epochs:
                on_checkpoint(epoch + 1, [pack.state(k, epoch + 1) for k in range(pack.K)])
    timing = {"set_up": t_ready - t_start, "epochs": time.perf_counter() - t_ready, "first_epoch": first,
              "n_epochs": n}
    result = pack.result()
    result.timing = timing
    return result
