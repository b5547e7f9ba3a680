"""What the trainer, packing, diagnostics and profile need of a model family.

A family is a module with:

    shape_key(cfg) -> tuple         runs with equal keys can share a pack (same shapes and layer math)
    order_key(cfg) -> tuple         runs are sorted by it inside a pack (equal activations contiguous)
    build(cfgs, shape, classes, generators, device) -> PackedModel   K runs as one model
    parameter_count(cfg, shape, classes) -> int   trainable parameters of one run
    bytes_per_run(cfg, shape, classes, captured=False) -> int   device memory one run adds
                                    (parameters, optimiser state, one step's activations, evaluation),
                                    an upper estimate; captured: the step is a CUDA graph, whose
                                    private memory pool holds a second copy of a step's activations
    step_tensor_bytes(cfg, shape, classes) -> int   the largest tensor one run adds to a training
                                    step (a pack's CPU size limit: packing.cpu_pack_limit)

and `PackedModel` below is what it builds: K networks with identical shapes whose parameters live in
one flat tensor `theta` (K, P). Each layout entry is a view of theta that autograd treats as its own
leaf, so a backward pass yields one gradient per entry (copied into one (K, P) buffer) instead of a
full (K, P) tensor per slice. Runs never mix: every operation acts on each row of K separately, so
a run's numbers do not depend on what else is in its pack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vgsweep.activations import ACTIVATIONS

ROLES = ("weight", "bias", "gain", "norm")  # gain: weight norm's lengths; norm: BN's gamma and beta


@dataclass(frozen=True)
class Entry:
    """One parameter tensor of every run: theta[:, offset:offset + numel] viewed as (K, *shape)."""

    name: str  # the family's own name for it (W0, bn1.gamma, s1.b2.conv1.w, ...)
    offset: int
    shape: tuple[int, ...]
    role: str  # one of ROLES
    layer: str  # the layer it belongs to, as the diagnostics and figures name it (dense1, s1.b2.conv1, fc)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class Layout:
    """Builds the list of entries, handing out offsets in order."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.P = 0

    def add(self, name: str, shape: tuple[int, ...], role: str, layer: str) -> Entry:
        e = Entry(name, self.P, tuple(shape), role, layer)
        self.entries.append(e)
        self.P += e.numel
        return e


@dataclass(frozen=True)
class Member:
    """What may differ between the runs of a pack (besides seeds, optimiser and noise settings)."""

    activation: str
    negative_slope: float
    init: str
    init_std: float
    double_softmax: bool = False
    init_gain: float = 1.0
    residual_scale: float = 1.0  # an MLP's skip connections: h + s * branch
    wn_data_init: bool = False  # weight norm's g and b set from a batch of data (regime.wn_init=data)


class PackedModel:
    """K runs of one family and shape. Subclasses fill `layout`, `theta` (via `_place`), `buffers`,
    and implement `forward`."""

    def __init__(self, members: list[Member], device: torch.device):
        self.K, self.device = len(members), device
        self.layout: list[Entry] = []
        self.buffers: dict[str, torch.Tensor] = {}  # per-run state that is not trained, (K, ...) each
        self._own: list[tuple[torch.Tensor, set[str]] | None] = []  # per run: see _set_own (empty: all)
        # Runs sorted by activation lie in contiguous slices of K; one call per distinct activation.
        self.act_groups: list[tuple[int, int, str, float]] = []
        for k, m in enumerate(members):
            key = (m.activation, m.negative_slope)
            if self.act_groups and self.act_groups[-1][2:] == key:
                s, _, a, ns = self.act_groups[-1]
                self.act_groups[-1] = (s, k + 1, a, ns)
            else:
                self.act_groups.append((k, k + 1, *key))
        # each run's activation group, for the selecting form `activate` takes under torch.compile
        self.act_group_of = torch.tensor([i for i, (s, e, _, _) in enumerate(self.act_groups) for _ in range(s, e)],
                                         device=device)

    def _place(self, layout: Layout, theta64: torch.Tensor) -> None:
        """Move the initial parameters (K, P) float64 to the device and make the per-entry leaves."""
        self.layout, self.P = layout.entries, layout.P
        self.theta = theta64.to(device=self.device, dtype=torch.float32)
        self.leaves = {e.name: self.theta[:, e.offset:e.offset + e.numel].view(self.K, *e.shape).requires_grad_(True)
                       for e in self.layout}
        self._grad = torch.zeros_like(self.theta)

    # --- parameters -------------------------------------------------------------------------------
    def params(self, theta: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Views per layout entry, shaped (K, *shape): the trainable leaves, or views of `theta`."""
        if theta is None:
            return self.leaves
        return {e.name: theta[:, e.offset:e.offset + e.numel].view(self.K, *e.shape) for e in self.layout}

    def grad(self, loss: torch.Tensor) -> torch.Tensor:
        """d loss / d theta as one (K, P) tensor (a buffer reused from step to step)."""
        grads = torch.autograd.grad(loss, list(self.leaves.values()))
        for e, g in zip(self.layout, grads):
            self._grad[:, e.offset:e.offset + e.numel].copy_(g.reshape(self.K, -1))
        return self._grad

    def weights(self) -> list[Entry]:
        """The weight entries (dense and conv kernels), input side first: what the diagnostics measure."""
        return [e for e in self.layout if e.role == "weight"]

    # --- the per-run pieces of a forward pass -----------------------------------------------------
    def activate(self, h: torch.Tensor, table: dict = ACTIVATIONS) -> torch.Tensor:
        """Each run's activation (or, with table=DERIVATIVES, its derivative) applied to h (K, ...).

        The activations: one autograd function for all groups (`GroupedActivation`), each group's
        kernel writing its slice of one output, and in the backward pass its slice of one gradient, with
        the kernels autograd would run for that activation alone (the same numbers, bit for bit). Taking
        the groups' results apart and concatenating them cost, per group and layer, a zero-filled
        full-size gradient, a copy and an add in the backward pass: on the GPU a third of a 5-layer
        pack's kernels (BENCHMARKS.md)."""
        if len(self.act_groups) == 1:
            _, _, a, ns = self.act_groups[0]
            return table[a](h, ns)
        if torch.compiler.is_compiling():
            return self._activate_selected(h, table)
        if table is ACTIVATIONS and all(GroupedActivation.covers(a) for _, _, a, _ in self.act_groups):
            return GroupedActivation.apply(h, self.act_groups)
        return torch.cat([table[a](h[s:e], ns) for s, e, a, ns in self.act_groups], dim=0)

    def _activate_selected(self, h: torch.Tensor, table: dict) -> torch.Tensor:
        """Every group's activation over all of h, each run's own selected (torch.where): the form for
        `compile=true`, where the compiler fuses it into one kernel each way. A run's elements are
        computed by its own activation alone; the others' values are dropped, and so are their
        gradients (finite for finite h)."""
        shape = (-1,) + (1,) * (h.dim() - 1)
        y = None
        for i, (_, _, a, ns) in enumerate(self.act_groups):
            f = table[a](h, ns)
            y = f if y is None else torch.where((self.act_group_of == i).view(shape), f, y)
        return y

    def init_from_data(self, x: torch.Tensor) -> None:
        """Where a run's initial parameters depend on data (the MLP's regime.wn_init=data): set them
        from the training examples x (B, C, H, W) before the first step. Nothing by default."""

    def forward(self, x: torch.Tensor, train: bool, theta: torch.Tensor | None = None,
                preacts: list | None = None) -> torch.Tensor:
        """x: (K, B, C, H, W) per-run inputs or (B, C, H, W) shared ones. Returns logits (K, B, classes).
        If `preacts` is a list, each hidden unit layer's activation input (K, B, units, ...) is appended."""
        raise NotImplementedError

    def unit_names(self) -> list[str]:
        """Names of the hidden unit layers whose activation inputs `forward` appends to `preacts`."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-run mean softmax cross-entropy: logits (K, B, C), y (K, B) or (B,) -> (K,)."""
        K, B, C = logits.shape
        y = y.expand(K, B) if y.dim() == 1 else y
        ce = F.cross_entropy(logits.reshape(K * B, C).float(), y.reshape(K * B), reduction="none")
        return ce.view(K, B).mean(dim=1)

    # --- what belongs to one run ------------------------------------------------------------------
    # A pack may hold entries some of its runs do not use (model=mlp: batch-norm parameters in a pack
    # that mixes runs with and without batch norm). A run's own entries, in layout order, are exactly
    # the layout it has alone; its checkpoints and its gradient-noise draws cover those alone.
    def _set_own(self, norm_layers: list[set[str]]) -> None:
        """Which normalisation entries (role "norm", by layer name) each run has; every other entry
        belongs to every run. Call after _place."""
        self._own = []
        for layers in norm_layers:
            kept = [e for e in self.layout if e.role != "norm" or e.layer in layers]
            self._own.append(None if len(kept) == len(self.layout) else
                             (torch.cat([torch.arange(e.offset, e.offset + e.numel) for e in kept]).to(self.device),
                              {e.name for e in kept}))

    def own_index(self, k: int) -> torch.Tensor | None:
        """Run k's own entries as column indices of theta (None: the whole row)."""
        return self._own[k][0] if self._own and self._own[k] else None

    def own_entries(self, k: int) -> list[Entry]:
        """Run k's own layout entries, in order: the layout it has alone."""
        names = self._own[k][1] if self._own and self._own[k] else None
        return [e for e in self.layout if names is None or e.name in names]

    def own(self, k: int, row: torch.Tensor) -> torch.Tensor:
        """Run k's own part of a (P,) row of theta or of an optimiser buffer: the layout it has alone."""
        idx = self.own_index(k)
        return row if idx is None else row[idx]

    def set_own(self, k: int, row: torch.Tensor, values: torch.Tensor) -> None:
        """Write run k's own part (as `own` returns it) into a (P,) row."""
        idx = self.own_index(k)
        if idx is None:
            row.copy_(values)
        else:
            row[idx] = values.to(row.device, row.dtype)

    # --- state that is not a parameter ------------------------------------------------------------
    def own_buffers(self, k: int) -> list[str]:
        """Names of the buffers run k uses: X.mean and X.var go with the entry X.gamma."""
        if not (self._own and self._own[k]):
            return list(self.buffers)
        names = self._own[k][1]
        return [n for n in self.buffers if f"{n.rsplit('.', 1)[0]}.gamma" in names]

    def buffer_state(self, k: int) -> dict[str, torch.Tensor]:
        return {n: self.buffers[n][k].detach().cpu().clone() for n in self.own_buffers(k)}

    def restore_buffers(self, k: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, v in state.items():
                self.buffers[n][k].copy_(v)


class GroupedActivation(torch.autograd.Function):
    """y[s:e] = f_group(h[s:e]) for the runs' activation groups (contiguous slices of K), as one node
    of the graph. KERNELS: per activation, (forward into `out`, backward into `out`) with the kernels
    autograd runs for ACTIVATIONS' own definition (sigmoid_backward on the result, threshold_backward
    for relu, ...), so that the numbers are those of `ACTIVATIONS[name]` applied alone, bit for bit.
    An activation missing here takes the concatenating path."""

    KERNELS = {
        "logistic": (lambda x, ns, out: torch.sigmoid(x, out=out),
                     lambda g, x, y, ns, out: torch.ops.aten.sigmoid_backward.grad_input(g, y, grad_input=out)),
        "tanh": (lambda x, ns, out: torch.tanh(x, out=out),
                 lambda g, x, y, ns, out: torch.ops.aten.tanh_backward.grad_input(g, y, grad_input=out)),
        "relu": (lambda x, ns, out: torch.clamp_min(x, 0, out=out),  # what torch.relu runs
                 lambda g, x, y, ns, out: torch.ops.aten.threshold_backward.grad_input(g, y, 0, grad_input=out)),
        "leaky_relu": (lambda x, ns, out: torch._C._nn.leaky_relu(x, ns, out=out),
                       lambda g, x, y, ns, out: torch.ops.aten.leaky_relu_backward.grad_input(g, x, ns, False,
                                                                                             grad_input=out)),
        "swish": (lambda x, ns, out: torch._C._nn.silu(x, out=out),
                  lambda g, x, y, ns, out: torch.ops.aten.silu_backward.grad_input(g, x, grad_input=out)),
        "gelu": (lambda x, ns, out: torch._C._nn.gelu(x, out=out),
                 lambda g, x, y, ns, out: torch.ops.aten.gelu_backward.grad_input(g, x, approximate="none",
                                                                                  grad_input=out)),
        "elu": (lambda x, ns, out: torch._C._nn.elu(x, 1.0, out=out),
                lambda g, x, y, ns, out: torch.ops.aten.elu_backward.grad_input(g, 1.0, 1, 1, False, x,
                                                                                grad_input=out)),
        "identity": (lambda x, ns, out: out.copy_(x), lambda g, x, y, ns, out: out.copy_(g)),
    }
    # what each backward reads: the activation's input x or its result y
    READS = {"logistic": "y", "tanh": "y", "relu": "y", "leaky_relu": "x", "swish": "x", "gelu": "x", "elu": "x",
             "identity": ""}
    # the definitions the kernels above were written for: an activation redefined in ACTIVATIONS since
    # (a test's broken one, a user's variant) takes the concatenating path, which calls ACTIVATIONS
    WRITTEN_FOR = dict(ACTIVATIONS)

    @staticmethod
    def covers(name: str) -> bool:
        f = GroupedActivation.WRITTEN_FOR.get(name)
        return f is not None and ACTIVATIONS.get(name) is f and name in GroupedActivation.KERNELS

    @staticmethod
    def forward(ctx, h: torch.Tensor, groups: list[tuple[int, int, str, float]]) -> torch.Tensor:
        y = torch.empty_like(h)
        for s, e, a, ns in groups:
            GroupedActivation.KERNELS[a][0](h[s:e], ns, y[s:e])
        ctx.groups = groups
        # keep only what the groups' backward kernels read (autograd alone keeps one of the two)
        needs = {GroupedActivation.READS[a] for _, _, a, _ in groups}
        ctx.save_for_backward(h if "x" in needs else None, y if "y" in needs else None)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        h, y = ctx.saved_tensors
        gh = torch.empty_like(g)
        for s, e, a, ns in ctx.groups:
            GroupedActivation.KERNELS[a][1](g[s:e], None if h is None else h[s:e], None if y is None else y[s:e], ns,
                                            gh[s:e])
        return gh, None


def batchnorm(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, mean_r: torch.Tensor, var_r: torch.Tensor,
              train: bool, eps: float, keep: float, dims: tuple[int, ...],
              runs: torch.Tensor | None = None) -> torch.Tensor:
    """Real batch normalisation of each run of h (K, B, F, ...) over `dims` (the batch and any spatial
    axes), with per-run running statistics mean_r, var_r (K, F) updated in training as
    running = keep * running + (1 - keep) * batch (the unbiased batch variance); with `runs` (K,) bool,
    only those runs' statistics move."""
    shape = [h.shape[0]] + [1] * (h.dim() - 1)
    shape[2] = h.shape[2]  # (K, 1, F, 1, ...)
    if train:
        mean = h.mean(dim=dims)  # (K, F)
        var = h.var(dim=dims, unbiased=False)
        with torch.no_grad():
            n = math.prod([h.shape[d] for d in dims])
            for r, b in ((mean_r, mean), (var_r, var * (n / max(n - 1, 1)))):
                if runs is None:
                    r.mul_(keep).add_(b.detach(), alpha=1 - keep)
                else:  # the same arithmetic, kept for these runs only
                    r.copy_(torch.where(runs.view(-1, 1), r.mul(keep).add_(b.detach(), alpha=1 - keep), r))
    else:
        mean, var = mean_r, var_r
    hn = (h - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)
    return hn * gamma.view(shape) + beta.view(shape)


def packed_linear(b: torch.Tensor, h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """b + h @ W for each run: b (K, 1, out), h (K, B, in) or one (B, in) shared by every run,
    W (K, in, out) -> (K, B, out).

    On a GPU, one batched matmul. On the CPU, one matrix product per run, each the call a run alone
    makes: MKL threads a batch of K products differently from a single one, and with 2 threads a
    (32, 784) x (784, 16) product alone and the same product in a batch of 7 round differently
    (MKL 2024.2, torch 2.14). The per-run calls keep "packing never changes a run" bit for bit on
    the CPU, whatever the thread count.
    """
    if h.device.type == "cpu":  # unbind, not W[k]: its backward is one stack, not K zero-filled (K, ...) tensors
        hs = h.unbind(0) if h.dim() == 3 else [h] * W.shape[0]
        return torch.stack([torch.addmm(bk, hk, Wk) for bk, hk, Wk in zip(b.unbind(0), hs, W.unbind(0))])
    return torch.baddbmm(b, h, W) if h.dim() == 3 else torch.matmul(h, W) + b
