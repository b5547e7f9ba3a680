"""The sweep's own process on its host: the cores it may use, and CPython's cyclic garbage collector
over its life. A sweep's start-up makes a few million objects that live until exit (torch's,
MLflow's and Hydra's modules, one composed config per job), and the collector, at its usual
thresholds, walks them again and again while they are made; at exit it walks them all once more.
Measured on the paper grid's CPU smoke (2 cores, Python 3.11): about 1 s of the start-up and 1.4 s of
the interpreter's exit (BENCHMARKS.md).

`startup()` (the CLI, first thing) collects rarely until `training()` (the first pack) restores the
thresholds it found and freezes what start-up made: training keeps CPython's usual collector over what
it makes, so no cycle holding device memory lives longer than it would, and no collection walks the
start-up's objects again (the paper grid's CPU smoke, 30 runs of 3 epochs: the collections took
0.44-0.53 s instead of 0.80-1.05 s; the start-up's garbage left, frozen, was about 5,000 objects).
`at_exit()` (the CLI, last thing) freezes what is left, so the interpreter's exit does not walk it:
atexit handlers, logging's flush and finalisers still run.
"""

from __future__ import annotations

import gc
import os

STARTUP_THRESHOLDS = (50_000, 50, 100)  # gen0 allocations between collections, then gen1 and gen2 counts
_saved: tuple[int, int, int] | None = None


def startup() -> None:
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
        gc.set_threshold(*STARTUP_THRESHOLDS)


def training() -> None:
    global _saved
    if _saved is not None:
        gc.set_threshold(*_saved)
        _saved = None
        import sys

        if "triton" not in sys.modules:  # (at_exit says why)
            gc.freeze()  # what start-up made, out of every later collection's walk


def at_exit() -> None:
    """Only where the process ends next (the CLI's entry): what is frozen is never collected. Not once
    triton is loaded (torchvision imports it, e.g. to download a data set): its nanobind extension
    counts objects left uncollected at exit as leaks and prints dozens of lines about them."""
    import sys

    if "triton" not in sys.modules:
        gc.freeze()


def cores() -> int:
    """CPU cores this process may use: a SLURM job's or a taskset's, not the whole node's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
