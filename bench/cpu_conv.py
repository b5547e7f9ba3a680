"""The CPU's packed convolution: one convolution per run (PackedVGG on the CPU) against one grouped call.

The per-run convolutions keep a VGG run's numbers bit for bit the same alone and packed (oneDNN's
grouped convolution sums in another order than a single one); this prints what they cost, as a ratio
to the grouped call measured in the same run: forward and backward of a stack of VGG38's 3x3, 32-filter
convolutions at 32x32 (leaky ReLU between), for a pack of K runs, through PackedVGG._conv both ways.

    python bench/cpu_conv.py [--k 6] [--batch 100] [--layers 4] [--steps 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from vgsweep.families.vgg import PackedVGG


class Convs:
    """What PackedVGG._conv needs of its model: `grouped`, the way it takes."""

    def __init__(self, grouped: bool):
        self.grouped = grouped

    conv = PackedVGG._conv


def step_seconds(grouped: bool, x, ws, steps: int) -> float:
    model = Convs(grouped)
    best = float("inf")
    for _ in range(2):  # the first round warms up; the better of the two
        t = time.perf_counter()
        for _ in range(steps):
            h = x
            for w in ws:
                h = F.leaky_relu(model.conv(h, w, None), 0.01)
            h.sum().backward()
        best = min(best, (time.perf_counter() - t) / steps)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.k, a.batch, 32, 32, 32, generator=g).requires_grad_()
    ws = [torch.randn(a.k, 32, 32, 3, 3, generator=g).mul_(0.06).requires_grad_() for _ in range(a.layers)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; K={a.k}, batch {a.batch}, "
          f"{a.layers} convolutions 32->32 3x3 at 32x32, forward and backward")
    base = step_seconds(True, x, ws, a.steps)
    per_run = step_seconds(False, x, ws, a.steps)
    print(f"grouped {base * 1e3:7.1f} ms/step  per run {per_run * 1e3:7.1f} ms/step  ratio {per_run / base:.2f}")


if __name__ == "__main__":
    main()
