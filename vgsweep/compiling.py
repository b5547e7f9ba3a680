"""`compile=true`: a pack's training step through torch.compile.

Two functions of the step are compiled, once per pack shape: the forward pass with the loss and the
correct count (its backward comes compiled with it, from AOTAutograd), and the update (gradient noise
added, weight decay, the optimiser's step: `optim.fused_step`). What stays outside: the batch's
gather and augmentation, the per-run noise draws (each run's own generator, so its stream is the
one it has alone), the gradient's assembly into the flat (K, P) buffer. On CUDA the compiled step
is then captured as a CUDA graph like the eager one (`cuda_graph=true`).

What it is for: on a GPU a small MLP's step is ~100-240 short element-wise kernels (BENCHMARKS.md);
the compiler fuses their chains into a few. What it costs: compiling each pack shape (seconds to a
minute, cached on disk by PyTorch across processes), and the numbers: a fused kernel rounds
differently from the eager kernels, so a run's numbers differ from `compile=false` in the last
bits and then as chaos makes them (tests bound it). A run alone and the same run packed still run
the same arithmetic per element.

The backend is PyTorch's default (`inductor`: Triton on the GPU, C++ on the CPU); the environment
variable VGSWEEP_COMPILE_BACKEND names another (the tests use `aot_eager`: the same graph capture
and autograd, no code generation). If compiling fails, the pack says so once and runs that part
eagerly.
"""

from __future__ import annotations

import logging
import os

import torch

from vgsweep.optim import fused_step

log = logging.getLogger(__name__)

BACKEND_ENV = "VGSWEEP_COMPILE_BACKEND"
# compiled functions are shared by every pack of a process; each pack shape (and pack size) is one
# more entry of their cache, and a long sweep has many: past the limit torch would quietly run eagerly
CACHE_ENTRIES = 256


def backend() -> str:
    return os.environ.get(BACKEND_ENV) or "inductor"


def forward_loss(model, xb: torch.Tensor, yb: torch.Tensor, autocast: bool):
    """The step's forward pass: per-run losses (K,) and correct counts (K,)."""
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=autocast, cache_enabled=False):
        logits = model.forward(xb, train=True)  # (K, B, classes)
    losses = model.loss(logits, yb)
    correct = (logits.argmax(-1) == yb).sum(1)
    return losses, correct


def _raise_cache_limits() -> None:
    import torch._dynamo.config as dc

    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(dc, name):
            setattr(dc, name, max(getattr(dc, name), CACHE_ENTRIES))


def _reason(e: BaseException) -> str:
    """The compiler's own error (torch wraps it: BackendCompilerFailed and the like), in one line."""
    while True:
        inner = getattr(e, "inner_exception", None) or e.__cause__
        if inner is None or inner is e:
            break
        e = inner
    first = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


class _Part:
    """One compiled function; on a compile error it says so once and runs `eager` from then on."""

    def __init__(self, name: str, compiled, eager):
        self.name, self.compiled, self.eager, self.failed = name, compiled, eager, None

    def __call__(self, *args):
        if self.failed is None:
            try:
                return self.compiled(*args)
            except torch.cuda.OutOfMemoryError:
                raise  # not the compiler's: the pack is split and retried (sweep.run_isolated)
            except Exception as e:  # noqa: BLE001 - compiling failed: this part runs eagerly, said once
                self.failed = _reason(e)
                log.warning("compile=true: compiling the step's %s failed (%s); this pack runs it without "
                            "compiling", self.name, self.failed)
        return self.eager(*args)


_COMPILED: dict[str, object] = {}


def _compiled(fn):
    """fn compiled, once per process (its cache holds every pack shape compiled so far)."""
    if fn.__name__ not in _COMPILED:
        _raise_cache_limits()
        _COMPILED[fn.__name__] = torch.compile(fn, backend=backend(), dynamic=False, fullgraph=True)
    return _COMPILED[fn.__name__]


class CompiledStep:
    """The compiled parts of one pack's step."""

    def __init__(self):
        self.forward = _Part("forward pass", _compiled(forward_loss), forward_loss)
        self.update = _Part("update", _compiled(fused_step), fused_step)

    @property
    def failed(self) -> list[str]:
        return [f"{p.name}: {p.failed}" for p in (self.forward, self.update) if p.failed]
