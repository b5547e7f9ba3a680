"""Which runs train together as one pack, how much device memory each adds, and splitting.

Runs share a pack when everything the training program is made of is equal: the family's shape
key (layer shapes; for model=mlp not the normalisation, a per-run setting), the data set as it sits on the device, the schedule of
steps (epochs, batch, last-batch rule), the optimiser's algorithm, precision, device, checkpoint
interval, determinism, CUDA graphs and what the diagnostics measure. Everything else (seed, activation, init,
learning rate and its schedule, weight decay, gradient noise, input noise, double softmax) is a
per-run setting inside the pack. Settings read only after training (verdict thresholds,
`diagnostics.metrics_every`) do not split packs.
"""

from __future__ import annotations

import logging
import math
import os

from omegaconf import DictConfig

from vgsweep.config import enum_value
from vgsweep.data.sets import DATASETS
from vgsweep.families import family_of

log = logging.getLogger(__name__)

# glibc's malloc serves every block over this (its largest mmap threshold on 64-bit) with a fresh mmap
CPU_TENSOR_BYTES = 32 * 2**20


def data_key(d: DictConfig) -> tuple:
    """The data set as it sits on the device (shared by every run of a pack)."""
    return (d.name, str(d.root), d.limit_train, d.limit_test, bool(d.verify), int(d.val_size), int(d.split_seed),
            d.pad_to, None if d.mean is None else tuple(d.mean), None if d.std is None else tuple(d.std),
            int(d.augment.crop_padding), bool(d.augment.flip))


def diagnostics_key(dg: DictConfig) -> tuple:
    """What the probe measures during training (one setting per pack)."""
    if not dg.enabled:
        return (False,)
    return (True, int(dg.grad_samples), int(dg.probe_examples), float(dg.saturation_threshold), int(dg.hist_bins),
            float(dg.hist_min), float(dg.hist_max))


def pack_key(cfg: DictConfig) -> tuple:
    """Runs with equal keys can share a pack."""
    from vgsweep.config import resolve_device

    t = cfg.train
    return (family_of(cfg).shape_key(cfg), data_key(cfg.data), int(t.epochs), int(t.batch_size), bool(t.drop_last),
            cfg.optimizer.name, enum_value(cfg.precision), str(resolve_device(cfg.device)), int(cfg.checkpoint.every),
            bool(cfg.deterministic), bool(cfg.cuda_graph), bool(cfg.get("compile", False)),
            diagnostics_key(cfg.diagnostics))


def input_shape(d: DictConfig) -> tuple[int, int, int]:
    """(channels, height, width) of the images a run sees, after data.pad_to."""
    c, h, w = DATASETS[d.name].shape
    return (c, d.pad_to or h, d.pad_to or w)


def bytes_per_run(cfg: DictConfig) -> int:
    """Device memory one run adds to a pack (upper estimate, bytes): the model's share (parameters,
    optimiser and noise buffers, one step's activations, evaluation; a step captured as a CUDA graph
    keeps its activations in the graph's own pool too) and the data's: its permutation, and its own
    copy of the training inputs only when it has fixed input noise."""
    from vgsweep.config import resolve_device

    spec = DATASETS[cfg.data.name]
    n_train = min(spec.n_train, cfg.data.limit_train or spec.n_train) - int(cfg.data.val_size)
    shape = input_shape(cfg.data)
    data = 8 * n_train + (4 * n_train * math.prod(shape) if cfg.data.input_noise_std > 0 else 0)
    captured = bool(cfg.cuda_graph) and resolve_device(cfg.device).type == "cuda"
    return family_of(cfg).bytes_per_run(cfg, shape, spec.classes, captured) + data


def work_per_run_epoch(cfg: DictConfig) -> float:
    """A run-epoch's arithmetic, up to a constant: trainable parameters times (3 x the images it trains
    on + those it evaluates), forward and backward being about three forward passes. On a CPU (2 cores,
    experiment=depth_study at 3 epochs of 4,000 images) the seconds per run-epoch of its packs, depth 2 to
    30, came within 20% of one constant times this (it says 3.15 times as much for depth 30 as for depth
    2; they took 3.8 times as long). The sweep's ETA goes by it for packs of a kind not timed yet
    (progress.Progress)."""
    spec = DATASETS[cfg.data.name]
    n_train = min(spec.n_train, cfg.data.limit_train or spec.n_train)
    n_eval = min(spec.n_test, cfg.data.limit_test or spec.n_test) + int(cfg.data.val_size)
    n_fit = n_train - int(cfg.data.val_size)
    params = family_of(cfg).parameter_count(cfg, input_shape(cfg.data), spec.classes)
    return float(params) * (3 * n_fit + n_eval)


def memory_budget(device, budget_gb: float | None) -> int | None:
    """Bytes a pack may use: the given budget, else 80% of free GPU memory or half the free RAM. None for
    a GPU this process cannot see (a SLURM login node without one, its packs to train on the nodes): a
    pack job splits its pack to fit its own device (executors.PackJob)."""
    if budget_gb:
        return int(budget_gb * 2**30)
    if device.type == "cuda":
        import torch

        if not torch.cuda.is_available():  # the local executor's preflight refuses this device first
            return None
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.8 * free)
    return int(0.5 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def cpu_pack_limit(cfg: DictConfig) -> int:
    """Most runs a pack on the CPU holds when hydra.launcher.max_pack leaves it open: as many as keep
    every tensor of its training step within CPU_TENSOR_BYTES. A larger one comes from a fresh mmap,
    faulted in page by page, for each of a step's hundreds of temporaries: a VGG pack of three at batch
    100 (39 MB an activation) took 14.4 s a run-epoch where two took 8.5 (BENCHMARKS.md). On the CPU
    packing buys no speed (two cores are bound by arithmetic), so smaller packs cost nothing."""
    spec = DATASETS[cfg.data.name]
    return max(1, CPU_TENSOR_BYTES // family_of(cfg).step_tensor_bytes(cfg, input_shape(cfg.data), spec.classes))


def group_packs(cfgs: list[DictConfig], starts: list[int] | None = None, max_pack: int | None = None,
                memory_budget_gb: float | None = None, here: bool = True) -> list[list[int]]:
    """Indices of cfgs grouped by pack key (and the epoch each resumes from), the packs ordered by their
    first index (the order a sweep trains them in); a pack holds at most `max_pack` runs and at most what
    fits the memory budget, split into near-equal parts. here: the packs train on this machine, and
    without `max_pack` one on the CPU holds at most cpu_pack_limit runs (a scheduler's pack job applies
    it on its node)."""
    from vgsweep.config import resolve_device

    starts = starts or [0] * len(cfgs)
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cfgs):
        groups.setdefault((pack_key(c), starts[i]), []).append(i)
    packs, limited = [], set()
    for idx in groups.values():
        cfg = cfgs[idx[0]]
        device = resolve_device(cfg.device)
        budget = memory_budget(device, memory_budget_gb)
        fit = max(1, budget // bytes_per_run(cfg)) if budget is not None else len(idx)
        n = min(max_pack or len(idx), fit, len(idx))
        if here and not max_pack and device.type == "cpu" and cpu_pack_limit(cfg) < n:
            n = cpu_pack_limit(cfg)
            limited.add(n)
        parts = -(-len(idx) // n)  # ceil: as few packs as allowed, of near-equal size
        size = -(-len(idx) // parts)
        packs += [idx[i:i + size] for i in range(0, len(idx), size)]
    # in the order they train: a sweep trains a pack when its first job's result is asked for, in job order,
    # so a group split in two whose jobs alternate with another group's (depth=2,5 varied fastest) trains
    # its second part after the other group's first; the plan, the progress line and `vgsweep status`
    # (`the sweep: pack 2 of 4`) number them so
    packs.sort(key=lambda p: p[0])
    if limited:
        sizes = sorted(limited)
        log.info("on the CPU, packs of at most %s run%s here: every tensor of a training step within %d MiB (larger "
                 "ones slow each step down, BENCHMARKS.md); hydra.launcher.max_pack sets another size",
                 " or ".join(map(str, sizes)), "" if sizes == [1] else "s", CPU_TENSOR_BYTES // 2**20)
    return packs
