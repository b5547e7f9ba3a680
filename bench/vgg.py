"""Benchmark: the VGG study's model (VGG38 BN + RC, batch 100) in seconds per epoch of CIFAR-100's
47,500 training images, three ways, measured in one run on tensors of CIFAR's shape (content does
not change speed):

- packed: K runs as one program (vgsweep's trainer step: crops and flips on the device, grouped
  convolutions), at each --precision;
- one at a time: the same trainer with K = 1, K times;
- the course code's way: a torchvision DataLoader (RandomCrop(32, padding=4), RandomHorizontalFlip,
  ToTensor, Normalize; num_workers=--workers) feeding a plain nn.Module with torch.optim.Adam,
  K times.

    python bench/vgg.py --k 7 --steps 40 --precision fp32,bf16      # on the GPU (make bench-vgg)
    python bench/vgg.py --k 2 --steps 3 --model vgg08 --device cpu  # a CPU smoke

Prints seconds per epoch (steps timed after a warm-up, times 475), the ratios, peak device memory
per packed run, and what the report's seven rows x 100 epochs would take.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS_PER_EPOCH = 475  # 47,500 / 100
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cfgs_for(model: str, k: int, device: str, precision: str, images: int, graph: bool = True):
    from vgsweep.app import compose

    return [compose(["experiment=vgg_cifar100", f"model={model}", f"seed={s}", f"device={device}",
                     f"precision={precision}", "diagnostics.enabled=false", f"data.limit_train={images}",
                     "data.val_size=0", "data.limit_test=100", f"cuda_graph={str(graph).lower()}"]) for s in range(k)]


def synthetic(images: int, device: torch.device):
    """A CIFAR-shaped data set on the device (the trainer's Dataset), normalised as the study's."""
    from vgsweep.data.loader import Dataset, Split

    g = torch.Generator().manual_seed(0)
    x = (torch.randint(0, 256, (images, 3, 32, 32), generator=g).float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) \
        / torch.tensor(STD).view(3, 1, 1)
    y = torch.randint(0, 100, (images,), generator=g)
    black = -torch.tensor(MEAN) / torch.tensor(STD)
    split = Split(x.to(device), y.to(device))
    return Dataset("cifar100", split, Split(x[:100].to(device), y[:100].to(device)), None, 100, black.to(device))


def time_packed(cfgs, ds, steps: int) -> tuple[float, float]:
    """(seconds per step, peak device bytes per run) of vgsweep's trainer step for this pack. The peak
    is of memory reserved from building the pack to the last timed step (the CUDA graph's private
    pool included, which `max_memory_allocated` would not see), the shared data set not counted."""
    from vgsweep import trainer

    dev = torch.device(cfgs[0].device)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_reserved(dev)
    pack = trainer.Pack(cfgs, ds)
    perm = torch.stack([torch.randperm(pack.N, generator=g, device=dev) for g in pack.shuffle_g])
    full = max(pack.N // pack.B, 1)  # steps with a full batch
    with trainer.tf32(pack.precision == "tf32" and dev.type == "cuda"):
        for s in range(trainer.StepGraph.WARMUP + 2):  # warm-up: allocations, cuDNN's search, the graph's capture
            pack.step(s % full, perm)
        _sync(dev)
        t0 = time.perf_counter()
        for s in range(steps):
            pack.step(s % full, perm)
        _sync(dev)
    dt = (time.perf_counter() - t0) / steps
    peak = (torch.cuda.max_memory_reserved(dev) - base) / len(cfgs) if dev.type == "cuda" else float("nan")
    return dt, peak


def time_dataloader(model_cfg, images: int, steps: int, device: torch.device, workers: int) -> float:
    """Seconds per step of the course code's way: DataLoader with torchvision transforms, nn.Module, Adam."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    sys.path.insert(0, str(ROOT / "tests"))
    from test_vgg import Reference  # the course network in plain PyTorch (also the tests' reference)

    class Images(Dataset):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.x = rng.integers(0, 256, size=(images, 32, 32, 3), dtype=np.uint8)
            self.y = rng.integers(0, 100, size=images)
            self.tf = T.Compose([T.ToPILImage(), T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                                 T.ToTensor(), T.Normalize(MEAN, STD)])

        def __len__(self):
            return images

        def __getitem__(self, i):
            return self.tf(self.x[i]), int(self.y[i])

    net = Reference(model_cfg.model, 3, 100).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(Images(), batch_size=100, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    it, done, t0 = iter(loader), 0, None
    while done < steps + 2:
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        if done == 2:  # after the warm-up
            _sync(device)
            t0 = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
    _sync(device)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg38_bn_rc")
    ap.add_argument("--k", type=int, default=7, help="runs in the pack (the report has 7 rows)")
    ap.add_argument("--steps", type=int, default=40, help="steps timed after a warm-up (and the graph's capture)")
    ap.add_argument("--images", type=int, default=5000, help="synthetic training images on the device")
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the course code's way")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    a = ap.parse_args()
    device = torch.device(a.device)
    ds = synthetic(a.images, device)
    res = {"date": date.today().isoformat(), "torch": torch.__version__, "python": platform.python_version(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
           "model": a.model, "k": a.k, "steps": a.steps, "packed": {}}
    for prec in a.precision.split(","):
        if prec != "fp32" and device.type != "cuda":
            continue
        step, peak = time_packed(cfgs_for(a.model, a.k, a.device, prec, a.images), ds, a.steps)
        res["packed"][prec] = {"epoch_s": step * STEPS_PER_EPOCH, "peak_bytes_per_run": peak}
        print(f"packed K={a.k} {prec}: {step * STEPS_PER_EPOCH:.1f} s an epoch", flush=True)
    if device.type == "cuda":  # what the CUDA graph of the step is worth
        step, _ = time_packed(cfgs_for(a.model, a.k, a.device, "fp32", a.images, graph=False), ds, a.steps)
        res["packed"]["fp32, no CUDA graph"] = {"epoch_s": step * STEPS_PER_EPOCH, "peak_bytes_per_run": float("nan")}
        print(f"packed K={a.k} fp32, cuda_graph=false: {step * STEPS_PER_EPOCH:.1f} s an epoch", flush=True)
    one, _ = time_packed(cfgs_for(a.model, 1, a.device, "fp32", a.images), ds, a.steps)
    res["one_at_a_time_epoch_s"] = one * STEPS_PER_EPOCH * a.k
    print(f"one at a time (K=1, x{a.k}): {res['one_at_a_time_epoch_s']:.1f} s an epoch", flush=True)
    dl = time_dataloader(cfgs_for(a.model, 1, a.device, "fp32", a.images)[0], a.images, a.steps, device, a.workers)
    res["dataloader_epoch_s"] = dl * STEPS_PER_EPOCH * a.k
    print(f"DataLoader + nn.Module (x{a.k}): {res['dataloader_epoch_s']:.1f} s an epoch", flush=True)

    print(f"\n{res['device']}, torch {res['torch']}, {res['date']}; {a.model}, {a.k} runs, batch 100, "
          f"{STEPS_PER_EPOCH} steps an epoch ({a.steps} timed)")
    print("| way | seconds an epoch (all runs) | vs DataLoader | the 7-row study, 100 epochs |\n|---|---|---|---|")
    rows = [("DataLoader + nn.Module, one run at a time", res["dataloader_epoch_s"]),
            ("vgsweep, one run at a time", res["one_at_a_time_epoch_s"])]
    rows += [(f"vgsweep packed, {p}", r["epoch_s"]) for p, r in res["packed"].items()]
    for name, s in rows:
        study = s / a.k * 7 * 100
        print(f"| {name} | {s:.1f} | {res['dataloader_epoch_s'] / s:.1f}x | {study / 60:.0f} min |")
    from vgsweep.packing import bytes_per_run

    for p, r in res["packed"].items():
        if r["peak_bytes_per_run"] == r["peak_bytes_per_run"]:
            est = bytes_per_run(cfgs_for(a.model, 1, a.device, p, a.images)[0])
            r["estimate_bytes_per_run"] = est
            print(f"peak device memory reserved per packed run, {p}: {r['peak_bytes_per_run'] / 2**20:.0f} MiB "
                  f"(the packer's estimate, an upper bound: {est / 2**20:.0f} MiB)")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
