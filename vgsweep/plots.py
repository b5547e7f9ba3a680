"""Figures of single runs (learning curves). Matplotlib with the Agg backend: no display needed."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def learning_curve(history: list[dict[str, float]], title: str):
    """Loss and accuracy per epoch, train and test, as one figure of two panels. Fixed margins, not a
    layout engine: one of these is drawn per run at the end of a sweep, and the engine's solve would
    be 40% of its cost (tick labels here are short: losses, percentages, epochs)."""
    epochs = range(1, len(history) + 1)
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(7.0, 2.8))
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
    plt.close(fig)
