"""The CPU's packed layer: one matrix product per run (packed_linear) against one batched call (baddbmm).

The per-run products keep a run's numbers bit for bit the same alone and packed (MKL threads a batch
of K products differently from a single one); this prints what they cost, as a ratio to the batched
call measured in the same run: forward and backward of the paper's 2-layer net (784-512-512-10,
tanh) for a pack of K runs, with each run's own batch and with one batch shared by all.

    python bench/cpu_linear.py [--k 15] [--batch 1024] [--steps 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from vgsweep.families.base import packed_linear


def batched(b, h, W):
    return torch.baddbmm(b, h, W) if h.dim() == 3 else torch.matmul(h, W) + b


def step_seconds(f, x, Ws, bs, steps: int) -> float:
    best = float("inf")
    for _ in range(2):  # the first round warms up; the better of the two
        t = time.perf_counter()
        for _ in range(steps):
            h = x
            for W, b in zip(Ws, bs):
                h = torch.tanh(f(b, h, W))
            h.sum().backward()
        best = min(best, (time.perf_counter() - t) / steps)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    sizes = (784, 512, 512, 10)
    Ws = [torch.randn(a.k, i, o, generator=g).requires_grad_() for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [torch.randn(a.k, 1, o, generator=g).requires_grad_() for o in sizes[1:]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; K={a.k}, batch {a.batch}, 784-512-512-10")
    for shared in (False, True):
        x = torch.randn(a.batch, 784, generator=g) if shared else torch.randn(a.k, a.batch, 784, generator=g)
        base = step_seconds(batched, x, Ws, bs, a.steps)
        per_run = step_seconds(packed_linear, x, Ws, bs, a.steps)
        print(f"{'one shared batch' if shared else 'own batches':16s}  batched {base * 1e3:7.1f} ms/step  "
              f"per run {per_run * 1e3:7.1f} ms/step  ratio {per_run / base:.2f}")


if __name__ == "__main__":
    main()
