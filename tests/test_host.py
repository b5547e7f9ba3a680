"""The host side of a sweep that is not training: the garbage collector's thresholds over a sweep's
life, and the learning curves drawn in worker processes."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import matplotlib.pyplot as plt
import pytest

from vgsweep import host, plots


def _history(n: int, shift: float) -> list[dict[str, float]]:
    return [{"train_loss": 2.0 / (e + 1) + shift, "test_loss": 2.1 / (e + 1) + shift,
             "train_acc": 1 - 0.9 / (e + 1) - shift, "test_acc": 0.97 - 0.9 / (e + 1) - shift} for e in range(n)]


def _inline(history, title) -> bytes:
    with plt.style.context("default"):  # a figure command in this process may have changed rcParams
        return plots.curve_png(history, title)


@pytest.fixture
def fresh_pool(monkeypatch):
    plots.stop_curve_pool()
    monkeypatch.setattr(plots, "_pool_failed", False)
    monkeypatch.setattr(plots, "curve_workers", lambda: 1)
    yield
    plots.stop_curve_pool()


def test_gc_thresholds_for_start_up_then_back_for_training(monkeypatch):
    before = gc.get_threshold()
    monkeypatch.setattr(host, "_saved", None)
    try:
        host.startup()
        assert gc.get_threshold() == host.STARTUP_THRESHOLDS != before
        host.startup()  # a second call does not save the start-up thresholds as the ones to restore
        frozen = gc.get_freeze_count()
        made = [[] for _ in range(1000)]  # what start-up made (lists: tracked by the collector), frozen by the first pack
        host.training()
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() >= frozen + len(made) or "triton" in sys.modules
        frozen = gc.get_freeze_count()
        host.training()  # and a second pack leaves them alone
        assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_the_exit_after_torchvision_says_nothing_of_leaks():
    """torchvision (a data set's download) loads triton, whose nanobind extension printed dozens of
    "nanobind: leaked ..." lines after the command's last line when at_exit froze the heap (and the first
    pack, training(), freezes what start-up made the same way)."""
    import subprocess
    import sys

    code = ("import gc, sys, torchvision; from vgsweep import host; host.startup(); host.training(); host.at_exit(); "
            "print('triton' in sys.modules, gc.get_freeze_count() > 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "leaked" not in proc.stderr, proc.stderr[-2000:]
    triton, frozen = proc.stdout.split()
    assert frozen == ("False" if triton == "True" else "True")  # frozen unless triton is loaded


def test_curves_drawn_by_workers_are_the_ones_drawn_here(fresh_pool):
    items = [(_history(5, 0.01 * i), f"run-{i}") for i in range(5)]
    plots.start_curve_pool(len(items))
    assert plots._pool is not None
    pending = [plots.draw_curve(h, t) for h, t in items]
    assert all(isinstance(p, plots._Pooled) for p in pending)
    for (h, t), p in zip(items, pending):
        assert p.result() == _inline(h, t), t
    assert len({p.result() for p in pending}) == len(items)


def test_few_curves_are_drawn_in_the_process(fresh_pool):
    plots.start_curve_pool(plots.POOL_MIN_CURVES - 1)
    assert plots._pool is None
    p = plots.draw_curve(_history(3, 0.0), "alone")
    assert isinstance(p, plots._Inline) and p.result() == _inline(_history(3, 0.0), "alone")


def test_a_killed_worker_does_not_lose_a_curve(fresh_pool):
    plots.start_curve_pool(plots.POOL_MIN_CURVES)
    assert plots.draw_curve(_history(2, 0.0), "warm").result()[:4] == b"\x89PNG"
    for pid in list(plots._pool._processes):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not plots._pool._broken and time.monotonic() < deadline:  # the pool notices its dead worker
        time.sleep(0.05)
    h = _history(4, 0.02)
    assert plots.draw_curve(h, "after").result() == _inline(h, "after")
    assert plots._pool is None and plots._pool_failed  # later curves are drawn here, without a pool
    plots.start_curve_pool(10)
    assert plots._pool is None


def test_an_interrupted_command_drops_what_its_workers_have_not_begun(fresh_pool, tmp_path):
    """Ctrl-C: the drawings queued and not begun are dropped, those in the workers' own queue too (a future
    can no longer be cancelled once the pool hands it to them: Python's exit wrote every queued figure, 14
    to 18 s of `vgsweep figures` after Ctrl-C); one being drawn is finished."""
    from pathlib import Path

    plots.start_curve_pool(plots.POOL_MIN_CURVES)
    plots.in_worker(time.sleep, 0).result()  # the worker has started
    busy = plots.in_worker(time.sleep, 3)  # and is busy past the interruption below
    queued = [plots.in_worker(Path.write_text, tmp_path / f"{i}.txt", "drawn") for i in range(6)]
    deadline = time.monotonic() + 2
    while not (busy.future.running() and queued[0].future.running()) and time.monotonic() < deadline:
        time.sleep(0.01)  # the pool has handed the worker its task and queued the next beside it
    assert queued[0].future.running()
    plots.stop_curve_pool(interrupted=True)
    assert busy.result() is None and plots._pool is None
    assert not list(tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())
    assert any(q.future.cancelled() for q in queued) and not all(q.future.cancelled() for q in queued)
    # a pool started afterwards draws again
    plots.start_curve_pool(plots.POOL_MIN_CURVES)
    assert plots.in_worker(Path.write_text, tmp_path / "later.txt", "drawn").result() == 5


def test_the_sweeps_process_leaves_pyplot_to_its_drawing_workers():
    """Importing plots and starting the drawing workers import no pyplot in the sweep's process (half a
    second on the way to its first pack, 2-core machine); each worker imports it when it starts, during
    training; a curve drawn in the process (a pack too small for workers) imports it then."""
    import subprocess
    import sys

    code = ("import sys; from vgsweep import plots; plots.curve_workers = lambda: 1; plots.start_curve_pool(8); "
            "print('matplotlib.pyplot' in sys.modules, plots._pool.submit(plots._ready).result() is None and "
            "plots._pool.submit(eval, \"'matplotlib.pyplot' in __import__('sys').modules\").result()); "
            "plots.stop_curve_pool(); plots.curve_png([{'train_loss': 1.0, 'test_loss': 1.0, 'train_acc': 0.5, "
            "'test_acc': 0.5}], 't'); print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "True"]


def test_the_results_figures_written_by_a_worker_are_the_ones_written_here(fresh_pool, monkeypatch, tmp_path):
    """figures.build hands each figure, pickled, to a drawing worker, which writes its PNG and PDF while this
    process draws the next (about half of `vgsweep report`'s time was writing them): the same PNG bytes and
    PDF text as written here, and a file a worker cannot write fails the build, after every other file has
    been written."""
    import itertools

    from tests.conftest import pdf_text
    from tests.test_table import _figures_of
    from vgsweep.results import figures

    rows = [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "status": "FINISHED", "study": "agarap2019",
             "model.family": "mlp", "diagnostics.enabled": "False", "data.name": "mnist", "model.depth": "2",
             "activation.name": act, "regime.name": regime, "seed": str(seed), "optimizer.lr": "0.0003",
             "metric:test_acc": 0.5 + 0.01 * seed + 0.1 * (act == "tanh")}
            for i, (act, regime, seed) in enumerate(itertools.product(("relu", "tanh"), ("baseline", "gna"), (0, 1)))]
    sent = []
    real = plots.in_worker
    monkeypatch.setattr(plots, "in_worker", lambda fn, *args: sent.append(args[1]) or real(fn, *args))
    pooled, drawn = _figures_of(monkeypatch, tmp_path / "pooled", rows)
    assert plots._pool is not None and len(sent) == 4  # activations, results, deltas, curves_d2
    for kind, fig in drawn.items():  # the same figures written here
        with plt.rc_context(figures.RC):
            plots.write_figure(fig, tmp_path / f"{kind}.png", tmp_path / f"{kind}.pdf")
        assert (tmp_path / f"{kind}.png").read_bytes() == (tmp_path / "pooled" / f"{kind}.png").read_bytes(), kind
        assert pdf_text(tmp_path / f"{kind}.pdf") == pdf_text(tmp_path / "pooled" / f"{kind}.pdf"), kind
    assert sorted(drawn) == ["deltas", "results"] and {p.name for p in pooled} >= {"results.png", "deltas.pdf"}

    blocked = tmp_path / "blocked"
    (blocked / "results.png").mkdir(parents=True)  # a folder where the PNG goes
    with pytest.raises(IsADirectoryError):
        _figures_of(monkeypatch, blocked, rows)
    assert plots._pool is not None and figures._writing == []  # waited for, every one
    assert (blocked / "deltas.pdf").exists() and (blocked / "curves_d2.pdf").exists()

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(figures, "write_data", boom)  # the build stops after its figures went to the workers
    with pytest.raises(RuntimeError, match="boom"):  # its own error, not a worker's (the folder is still there)
        _figures_of(monkeypatch, blocked, rows)
    assert figures._writing == []
