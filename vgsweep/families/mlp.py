"""model=mlp: feed-forward nets (Agarap et al. 2019), K of them as one packed model.

Each layer's weight (in, out) and bias (out) are views into theta (K, P), so one call serves all K
networks (`packed_linear`: a batched `baddbmm` on a GPU, one product per run on the CPU).
Normalisation after a hidden activation (regime.bn) is frozen (the original code's Keras layer in
inference mode), real batch norm, or layer norm; weight normalisation
and skip connections are options. Activation, init, the double-softmax switch, the skips' scale and
batch norm (where, which mode, eps, momentum) may differ per run; the layer widths, weight norm and
skip connections may not (they are the shape key). So the paper's baseline, gna and gna_bn runs of
one depth train as one pack: at a layer with batch norm, runs without it (or with another mode) pass
through unchanged (frozen BN: scale 1 and shift 0 for them; the other modes: `torch.where` on a per-run
mask; exact in both directions), and their unused
gamma/beta sit at the end of the layout, outside the part of the row that is theirs (checkpoints and
gradient-noise draws cover only that part, the layout the run has alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from vgsweep.activations import init_bias, init_weight
from vgsweep.config import enum_value
from vgsweep.families.base import Layout, Member, PackedModel, batchnorm, packed_linear

EVAL_ROWS = 4096  # rows per forward pass in evaluation (the trainer's chunk), for the memory estimate


@dataclass(frozen=True)
class Arch:
    """What every run of a pack shares: the shapes and the math that cannot vary per run."""

    sizes: tuple[int, ...]  # (in, h1, ..., hL, out)
    bn_layers: tuple[int, ...]  # indices of hidden layers followed by batch norm
    bn_mode: str  # frozen | batch | layer
    bn_eps: float
    bn_momentum: float
    residual: bool = False  # skip connection around each hidden layer whose width does not change
    weight_norm: bool = False  # every dense layer's W = g * v / ||v|| (per output unit)


def arch_of(cfg: DictConfig, input_dim: int, num_classes: int) -> Arch:
    hidden = list(cfg.model.hidden)
    bn = cfg.regime.bn
    placement = enum_value(bn.placement)
    layers = {"none": (), "last": (len(hidden) - 1,), "all": tuple(range(len(hidden)))}[placement]
    return Arch(sizes=(input_dim, *hidden, num_classes), bn_layers=layers, bn_mode=enum_value(bn.mode),
                bn_eps=float(bn.eps), bn_momentum=float(bn.momentum), residual=bool(cfg.model.residual),
                weight_norm=bool(cfg.regime.weight_norm))


def member_of(cfg: DictConfig) -> Member:
    return Member(activation=cfg.activation.name, negative_slope=float(cfg.activation.negative_slope),
                  init=cfg.init.name, init_std=float(cfg.init.std), double_softmax=bool(cfg.model.double_softmax),
                  init_gain=float(cfg.init.gain), residual_scale=float(cfg.model.get("residual_scale", 1.0)),
                  wn_data_init=bool(cfg.regime.weight_norm) and enum_value(cfg.regime.wn_init) == "data")


def shape_key(cfg: DictConfig) -> tuple:
    return ("mlp", tuple(cfg.model.hidden), bool(cfg.model.residual), bool(cfg.regime.weight_norm))


def order_key(cfg: DictConfig) -> tuple:
    return (cfg.activation.name, float(cfg.activation.negative_slope))


def build(cfgs: list[DictConfig], shape: tuple[int, ...], classes: int, generators: list[torch.Generator],
          device: torch.device) -> "PackedMLP":
    return PackedMLP([arch_of(c, math.prod(shape), classes) for c in cfgs], [member_of(c) for c in cfgs], generators,
                     device)


def n_params(arch: Arch) -> int:
    sizes = arch.sizes
    per_layer = sum(a * b + b * (2 if arch.weight_norm else 1) for a, b in zip(sizes[:-1], sizes[1:]))
    return per_layer + 2 * sum(sizes[i + 1] for i in arch.bn_layers)


def parameter_count(cfg: DictConfig, shape: tuple[int, ...], classes: int) -> int:
    return n_params(arch_of(cfg, math.prod(shape), classes))


def bytes_per_run(cfg: DictConfig, shape: tuple[int, ...], classes: int, captured: bool = False) -> int:
    """Parameters with gradient, optimiser and noise buffers; one step's activations and their gradients
    (twice when the step is a CUDA graph: its pool beside the eager steps'); an evaluation chunk; with
    diagnostics, the end-of-epoch probe's chunk, which keeps every hidden layer's input at once
    (probe.units). Upper estimate, bytes."""
    dim = math.prod(shape)
    sizes = (dim, *cfg.model.hidden, classes)
    P = sum(a * b + 2 * b for a, b in zip(sizes[:-1], sizes[1:])) + 2 * sum(cfg.model.hidden)  # + g, BN
    B = int(cfg.train.batch_size)
    acts = B * (dim + 4 * sum(sizes[1:])) * (2 if captured else 1)  # gathered batch; pre/post activations, grads
    evals = EVAL_ROWS * 3 * max(sizes[1:])
    rows = min(EVAL_ROWS, int(cfg.diagnostics.probe_examples))
    widest = max(cfg.model.hidden, default=0)
    probe = rows * (sum(cfg.model.hidden) + 2 * widest) if cfg.diagnostics.enabled else 0  # + derivative, mask
    return 4 * (5 * P + acts + evals + probe)


def step_tensor_bytes(cfg: DictConfig, shape: tuple[int, ...], classes: int) -> int:
    """The largest tensor one run adds to a training step, bytes: its gathered batch or its widest
    layer's activations, (B, width) floats (packing.cpu_pack_limit)."""
    return 4 * int(cfg.train.batch_size) * max(math.prod(shape), *cfg.model.hidden, classes)


class PackedMLP(PackedModel):
    def __init__(self, arch: Arch | list[Arch], members: list[Member], generators: list[torch.Generator],
                 device: torch.device):
        super().__init__(members, device)
        archs = list(arch) if isinstance(arch, (list, tuple)) else [arch] * self.K
        a0 = archs[0]
        if any((a.sizes, a.residual, a.weight_norm) != (a0.sizes, a0.residual, a0.weight_norm) for a in archs):
            raise ValueError("runs of one MLP pack must share widths, weight norm and skip connections")
        self.arch = a0
        sizes = a0.sizes
        self.bn_layers = sorted({i for a in archs for i in a.bn_layers})  # the union over the pack
        # per layer with batch norm somewhere: (mode, eps, momentum, runs) groups; runs None = every run
        self.norms: dict[int, list[tuple[str, float, float, torch.Tensor | None]]] = {}
        for i in self.bn_layers:
            groups: dict[tuple, list[int]] = {}
            for k, a in enumerate(archs):
                if i in a.bn_layers:
                    groups.setdefault((a.bn_mode, a.bn_eps, a.bn_momentum), []).append(k)
            self.norms[i] = [(m, e, mo, None if len(ks) == self.K else
                              torch.tensor([k in ks for k in range(self.K)], device=device))
                             for (m, e, mo), ks in groups.items()]
        lay = Layout()
        for i in range(len(sizes) - 1):
            layer = f"dense{i + 1}"
            lay.add(f"W{i}", (sizes[i], sizes[i + 1]), "weight", layer)
            lay.add(f"b{i}", (sizes[i + 1],), "bias", layer)
            if a0.weight_norm:
                lay.add(f"g{i}", (sizes[i + 1],), "gain", layer)  # the length of each unit's weight vector
        for i in self.bn_layers:  # after every dense layer: a run without them keeps a prefix of the row
            lay.add(f"bn{i}.gamma", (sizes[i + 1],), "norm", f"norm{i + 1}")
            lay.add(f"bn{i}.beta", (sizes[i + 1],), "norm", f"norm{i + 1}")
        theta = torch.zeros(self.K, lay.P, dtype=torch.float64)
        at = {e.name: e for e in lay.entries}
        for k, (m, g) in enumerate(zip(members, generators)):
            for e in lay.entries:
                if e.role == "weight":
                    fan_in, fan_out = e.shape
                    w = init_weight(m.init, e.shape, fan_in, fan_out, g, m.init_std, m.init_gain)  # (in, out)
                    theta[k, e.offset:e.offset + e.numel] = w.flatten()
                    if m.init == "torch_default":
                        b = at[f"b{e.name[1:]}"]
                        theta[k, b.offset:b.offset + b.numel] = init_bias(m.init, e.shape[1], fan_in, g)
                    if a0.weight_norm:  # g = ||v||: the effective weights start as the init
                        ge = at[f"g{e.name[1:]}"]
                        theta[k, ge.offset:ge.offset + ge.numel] = w.norm(dim=0)
                elif e.name.endswith("gamma"):
                    theta[k, e.offset:e.offset + e.numel] = 1.0
        self._place(lay, theta)
        self._set_own([{f"norm{i + 1}" for i in a.bn_layers} for a in archs])
        for i in self.bn_layers:  # running statistics for `batch` BN, per run: (K, F) each
            self.buffers[f"bn{i}.mean"] = torch.zeros(self.K, sizes[i + 1], device=device)
            self.buffers[f"bn{i}.var"] = torch.ones(self.K, sizes[i + 1], device=device)
        self.double_softmax = torch.tensor([m.double_softmax for m in members], device=device)
        self.any_double_softmax = bool(self.double_softmax.any())
        # each run's skip scale (K, 1, 1); none multiplied where every run's is 1 (x * 1.0 is x: exact either way)
        self.residual_scale = torch.tensor([m.residual_scale for m in members], device=device).view(-1, 1, 1)
        self.any_residual_scale = a0.residual and any(m.residual_scale != 1.0 for m in members)
        self.wn_data_init = [m.wn_data_init for m in members]

    def init_from_data(self, x: torch.Tensor) -> None:
        """regime.wn_init=data (Salimans & Kingma 2016, section 3): layer by layer from the input, each
        unit's g and b are set so that its pre-activation over the examples x has mean 0 and std 1,
        g <- g / std, b <- (b - mean) / std (the same direction v), then the next layer sees the new
        activations. For the runs that ask for it; every run's arithmetic is its own, so packed = alone."""
        if not self.arch.weight_norm or not any(self.wn_data_init):
            return
        runs = torch.tensor(self.wn_data_init, device=self.device).view(-1, 1)
        x = x.to(self.device)
        p = self.params()
        with torch.no_grad():
            for i in range(len(self.arch.sizes) - 1):
                pre: list[torch.Tensor] = []
                self.forward(x, train=False, preacts=pre, output_preact=True)
                mean, var = pre[i].mean(dim=1), pre[i].var(dim=1, unbiased=False)  # (K, out) over the examples
                inv = torch.rsqrt(var + 1e-10)  # the paper's code's epsilon
                p[f"g{i}"].copy_(torch.where(runs, p[f"g{i}"] * inv, p[f"g{i}"]))
                p[f"b{i}"].copy_(torch.where(runs, (p[f"b{i}"] - mean) * inv, p[f"b{i}"]))

    def unit_names(self) -> list[str]:
        return [f"hidden{i + 1}" for i in range(len(self.arch.sizes) - 2)]

    def _norm(self, i: int, h: torch.Tensor, p: dict, train: bool) -> torch.Tensor:
        """Each run's normalisation at hidden layer i; runs without one there pass h through."""
        for mode, eps, momentum, runs in self.norms[i]:
            if mode == "frozen" and runs is not None:
                # an affine map per run: the others get scale 1 and shift 0 (h * 1 + 0 is h), one pass over h
                # where torch.where against the normalised copy took three, and three more backwards
                m = runs.view(-1, 1)
                scale = torch.where(m, p[f"bn{i}.gamma"] / math.sqrt(1.0 + eps), 1.0)
                h = h * scale.unsqueeze(1) + torch.where(m, p[f"bn{i}.beta"], 0.0).unsqueeze(1)
                continue
            out = self._norm1(i, h, p, train, mode, eps, momentum, runs)
            h = out if runs is None else torch.where(runs.view(-1, 1, 1), out, h)
        return h

    def _norm1(self, i: int, h: torch.Tensor, p: dict, train: bool, mode: str, eps: float, momentum: float,
               runs: torch.Tensor | None) -> torch.Tensor:
        gamma, beta = p[f"bn{i}.gamma"], p[f"bn{i}.beta"]  # (K, F)
        if mode == "frozen":
            # Keras BatchNormalization in inference mode with its initial moving statistics
            # (mean 0, variance 1), which the original code never updates.
            return h * (gamma.unsqueeze(1) / math.sqrt(1.0 + eps)) + beta.unsqueeze(1)
        if mode == "layer":  # each example over its own features: no batch, no running statistics
            # torch's fused kernel, each row on its own (so a run packed or alone is the same, bit for bit):
            # on two CPU cores 7x faster in training than mean, var and five elementwise passes, and one
            # kernel forward on a GPU; the affine part is per run, so it stays outside
            return torch.nn.functional.layer_norm(h, h.shape[-1:], eps=eps) * gamma.unsqueeze(1) + beta.unsqueeze(1)
        return batchnorm(h, gamma, beta, self.buffers[f"bn{i}.mean"], self.buffers[f"bn{i}.var"], train,
                         eps, momentum, dims=(1,), runs=runs)

    def forward(self, x: torch.Tensor, train: bool, theta: torch.Tensor | None = None,
                preacts: list | None = None, output_preact: bool = False) -> torch.Tensor:
        """x: (K, B, ...) per-run inputs or (B, ...) shared ones, flattened here. Returns logits (K, B, C).
        preacts gets each hidden layer's pre-activation (K, B, F), and with output_preact the output
        layer's too (before a double softmax)."""
        p = self.params(theta)
        dim = self.arch.sizes[0]
        h = x.reshape(*x.shape[:-3], dim) if x.dim() >= 4 else x  # images (.., C, H, W) -> (.., D)
        h_in = h
        L = len(self.arch.sizes) - 1
        for i in range(L):
            W, b = p[f"W{i}"], p[f"b{i}"].unsqueeze(1)  # (K, in, out), (K, 1, out)
            if self.arch.weight_norm:  # W = v * g / ||v||, the norm over each unit's inputs: (K, out)
                W = W * (p[f"g{i}"] / W.norm(dim=1)).unsqueeze(1)
            h = packed_linear(b, h, W)
            if preacts is not None and (i < L - 1 or output_preact):
                preacts.append(h)
            if i < L - 1:
                h = self.activate(h)
                if i in self.norms:
                    h = self._norm(i, h, p, train)
                if self.arch.residual and 0 < i and self.arch.sizes[i] == self.arch.sizes[i + 1]:
                    h = (h * self.residual_scale if self.any_residual_scale else h) + h_in  # (K, B, F): the skip
            h_in = h
        if self.any_double_softmax:
            h = torch.where(self.double_softmax.view(-1, 1, 1), torch.softmax(h, dim=-1), h)
        return h
