"""Figures of single runs (learning curves). Matplotlib with the Agg backend: no display needed."""

from __future__ import annotations

import atexit
import io
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool


def pyplot():
    """matplotlib.pyplot with the Agg backend, imported when first drawn with: a sweep's process draws
    its curves in worker processes (below), and the import is half a second on the way to its first
    pack (2-core machine)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(history: list[dict[str, float]], title: str):
    """Loss and accuracy per epoch, train and test, as one figure of two panels. Fixed margins, not a
    layout engine: one of these is drawn per run at the end of a sweep, and the engine's solve would
    be 40% of its cost (tick labels here are short: losses, percentages, epochs)."""
    from matplotlib.ticker import MaxNLocator

    epochs = range(1, len(history) + 1)
    fig, (ax_l, ax_a) = pyplot().subplots(1, 2, figsize=(7.0, 2.8))
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.17, top=0.87, wspace=0.36)
    splits = (("train", "-"), ("val", ":"), ("test", "--")) if "val_loss" in history[0] else (("train", "-"), ("test", "--"))
    marker = "o" if len(history) <= 20 else None  # a line of one or a few epochs is invisible or reads as smooth
    for split, style in splits:
        ax_l.plot(epochs, [h[f"{split}_loss"] for h in history], style, marker=marker, markersize=3, label=split)
        ax_a.plot(epochs, [100 * h[f"{split}_acc"] for h in history], style, marker=marker, markersize=3,
                  label=split)
    ax_l.set(xlabel="epoch", ylabel="cross-entropy loss")
    ax_a.set(xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_l, ax_a):
        # epochs are whole: no "0.96 ... 1.04"
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=1))
        if len(history) < 3:
            ax.set_xlim(0.5, len(history) + 0.5)  # room for a whole tick around one or two points
        ax.ticklabel_format(axis="y", useOffset=False)  # plain tick labels: no "+9.999e1" over a flat curve
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def close(fig) -> None:
    pyplot().close(fig)


# --- learning-curve PNGs drawn beside the sweep (and the results figures' files: write_figure) -------
# One PNG costs about 85 ms of Python (matplotlib's artists, ticks and text; 2-core machine), drawn for
# every run when its pack ends: 2.6 s of the 30-run paper grid, 13 s of it with 5 seeds, all on the
# sweep's critical path. Worker processes (not threads: drawing holds the GIL) draw a pack's curves at
# once while the sweep records the runs' other results, and their start-up happens during training.
POOL_MIN_CURVES = 4  # fewer curves than this in a pack are drawn in the process: a worker's start costs more
_pool: ProcessPoolExecutor | None = None
_pool_failed = False
# Set by an interrupted command: a task a worker takes after it returns at once instead of drawing. A future
# can be cancelled only until the pool hands it to a worker's queue (a worker's task and as many again besides),
# and those took seconds each to write after Ctrl-C (a results figure's PNG and PDF).
_stopping = None  # the parent's multiprocessing Event; a worker's own handle to it


def curve_png(history: list[dict[str, float]], title: str) -> bytes:
    """The learning-curve figure as PNG bytes (what MLflow's log_figure would store: savefig's defaults)."""
    fig = learning_curve(history, title)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        close(fig)


def curve_workers() -> int:
    """Worker processes for drawing: the cores this process may use (a SLURM job's, not the node's) but
    one, at most 8."""
    from vgsweep.host import cores

    return min(8, cores() - 1)


def _worker_init(stopping=None) -> None:
    global _stopping
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle; it shuts the pool down
    _stopping = stopping


def _unless_stopping(fn, *args):
    """fn(*args) in a worker, or None where the command that queued it has been interrupted since."""
    if _stopping is not None and _stopping.is_set():
        return None
    return fn(*args)


def _ready() -> None:
    """Submitted once per worker so that each starts and imports matplotlib now, during training."""
    pyplot()


def start_curve_pool(curves: int) -> None:
    """Start the drawing workers, for a pack that will draw `curves` PNGs, if they are worth it. Call
    before training: the workers' start-up overlaps it. Where processes cannot be started, curves are
    drawn in the process, as before."""
    global _pool, _pool_failed, _stopping
    n = curve_workers()
    if _pool is not None or _pool_failed or curves < POOL_MIN_CURVES or n < 1:
        return
    import multiprocessing

    try:
        # spawn, not fork: the sweep's process has CUDA and threads (metrics writer, heartbeat) by now
        ctx = multiprocessing.get_context("spawn")
        _stopping = ctx.Event()
        _pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_worker_init, initargs=(_stopping,))
        for _ in range(n):
            _pool.submit(_ready)
    except (OSError, RuntimeError):
        _pool_failed, _pool = True, None
        return
    atexit.register(stop_curve_pool)


def pool_running() -> bool:
    return _pool is not None


def stop_curve_pool(interrupted: bool = False) -> None:
    """Shut the drawing workers down, after the tasks they hold; `interrupted`: the tasks not begun yet are
    dropped (a file being written is finished, none is left cut short)."""
    global _pool
    if _pool is not None:
        if interrupted and _stopping is not None:
            _stopping.set()
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


class _Inline:
    """fn(*args) run in this process when its result is asked for (no pool, or the pool broke)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self):
        return self.fn(*self.args)

    def cancel(self) -> bool:
        """Not run yet, so never run: True."""
        return True


class _Pooled:
    def __init__(self, future: Future, fn, args):
        self.future, self.fn, self.args = future, fn, args

    def result(self):
        try:
            return self.future.result()
        except BrokenProcessPool:  # a worker died (killed, out of memory): run it here, and stop using the pool
            _give_up_pool()
            return self.fn(*self.args)

    def cancel(self) -> bool:
        """True if it had not started and never will; False if it runs or ran."""
        return self.future.cancel()


def _give_up_pool() -> None:
    global _pool_failed
    _pool_failed = True
    stop_curve_pool()


def in_worker(fn, *args):
    """Start fn(*args) in a drawing worker where the pool runs, else run it here when its result is asked
    for; `.result()` gives fn's value (its exceptions too). fn and args must pickle."""
    if _pool is None:
        return _Inline(fn, args)
    try:
        return _Pooled(_pool.submit(_unless_stopping, fn, *args), fn, args)
    except (BrokenProcessPool, RuntimeError):  # broken, or shut down by the interpreter's exit
        _give_up_pool()
        return _Inline(fn, args)


def draw_curve(history: list[dict[str, float]], title: str):
    """Start drawing a learning curve; `.result()` gives its PNG bytes (exceptions of the drawing too)."""
    return in_worker(curve_png, history, title)


# --- the results figures' files ---------------------------------------------------------------------
def write_figure(fig, png, pdf) -> None:
    """A results figure as PNG, with its title (the report, the UI), and as PDF without it (for a paper,
    whose caption says what the title said); then closed."""
    plt = pyplot()
    try:
        fig.savefig(png, dpi=200, bbox_inches="tight")
        title = fig._suptitle  # noqa: SLF001 - matplotlib >= 3.8 has get_suptitle(); 3.7 only this
        if title is not None:
            title.set_visible(False)
        fig.savefig(pdf, bbox_inches="tight")
    finally:
        plt.close(fig)


def write_pickled_figure(blob: bytes, png: str, pdf: str, rc: dict) -> None:
    """write_figure of a pickled figure, in a worker: with the rcParams it was drawn under (some, such as
    pdf.fonttype, are read when the file is written)."""
    import pickle

    with pyplot().rc_context(rc):
        write_figure(pickle.loads(blob), png, pdf)
