"""The order a run sees its training examples in, one epoch at a time.

By default every epoch is a uniform random permutation (`torch.randperm`). `train.shuffle_buffer=B`
instead reproduces TensorFlow's `Dataset.shuffle(B)` over the examples in file order, as the
original code of the first study fed its nets (`shuffle(batch_size * 2)`, reshuffled each epoch):
a buffer holds B examples; each step one of them, chosen uniformly, is emitted and its slot takes
the next example of the file; once the file is exhausted the buffer empties in random order. An
example can then appear no earlier than B steps before its place in the file, and consecutive
epochs see similar orders.

The buffer process is sequential, but it has a closed form, computed here on the device in one
pass: with s_t the slot chosen at step t < N - B, the example emitted at t is the one put into slot
s_t when it was last chosen (example B + t' for the last t' < t with s_t' = s_t), or example s_t if
the slot was never chosen before; the B examples left in the slots at the end come out in a
uniformly random order.
"""

from __future__ import annotations

import torch


def epoch_order(n: int, buffer: int | None, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) int64 on `device`: the order of one epoch, drawn from the run's own generator `g`."""
    if not buffer:
        return torch.randperm(n, generator=g, device=device)
    return buffered_order(n, buffer, g, device)


def buffered_order(n: int, buffer: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """TensorFlow's Dataset.shuffle(buffer) over 0..n-1 in order (module docstring)."""
    b = min(buffer, n)
    steps = n - b  # steps while the file still feeds the buffer
    slots = torch.randint(0, b, (steps,), generator=g, device=device)  # s_t
    t = torch.arange(steps, device=device)
    by_slot = torch.argsort(slots * max(steps, 1) + t)  # steps grouped by slot, in time order within a slot
    same = torch.zeros(steps, dtype=torch.bool, device=device)
    same[1:] = slots[by_slot[1:]] == slots[by_slot[:-1]]
    prev = torch.full((steps,), -1, dtype=torch.long, device=device)  # the last earlier step of the same slot
    prev[by_slot[1:]] = torch.where(same[1:], by_slot[:-1], -1)
    emitted = torch.where(prev >= 0, b + prev, slots)  # (steps,)
    last = torch.full((b,), -1, dtype=torch.long, device=device)
    last.scatter_reduce_(0, slots, t, reduce="amax")  # each slot's last step
    left = torch.where(last >= 0, b + last, torch.arange(b, device=device))  # (b,) what the buffer holds at the end
    return torch.cat([emitted, left[torch.randperm(b, generator=g, device=device)]])
