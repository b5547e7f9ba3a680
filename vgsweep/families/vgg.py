"""model=vgg08 | vgg38 | ...: the VGG-style CNNs of the MLP course framework (VICO-UoE/mlpractical,
`pytorch_mlp_framework/model_architectures.py`, ConvolutionalNetwork), K of them as one packed model.

    entry      conv (no bias) -> BatchNorm2d (model.entry_bn) -> act
    stage x3   blocks_per_stage processing blocks: conv -> act -> conv -> act (no bias)
               one reduction block: conv -> act -> 2x2 average pool -> conv -> act (with bias)
    head       global average pool -> linear to the classes

32 filters of 3x3, padding 1. VGG08 has 0 processing blocks per stage (59,716 parameters on
CIFAR-100), VGG38 has 5 (336,196). Batch norm goes after a convolution, before its activation
(model.bn: processing blocks, or all blocks); a skip connection goes from before a processing
block's first convolution to before its last activation (model.residual).

On a GPU the K runs' convolutions run as one grouped convolution (groups=K): activations are kept
as (K, B, C, H, W) views of (B, K*C, H, W) memory, so a convolution takes its input as
(B, K*C, H, W) without a copy and every run sees only its own channels. (torch.func.vmap over
F.conv2d lowers to the same grouped convolution.) On the CPU each run's convolution is its own call
(PackedVGG._conv), its numbers bit for bit those it has alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from vgsweep.activations import init_bias, init_weight
from vgsweep.config import enum_value
from vgsweep.families.base import Layout, Member, PackedModel, batchnorm, packed_linear

KERNEL = 3


def shape_key(cfg: DictConfig) -> tuple:
    """Batch norm's placement (model.bn) and the skip connections (model.residual) are per-run
    settings: VGG38, VGG38 BN, RC and BN + RC train as one pack."""
    m = cfg.model
    return ("vgg", int(m.blocks_per_stage), int(m.stages), int(m.filters), bool(m.entry_bn), float(m.bn_eps),
            float(m.bn_momentum))


def order_key(cfg: DictConfig) -> tuple:
    return (cfg.activation.name, float(cfg.activation.negative_slope))


def member_of(cfg: DictConfig) -> Member:
    return Member(activation=cfg.activation.name, negative_slope=float(cfg.activation.negative_slope),
                  init=cfg.init.name, init_std=float(cfg.init.std), init_gain=float(cfg.init.gain))


def convs(m) -> list[tuple[str, bool, bool, int]]:
    """(layer name, has bias, has BN, stage (0 = entry)) of every convolution, input side first."""
    bn = enum_value(m.bn)
    proc_bn, red_bn = bn in ("processing", "all"), bn == "all"
    out = [("entry.conv", False, bool(m.entry_bn), 0)]
    for s in range(1, int(m.stages) + 1):
        for b in range(1, int(m.blocks_per_stage) + 1):
            out += [(f"s{s}.b{b}.conv1", False, proc_bn, s), (f"s{s}.b{b}.conv2", False, proc_bn, s)]
        out += [(f"s{s}.red.conv1", True, red_bn, s), (f"s{s}.red.conv2", True, red_bn, s)]
    return out


def n_params(m, channels: int, classes: int) -> int:
    F_ = int(m.filters)
    total = 0
    for i, (_, bias, bn, _) in enumerate(convs(m)):
        cin = channels if i == 0 else F_
        total += F_ * cin * KERNEL * KERNEL + (F_ if bias else 0) + (2 * F_ if bn else 0)
    return total + F_ * classes + classes


def parameter_count(cfg: DictConfig, shape: tuple[int, ...], classes: int) -> int:
    return n_params(cfg.model, shape[0], classes)


def build(cfgs: list[DictConfig], shape: tuple[int, ...], classes: int, generators: list[torch.Generator],
          device: torch.device) -> "PackedVGG":
    return PackedVGG([c.model for c in cfgs], shape, classes, [member_of(c) for c in cfgs], generators, device)


def bytes_per_run(cfg: DictConfig, shape: tuple[int, ...], classes: int, captured: bool = False) -> int:
    """Parameters x 5 (weights, gradient, two optimiser moments, noise); one step's activations (about
    five (B, C, H, W) tensors per convolution kept for backward and their gradients; twice when the
    step is a CUDA graph: its pool beside the eager steps'); an evaluation chunk; with diagnostics, the
    end-of-epoch probe's chunk, which keeps every convolution's output at once (probe.units). Upper
    estimate, bytes."""
    m = cfg.model
    C, H, W = shape
    F_ = int(m.filters)
    B = int(cfg.train.batch_size)
    pad = int(cfg.data.augment.crop_padding)
    units, h, w = 0, H, W  # one example's convolution outputs, all layers
    for name, _, _, stage in convs(m):
        if name.endswith("red.conv2"):
            h, w = h // 2, w // 2
        units += F_ * h * w
    acts = 5 * B * units
    batch = 3 * B * C * (H + 2 * pad) * (W + 2 * pad)
    evals = 3 * PackedVGG.eval_rows * F_ * H * W
    rows = min(PackedVGG.eval_rows, int(cfg.diagnostics.probe_examples))
    probe = rows * (units + 2 * F_ * H * W) if cfg.diagnostics.enabled else 0  # + a layer's derivative, its mask
    return 4 * (5 * n_params(m, C, classes) + (acts + batch) * (2 if captured else 1) + evals + probe)


def step_tensor_bytes(cfg: DictConfig, shape: tuple[int, ...], classes: int) -> int:
    """The largest tensor one run adds to a training step, bytes: a first-stage activation (B, filters,
    H, W) or the padded batch it is cropped from (packing.cpu_pack_limit)."""
    C, H, W = shape
    pad = int(cfg.data.augment.crop_padding)
    return 4 * int(cfg.train.batch_size) * max(int(cfg.model.filters) * H * W, C * (H + 2 * pad) * (W + 2 * pad))


class PackedVGG(PackedModel):
    eval_rows = 500  # test images per forward pass in evaluation: K x 500 x 32 x 32 x 32 floats a tensor

    def __init__(self, m, shape: tuple[int, ...], classes: int, members: list[Member],
                 generators: list[torch.Generator], device: torch.device):
        """m: the model config of every run (a list), or one for all. Runs may differ in where batch
        norm goes and whether processing blocks have skips: at a convolution where some runs have
        batch norm the others pass through unchanged (torch.where, exact), and their unused
        gamma/beta sit at the end of the layout, outside what their checkpoints hold."""
        super().__init__(members, device)
        ms = list(m) if isinstance(m, (list, tuple)) else [m] * self.K
        m = ms[0]
        self.m, self.F = m, int(m.filters)
        self.grouped = device.type != "cpu"  # one grouped convolution for all runs (_conv)
        self.stages, self.blocks = int(m.stages), int(m.blocks_per_stage)  # plain ints: forward reads no config
        per_run = [convs(mk) for mk in ms]
        # the pack's convolutions: (name, bias, bn somewhere, stage); bn_runs[name]: None (every run) or a mask
        self.convs = [(n, b, any(pr[i][2] for pr in per_run), st) for i, (n, b, _, st) in enumerate(per_run[0])]
        self.bn_runs: dict[str, torch.Tensor | None] = {}
        for i, (name, _, any_bn, _) in enumerate(self.convs):
            if any_bn:
                has = [pr[i][2] for pr in per_run]
                self.bn_runs[name] = None if all(has) else torch.tensor(has, device=device).view(-1, 1, 1, 1, 1)
        self.keep = 1.0 - float(m.bn_momentum)  # torch's momentum m: running = (1 - m) running + m batch
        self.eps = float(m.bn_eps)
        skips = [enum_value(mk.residual) == "processing" for mk in ms]
        self.residual = any(skips)
        self.skip_runs = None if all(skips) or not any(skips) else torch.tensor(skips, device=device).view(-1, 1, 1, 1, 1)
        C = shape[0]
        lay = Layout()
        for i, (name, bias, bn, _) in enumerate(self.convs):
            lay.add(f"{name}.w", (self.F, C if i == 0 else self.F, KERNEL, KERNEL), "weight", name)
            if bias:
                lay.add(f"{name}.b", (self.F,), "bias", name)
        lay.add("fc.w", (self.F, classes), "weight", "fc")  # (in, out), as the MLP's
        lay.add("fc.b", (classes,), "bias", "fc")
        for name, _, bn, _ in self.convs:  # after everything else: a run without them keeps a prefix
            if bn:
                lay.add(f"{name}.gamma", (self.F,), "norm", name)
                lay.add(f"{name}.beta", (self.F,), "norm", name)
        theta = torch.zeros(self.K, lay.P, dtype=torch.float64)
        for k, (mem, g) in enumerate(zip(members, generators)):
            fan_in = 0
            for e in lay.entries:
                sl = slice(e.offset, e.offset + e.numel)
                if e.role == "weight":
                    if len(e.shape) == 4:  # (out, in, kh, kw)
                        fan_in, fan_out = e.shape[1] * KERNEL * KERNEL, e.shape[0] * KERNEL * KERNEL
                    else:
                        fan_in, fan_out = e.shape
                    theta[k, sl] = init_weight(mem.init, e.shape, fan_in, fan_out, g, mem.init_std,
                                                mem.init_gain).flatten()
                elif e.role == "bias":
                    theta[k, sl] = init_bias(mem.init, e.numel, fan_in, g)
                elif e.name.endswith("gamma"):
                    theta[k, sl] = 1.0
        self._place(lay, theta)
        self._set_own([{n for n, _, bn, _ in pr if bn} for pr in per_run])
        for name, _, bn, _ in self.convs:
            if bn:
                self.buffers[f"{name}.mean"] = torch.zeros(self.K, self.F, device=device)
                self.buffers[f"{name}.var"] = torch.ones(self.K, self.F, device=device)

    def unit_names(self) -> list[str]:
        return [name for name, *_ in self.convs]

    def _conv(self, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """h (K, B, Ci, H, W), w (K, Co, Ci, 3, 3), b (K, Co) -> (K, B, Co, H, W).

        On a GPU (self.grouped) one grouped convolution, its output a (K, B, Co, H, W) view of
        (B, K*Co, H, W) memory. On the CPU one convolution per run, the call a run alone makes, its
        output (K, B, Co, H, W) memory: oneDNN's grouped convolution sums in another order than a
        single one (a run packed came out of two epochs of Adam ~1e-3 off its numbers alone), and was
        no faster (bench/cpu_conv.py). As packed_linear, unbind rather than h[k]: its backward is one
        stack, not K zero-filled (K, ...) gradients."""
        K, B, Ci, H, W = h.shape
        Co = w.shape[1]
        if not self.grouped:
            bs = [None] * K if b is None else b.unbind(0)
            return torch.stack([F.conv2d(hk, wk, bk, padding=KERNEL // 2)
                                for hk, wk, bk in zip(h.unbind(0), w.unbind(0), bs)])
        x = h.transpose(0, 1).reshape(B, K * Ci, H, W)
        y = F.conv2d(x, w.reshape(K * Co, Ci, KERNEL, KERNEL), None if b is None else b.reshape(K * Co),
                     padding=KERNEL // 2, groups=K)
        return y.view(B, K, Co, H, W).transpose(0, 1)

    def _unit(self, h: torch.Tensor, name: str, bias: bool, bn: bool, p: dict, train: bool, preacts,
              skip: torch.Tensor | None = None) -> torch.Tensor:
        z = self._conv(h, p[f"{name}.w"], p[f"{name}.b"] if bias else None)
        if bn:
            runs = self.bn_runs[name]
            out = batchnorm(z, p[f"{name}.gamma"], p[f"{name}.beta"], self.buffers[f"{name}.mean"],
                            self.buffers[f"{name}.var"], train, self.eps, self.keep, dims=(1, 3, 4),
                            runs=None if runs is None else runs.view(-1))
            z = out if runs is None else torch.where(runs, out, z)
        if skip is not None:  # before the block's last activation
            z = z + skip if self.skip_runs is None else torch.where(self.skip_runs, z + skip, z)
        if preacts is not None:
            preacts.append(z)
        return self.activate(z)

    def forward(self, x: torch.Tensor, train: bool, theta: torch.Tensor | None = None,
                preacts: list | None = None) -> torch.Tensor:
        p = self.params(theta)
        h = x.unsqueeze(0).expand(self.K, *x.shape) if x.dim() == 4 else x  # (K, B, C, H, W)
        it = iter(self.convs)
        name, bias, bn, _ = next(it)
        h = self._unit(h, name, bias, bn, p, train, preacts)
        for s in range(1, self.stages + 1):
            for _ in range(self.blocks):
                h_in = h
                name, bias, bn, _ = next(it)
                h = self._unit(h, name, bias, bn, p, train, preacts)
                name, bias, bn, _ = next(it)
                h = self._unit(h, name, bias, bn, p, train, preacts, skip=h_in if self.residual else None)
            name, bias, bn, _ = next(it)
            h = self._unit(h, name, bias, bn, p, train, preacts)
            K, B, C, H, W = h.shape
            if h.is_contiguous():  # the CPU's (K, B, C, H, W) memory (_conv)
                h = F.avg_pool2d(h.view(K * B, C, H, W), 2)
                h = h.view(K, B, C, *h.shape[-2:])
            else:  # a GPU's (B, K*C, H, W) memory
                h = F.avg_pool2d(h.transpose(0, 1).reshape(B, K * C, H, W), 2)
                h = h.view(B, K, C, *h.shape[-2:]).transpose(0, 1)
            name, bias, bn, _ = next(it)
            h = self._unit(h, name, bias, bn, p, train, preacts)
        h = h.mean(dim=(3, 4))  # global average pool: (K, B, F)
        return packed_linear(p["fc.b"].unsqueeze(1), h, p["fc.w"])  # (K, B, classes)


def flops_per_example(m, shape: tuple[int, ...], classes: int) -> float:
    """Multiply-adds x 2 of one forward pass (for the profile and the benchmark)."""
    C, H, W = shape
    F_ = int(m.filters)
    total, h, w = 0.0, H, W
    for i, (name, *_rest) in enumerate(convs(m)):
        if name.endswith("red.conv2"):
            h, w = h // 2, w // 2
        total += 2.0 * h * w * F_ * (C if i == 0 else F_) * KERNEL * KERNEL
    return total + 2.0 * F_ * classes
