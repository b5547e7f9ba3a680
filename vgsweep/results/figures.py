"""The studies' figures, regenerated from MLflow alone: `vgsweep figures` (make figures).

Each study lists its figures (studies.py); the kinds:

- results: the table as a figure: the primary metric of every cell, each seed a dot, mean ± std,
  and the published value (a hollow diamond) where the table sets it beside the cell (the runs
  were made with the published setting); one figure for all the runs, a setting swept beside the
  study's axes a marker shape of its own (the other figures come one per value of such a setting);
- deltas: the same places, each cell's delta to its baseline (the table's) with its 95% interval
  paired by seed, the published delta a hollow diamond;
- curves: training (and validation) loss and accuracy per epoch, mean over seeds with a ±1 std band
  where there are several seeds; loss on a log axis where its curves span more than LOG_LOSS_SPAN;
- gradient_flow: mean |g| of each weight layer (averaged over epochs and seeds), input side first: a
  healthy net keeps it level, a vanishing one drops toward the input;
- gradient_flow_epochs: the same per epoch (one line per epoch, layer names on the x axis), one
  panel per model, as the VGG report plots it;
- gradient_distribution: the distribution of log10|g| of the first layer's weights over the
  epochs, before (top) and after (bottom) the added noise;
- activations: the activation functions and their derivatives;
- search: a hyper-parameter search's trials, the objective against each searched setting.

Each is written as PNG and PDF into results/figures/<experiment>/, sized for a paper's column
(3.5 in) or page (7 in) width; the PNG carries the title, the PDF leaves it to its caption in
figures.tex beside them (a LaTeX `figure` per PDF, with a label). Beside them, the numbers the curves
and the gradient figures are drawn from, to plot them another way: curves.csv.gz (every run's per-epoch
metrics) and gradients.csv.gz (every run's per-layer gradient statistics per epoch). The figures are
logged to the experiment as the artifacts of one MLflow run named `figures` (replaced each time).
"""

from __future__ import annotations

import functools
import logging
import pickle
import re
import sys
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.lines import Line2D

from vgsweep import plots, tracking
from vgsweep.config import VerdictConfig, command_line, higher_is_better, home_path
from vgsweep.diagnostics import GRAD_COLS, first_to_last
from vgsweep.jobs import compact, shown
from vgsweep.plots import pyplot
from vgsweep.results import reader
from vgsweep.results.studies import ACTIVATIONS, STUDIES, Axis, Figure, Study, study_for

log = logging.getLogger(__name__)
plt = pyplot()

COLUMN_IN, PAGE_IN = 3.5, 7.0
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
      "ytick.labelsize": 7, "lines.linewidth": 1.2, "axes.spines.top": False, "axes.spines.right": False,
      # PDFs with TrueType (Type 42) fonts, not matplotlib's default Type 3, which journals' checks
      # (IEEE PDF eXpress, ACM) refuse and editors cannot edit
      "pdf.fonttype": 42, "ps.fonttype": 42}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f"]
FIXED = {"baseline": "#444444", "gna": "#1f77b4", "gna_bn": "#d62728", "logistic": "#1f77b4", "tanh": "#ff7f0e",
         "relu": "#2ca02c", "leaky_relu": "#9467bd", "swish": "#8c564b"}
METRIC_NAMES = {"train_loss": "training loss", "train_acc": "training accuracy (%)", "val_loss": "validation loss",
                "val_acc": "validation accuracy (%)", "test_loss": "test loss", "test_acc": "test accuracy (%)"}
# a loss row whose curves span more than this factor is drawn on a log axis: one inflated first epoch
# (27 for swish at init gain 4, against 0.01 at the end) flattens every other curve on a linear one
LOG_LOSS_SPAN = 10.0
LOG_TICKS_MAX = 12  # a log axis labels every decade up to this many, then every second, third, ...
KINDS = {  # kind -> (heading, what it shows): the report's sections and the captions of figures.tex, in this order
    "results": ("Results", "The table's primary metric per cell: each seed a dot, mean ± std, the published value a "
                           "hollow diamond where the runs were made with its setting."),
    "deltas": ("Deltas to the baseline", "Each cell's difference to its baseline with the 95% interval, paired by "
                                         "seed; the published difference a hollow diamond."),
    "curves": ("Learning curves", "Loss and accuracy per epoch (mean ± std over seeds where there are several)."),
    "gradient_flow_epochs": ("Gradient flow per epoch", "Mean |gradient| of each layer's weights, one line per epoch."),
    "gradient_flow": ("Gradient flow", "Mean |gradient| of each layer's weights, input side first: level when "
                                       "healthy, falling toward the input when vanishing."),
    "gradient_ratio": ("Vanishing across depth", "The first weight layer's mean |gradient| over the last layer's "
                                                 "(mean over epochs) at each depth: the vanishing verdict's ratio, "
                                                 "its threshold dashed; each seed a dot, the line through their "
                                                 "geometric mean."),
    "gradient_distribution": ("Gradient distribution over training",
                              "log10 |g| of the first layer's weights per epoch, before and after the added noise "
                              "(where a run has it)."),
    "search": ("Search", "Every trial's objective against each searched setting (a trial run over several seeds: their "
                         "mean, a bar from the lowest to the highest); each group's best ringed."),
    "activations": ("Activation functions", "The activations and their derivatives (logistic's is at most 0.25)."),
}


def kind_of(stem: str) -> str | None:
    """A figure file's kind: gradient_flow_epochs for gradient_flow_epochs, gradient_flow for
    gradient_flow_d5_init-he and for the VGG study's plain gradient_flow."""
    return max((k for k in KINDS if stem == k or stem.startswith(k + "_")), key=len, default=None)


def _finished(ended: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs of reader.runs_frame's ended ones, as runs_frame reads them alone (no column that
    only the others have: a metric of the failed runs only)."""
    return ended if ended.empty else ended[ended["status"] == "FINISHED"].dropna(axis=1, how="all")


def load_runs(ended: pd.DataFrame, study: Study) -> pd.DataFrame:
    """FINISHED runs of the ended ones (reader.runs_frame), one per config (reader.one_per_config: the
    newest), with the study's axes as columns (by label)."""
    df = _finished(ended)
    if df.empty:
        return df
    df = df[df.index.isin(reader.one_per_config(df).index)]  # in the store's order: newest first
    for a in study.all_axes:
        df[a.label] = df[a.key] if a.key in df else ""
    df["seed"] = df["seed"].astype(int)
    df["diagnostics"] = df["diagnostics.enabled"].eq("True") if "diagnostics.enabled" in df else True
    return df


def load_unfinished(ended: pd.DataFrame, study: Study) -> pd.DataFrame:
    """The configs with no FINISHED run among the ended ones (reader.runs_frame; the run that speaks for
    them, reader.one_per_config, FAILED or was KILLED), with the study's axes as columns (by label), as
    load_runs gives the finished ones."""
    df = ended
    if df.empty:
        return df
    df = reader.one_per_config(df)
    df = df[df["status"] != "FINISHED"].copy()
    for a in study.all_axes:
        df[a.label] = df[a.key] if a.key in df else ""
    return df


def _not_drawn(failed: pd.DataFrame, study: Study, spec: Figure, by, extra: tuple, act: str | None = None) -> str:
    """A figure's line naming the configs it would draw that have no FINISHED run (failed or killed: a
    diverging net, say), so that a figure without them does not read as if they were never run: `Not
    drawn, no finished run: relu baseline (failed: seed 0), swish gna (failed: seeds 0, 2)`. "" when none."""
    if failed.empty:
        return ""
    f = failed if by is None else failed[failed[spec.by].astype(str) == str(by)]
    if act is not None:
        f = f[f["activation"].astype(str) == act]
    if extra and not f.empty:
        params = reader.blank_inert(reader.fill_neutral(_params(f, study)), {a.key for a in study.all_axes})
        f = f[[all(str(params.at[i, k]) in (v, "") if k in params else False for k, v in extra) for i in f.index]]
    if f.empty:
        return ""
    labels = tuple(lab for lab in spec.panel + spec.x + spec.line if lab != "metric" and lab in f and lab != spec.by)
    said: dict[str, tuple[set, list]] = {}
    for _, r in f.iterrows():
        name = " ".join(f"{r[lab]}-layer" if lab == "depth" else _name((lab,), (str(r[lab]),)) for lab in labels
                        if str(r[lab]) != "").strip() or r.run_name
        states, seeds = said.setdefault(name, (set(), []))
        states.add("failed" if r.status == "FAILED" else "killed")
        seeds.append(str(r["seed"]))

    def seeds_of(seeds: list) -> str:
        ss = sorted(set(seeds), key=int)
        return f"seed{'s' if len(ss) > 1 else ''} {', '.join(ss)}"

    return "Not drawn, no finished run: " + ", ".join(
        f"{name} ({' or '.join(sorted(states))}: {seeds_of(seeds)})" for name, (states, seeds) in said.items())


def _note(fig, line: str) -> None:
    """A line below the figure's title (and so in its caption in figures.tex)."""
    t = fig._suptitle  # noqa: SLF001 - as _save
    if line and t is not None:
        width = int(fig.get_figwidth() * 72 / (0.6 * t.get_fontsize()))  # characters across the figure
        t.set_text(f"{t.get_text()}\n{textwrap.fill(line, width, break_long_words=False)}")


def _axis(study: Study, label: str):
    return next(a for a in study.all_axes if a.label == label)


def _values(df: pd.DataFrame, study: Study, labels: tuple[str, ...]) -> list[tuple]:
    """The combinations of these axes present in df, in the study's order."""
    from vgsweep.results.table import _order

    if not labels:
        return [()]
    combos = list(dict.fromkeys(tuple(r) for r in df[list(labels)].itertuples(index=False)))
    orders = [_order(df[lab], _axis(study, lab)) for lab in labels]
    return sorted(combos, key=lambda c: [orders[i].index(v) for i, v in enumerate(c)])


def _short(key: str) -> str:
    """A setting's name in a file name: its last part, the group where that is `name` (init.name: init)."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def _in_file_name(value) -> str:
    """A setting's value in a file name: a list of widths compact (jobs.compact: `16x40` for forty widths
    of 16; a number keeps every digit, two trials' rates apart), characters other than letters,
    digits, `.`, `+` and `-` as `-` (`[512, 512]`: `512-512`); past 60 of them cut, with a short hash of
    the value that keeps apart two it would make one. The value as written made a name of 5,000 characters
    for a 1000-layer net's widths, which no file system takes (OSError: no figure after it written)."""
    import hashlib

    text = re.sub(r"[^\w.+-]+", "-", compact(value)).strip("-") or "-"
    if len(text) <= 60:
        return text
    return text[:51] + "-" + hashlib.sha256(str(value).encode()).hexdigest()[:8]


def _name(labels: tuple[str, ...], combo: tuple) -> str:
    return " ".join(f"{v}" if lab in ("model", "regime", "activation", "dataset") else
                    f"{lab.removesuffix('.name')}={v}" for lab, v in zip(labels, combo) if v != "")  # "": inert


def _select(df: pd.DataFrame, labels: tuple[str, ...], combo: tuple) -> pd.DataFrame:
    for lab, v in zip(labels, combo):
        df = df[df[lab] == v]
    return df


def _color(key: str, i: int) -> str:
    return FIXED.get(key, PALETTE[i % len(PALETTE)])


# ten of each, so that a setting swept beside the regimes with up to ten values (momentum 0, 0.5, 0.9, 0.95,
# 0.99) draws no two series alike: with four, its fifth value's series looked like its first's
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 3)), (0, (3, 1, 1, 1, 1, 1, 1, 1)),
              (0, (6, 2, 2, 2)), (0, (2, 1)))
MARKERS = ("o", "s", "^", "v", "P", "X", "<", ">", "h", "*")  # not "D": the published value's diamond


def _style(lines: list[tuple], line: tuple, styles: tuple = LINESTYLES):
    """A line keyed on several axes: its colour follows the last axis, its dash (or marker, with
    styles=MARKERS) the others' values (e.g. double softmax False solid, True dashed), so no two
    lines look alike."""
    prefixes = list(dict.fromkeys(x[:-1] for x in lines))
    return styles[prefixes.index(line[:-1]) % len(styles)] if len(line) > 1 else styles[0]


def _stem(fig: Figure, by_value) -> str:
    suffix = "" if by_value is None else (f"_d{by_value}" if fig.by == "depth" else f"_{by_value}")
    return fig.kind + suffix


def _one_paragraph(title: str) -> str:
    """A figure's title as its caption's text: the line _note put below it follows as a sentence."""
    head, _, note = title.partition("\n")
    return f"{head}. {' '.join(note.split())}" if note else head


# Writing a figure's PNG and PDF is about half of `vgsweep report`'s time (25 of 55 s for 225 runs, 2
# cores). A drawing worker (plots.in_worker) writes them from the pickled figure, which renders to the same
# bytes, while this process draws the next; _written waits for them before anything reads the files.
_writing: list = []


def _save(fig, out: Path, name: str, captions: dict[Path, tuple[str, float]]) -> list[Path]:
    """The figure as PNG (with its title: the report, the UI) and as PDF for a paper, whose caption
    in figures.tex says what the title said (captions: the PDF's title and width in inches)."""
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    title = fig._suptitle  # noqa: SLF001 - matplotlib >= 3.8 has get_suptitle(); 3.7 only this
    captions[paths[1]] = (_one_paragraph(title.get_text()) if title is not None else "", fig.get_figwidth())
    blob = None
    if plots.pool_running():
        try:
            blob = pickle.dumps(fig)
        except Exception as e:  # noqa: BLE001 - an artist that does not pickle: written here, as without workers
            log.debug("figure %s written in this process: %s", name, e)
    if blob is None:
        plots.write_figure(fig, paths[0], paths[1])
    else:
        plt.close(fig)
        _writing.append(plots.in_worker(plots.write_pickled_figure, blob, str(paths[0]), str(paths[1]), RC))
    return paths


def _written(failed: bool = False) -> None:
    """Wait for the figures the workers write; the first error of one is raised, after all have ended.
    failed: the build stopped (an error, Ctrl-C): the figures not started are dropped, and the workers'
    errors are not raised over the build's own. Each leaves the list once ended, so a wait that Ctrl-C cuts
    short leaves the rest to the build's `_written(failed=True)`; that drops every one not started before it
    waits for any (one by one, the workers took the next while it waited: Ctrl-C, then 15 to 30 s of
    figures written)."""
    if failed:
        _writing[:] = [p for p in _writing if not p.cancel()]
    errors = []
    while _writing:
        try:
            _writing[0].result()
        except Exception as e:  # noqa: BLE001 - raised below, once every file has been waited for
            errors.append(e)
        _writing.pop(0)
    if errors and not failed:
        raise errors[0]


def write_latex(out: Path, experiment: str, captions: dict[Path, tuple[str, float]]) -> Path:
    """out/figures.tex: each PDF of the experiment in a `figure` with its caption (the PNG's title and
    what the kind shows) and a label fig:<experiment>-<name>; page-wide figures in `figure*` (both
    columns of a two-column paper, a plain figure in one column); a figure wider than the line is
    scaled down to it, never up."""
    from vgsweep.results.table import FIT_MACRO, TEX_PATH_IMPOSSIBLE, tex, tex_path_line

    root = out.parent.as_posix()
    path = out / "figures.tex"
    if any(c in TEX_PATH_IMPOSSIBLE for c in root + out.name):  # said where it is made, and where it is compiled
        log.warning("%s: a brace or backslash in its folder's path, which LaTeX cannot read in a file name: it "
                    "stops LaTeX with that message; move the figures to another folder (--out)", path)
        path.write_text("\\errmessage{vgsweep figures.tex: the figures' folder has a brace or a backslash in its path, "
                        "which LaTeX cannot read in a file name: make the figures with another --out}\n")
        return path
    lines = [f"% vgsweep figures of experiment {experiment} for a paper: \\input this file; needs \\usepackage{{graphicx}}.",
             "% \\includegraphics reads paths from the main document's folder: where the figures are elsewhere from it,",
             "% define \\vgsweepfigures (the folder above this one's) before the first \\input.",
             tex_path_line("", root, define=r"\vgsweepfigures"), FIT_MACRO, ""]
    order = list(KINDS)
    for pdf, (title, width) in sorted(captions.items(), key=lambda c: order.index(kind_of(c[0].stem))):
        heading, what = KINDS[kind_of(pdf.stem)]
        # the title without what the bold heading says already ("Gradient flow, ...") or the experiment's name
        rest = title.removeprefix(f"{experiment}: ")
        rest = rest[len(heading):].lstrip(",: ") if rest.lower().startswith(heading.lower()) else rest
        lead = r"\textbf{" + tex(heading) + (":} " + tex(rest.rstrip(".")) + "." if rest else ".}")
        env = "figure*" if width > COLUMN_IN + 0.5 else "figure"
        lines += [rf"\begin{{{env}}}[htbp]", r"\centering",
                  tex_path_line(r"\vgsweepfit{\includegraphics{", r"\vgsweepfigures/" + f"{out.name}/{pdf.name}", "}}"),
                  r"\caption{" + lead + " " + tex(what) + "}",
                  r"\label{" + re.sub(r"[^\w.:-]", "-", f"fig:{experiment}-{pdf.stem}", flags=re.A) + "}",
                  rf"\end{{{env}}}", ""]
    path.write_text("\n".join(lines))
    return path


BLANK = "\0"  # a legend place left empty


def _legend_order(keys: tuple[str, ...], lines: list[tuple]) -> tuple[list[str], int]:
    """_legend_below's `order` and `group` for lines named by these settings: their names in the study's
    order, and how many values the last setting takes where there are several settings."""
    return [_name(keys, line) for line in lines], (len({line[-1] for line in lines}) if len(keys) > 1 else 0)


def _legend_below(fig, axes, order: list[str] | tuple = (), group: int = 0) -> None:
    """One legend for the figure, under the panels, where it covers no line; its entries in `order` (the
    lines' names in the study's order: a panel without the first line drew it later), others after.
    Entries that do not fit one row make a grid of equal columns, which matplotlib fills top to bottom:
    a column per value of the lines' leading settings where `group` (how many values their last setting
    takes) allows, so that a row reads across one value of the last (columns of two and one, read by
    rows, ran `gain=1.0 baseline, gain=2.0 baseline, gain=2.0 gna, ...`); `published` and `best` a
    column of their own at the end."""
    seen: dict[str, object] = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if not seen:
        return
    rank = {lab: i for i, lab in enumerate(order)}
    seen = dict(sorted(seen.items(), key=lambda kv: rank.get(kv[0], len(rank))))  # stable: the rest as drawn
    extras = [lab for lab in ("published", "best") if lab in seen]  # after the runs' own, whichever panel drew them
    runs = [lab for lab in seen if lab not in extras]
    # as many columns as fit the page: an entry is its text (7 pt, about 0.055 in a character) and its key
    most = max(1, min(5, int(fig.get_figwidth() // (max(map(len, seen)) * 0.055 + 0.45))))
    labels, ncol = runs + extras, len(seen)
    if len(seen) > most and runs:
        room = max(1, most - (1 if extras else 0))
        per = -(-len(runs) // room)  # the fewest rows that fit, the last column short
        if group > 1 and len(runs) % group == 0 and len(runs) // group <= room:
            per = group
        elif exact := [n for n in (per, per + 1) if len(runs) % n == 0]:
            per = exact[0]
        per = max(per, len(extras))
        cols = [runs[i:i + per] for i in range(0, len(runs), per)] + ([extras] if extras else [])
        labels, ncol = [lab for c in cols for lab in c + [BLANK] * (per - len(c))], len(cols)
        seen[BLANK] = Line2D([], [], linestyle="none")  # a place left empty: the columns even
    fig.legend([seen[lab] for lab in labels], ["" if lab == BLANK else lab for lab in labels],
               loc="outside lower center", ncol=ncol, frameon=False)


def fig_activations(out: Path, captions: dict[Path, tuple[str, float]]) -> list[Path]:
    import torch

    from vgsweep.activations import ACTIVATIONS as F, DERIVATIVES

    z = torch.linspace(-6, 6, 601)
    fig, (a, b) = plt.subplots(1, 2, figsize=(COLUMN_IN * 1.5, 1.9), constrained_layout=True)
    for name in ACTIVATIONS:
        ls = "--" if name == "leaky_relu" else "-"  # it lies on relu for z > 0
        a.plot(z, F[name](z, 0.2), ls, color=FIXED[name], label=name)
        b.plot(z, DERIVATIVES[name](z, 0.2), ls, color=FIXED[name], label=name)
    a.set(xlabel="z", ylabel="f(z)", title="activation", ylim=(-1.5, 3))
    b.set(xlabel="z", ylabel="f'(z)", title="derivative", ylim=(-0.1, 1.2))
    for ax in (a, b):
        ax.axhline(0, color="k", lw=0.4)
        ax.grid(alpha=0.3)
    b.legend(frameon=False, loc="upper left")
    return _save(fig, out, "activations", captions)


class _LogPlain(ticker.LogFormatter):
    """matplotlib's choice of which log ticks to label, written as plain numbers: 0.01, 0.4, 3 (not 1e-02)."""

    def __call__(self, x, pos=None):
        # 1e-05 as 0.00001; a decade computed as 0.09999999999999999 (matplotlib < 3.8) as 0.1
        return np.format_float_positional(float(f"{x:.6g}"), trim="-") if super().__call__(x, pos) else ""


def _logged(d: pd.DataFrame, metrics: tuple[str, ...]) -> tuple[str, ...]:
    """A curves figure's metrics that its runs logged: a validation one that none has (runs trained without
    a validation split: `experiment=vgg_cifar100 data.val_size=0`) is the test one, where they logged that,
    else left out (its panels were empty)."""
    def has(k: str) -> bool:
        return f"metric:{k}" in d and bool(d[f"metric:{k}"].notna().any())

    kept = [k if has(k) else "test_" + k.removeprefix("val_") for k in metrics
            if has(k) or (k.startswith("val_") and has("test_" + k.removeprefix("val_")))]
    return tuple(dict.fromkeys(kept)) or metrics


def fig_curves(client, d: pd.DataFrame, study: Study, spec: Figure, title: str) -> object:
    """Panels per value of spec.panel (or per metric), lines per value of spec.line."""
    spec = replace(spec, metrics=_logged(d, spec.metrics))
    by_metric = spec.panel == ("metric",)
    panels = [(m,) for m in spec.metrics] if by_metric else _values(d, study, spec.panel)
    rows = 1 if by_metric else len(spec.metrics)
    cols = len(panels)
    if by_metric and cols > 2:
        rows, cols = 2, -(-cols // 2)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_IN, 1.7 * rows + 0.9), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.xaxis.set_major_locator(ticker.MaxNLocator("auto", integer=True))  # epochs 1, 2: not 1.2, 1.4
    lines = _values(d, study, spec.line)
    seeds_n = []
    classes: dict[int, tuple[object, str, set]] = {}  # id(axes) -> (axes, metric, class counts of its runs)
    loss_range: dict[int, list[float]] = {}  # row (or panel, by metric) -> [min, max] of the loss means drawn
    drawn: dict[tuple, list[tuple[str, np.ndarray]]] = {}  # (panel's name, row's, axes) -> (line's name, its means)
    for j, panel in enumerate(panels):
        for li, line in enumerate(lines):
            sel = _select(d, spec.line, line) if by_metric else _select(_select(d, spec.panel, panel), spec.line, line)
            for i, key in enumerate([panel[0]] if by_metric else spec.metrics):
                ax = axes.flat[j] if by_metric else axes[i, j]
                hs = [h for h in (reader.history(client, r, key) for r in sel.run_id) if len(h)]
                if not hs:
                    continue
                n = min(len(h) for h in hs)
                a = np.stack([h[:n] for h in hs]) * (100 if key.endswith("_acc") else 1)
                mean, std = a.mean(0), a.std(0)
                if key.endswith("_loss") and np.isfinite(mean).any():
                    r = loss_range.setdefault(j if by_metric else i, [np.inf, -np.inf])
                    r[:] = min(r[0], np.nanmin(mean)), max(r[1], np.nanmax(mean))
                classes.setdefault(id(ax), (ax, key, set()))[2].update(_classes(sel))
                x = np.arange(1, n + 1)
                color = _color(str(line[-1]) if line else "", li)
                drawn.setdefault((METRIC_NAMES.get(key, key), "", ax) if by_metric else
                                 (_name(spec.panel, panel), METRIC_NAMES.get(key, key), ax), []).append(
                    (_name(spec.line, line), mean))
                ax.plot(x, mean, ls=_style(lines, line), color=color, label=_name(spec.line, line) or "runs",
                        marker="o" if n == 1 else None, ms=3)  # one epoch is a point: a line alone would not show
                if n == 1:
                    ax.set_xlim(0.5, 1.5)
                    ax.set_xticks([1])  # the one epoch, not ticks at 0.95 ... 1.05
                seeds_n.append(len(hs))
                if len(hs) > 1:
                    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)
                if by_metric or i == 0:
                    _title(ax, METRIC_NAMES.get(key, key) if by_metric else _name(spec.panel, panel))
                if by_metric or i == len(spec.metrics) - 1:
                    ax.set_xlabel("epoch")
                if not by_metric and j == 0:
                    ax.set_ylabel(METRIC_NAMES.get(key, key))
    log_rows = [k for k, (lo, hi) in loss_range.items() if 0 < lo and hi > LOG_LOSS_SPAN * lo]
    log_axes = {id(ax) for k in log_rows for ax in ([axes.flat[k]] if by_metric else axes[k])}
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if id(ax) in log_axes:  # the whole row: panels side by side share one kind of axis
            ax.set_yscale("log")
            # every decade a major tick: matplotlib before 3.8 took every other one on a short panel
            ax.yaxis.set_major_locator(ticker.LogLocator(base=10, numticks=LOG_TICKS_MAX))
            ax.yaxis.set_major_formatter(_LogPlain())
            ax.yaxis.set_minor_formatter(_LogPlain(labelOnlyBase=False))
        else:
            ax.ticklabel_format(axis="y", useOffset=False)  # "2.3026", not "1e-6+2.30268" above the panel
    if by_metric:
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
    chance = _chance_lines(classes.values())
    _legend_below(fig, axes, *_legend_order(spec.line, lines))
    band = "mean over seeds, band ±1 std" if seeds_n and max(seeds_n) > 1 else "one seed per line"
    fig.suptitle(f"{title}: {band}{chance}", fontsize=8)
    _note(fig, _coinciding(drawn, log_axes))
    return fig


def _classes(runs: pd.DataFrame) -> set:
    """The class counts of these runs' data sets (None for one vgsweep does not know)."""
    from vgsweep.data.sets import DATASETS

    col = next((c for c in ("data.name", "dataset") if c in runs), None)  # the setting, or its axis's label
    names = runs[col] if col else pd.Series([None] * len(runs))
    return {DATASETS[n].classes if n in DATASETS else None for n in names}


def _chance_lines(panels, acc_scale: float = 100.0) -> str:
    """A dotted line at chance, a uniform guess over C classes (loss ln C, accuracy 100/C %; a net that
    answers one class scores that class's share, 11.35% on MNIST's test set), in each panel whose runs
    share one C and whose axis already spans it: a net stuck
    there (a vanishing gradient's usual end) reads as not learning, not as the small ups and downs its
    own zoomed axis gives it; an axis is never stretched to show it. `panels`: (axes, metric, class
    counts); accuracies drawn times `acc_scale` (100: in %). The text that says so after the figure's
    title, or '' (naming the class count where other panels have another, whose line is not drawn)."""
    import math

    drawn: dict[str, set] = {}  # loss | accuracy -> the class counts drawn
    every: set = set()  # the class counts of every panel, drawn or not
    for ax, key, counts in panels:
        every |= set(counts)
        if len(counts) != 1 or None in counts or not key.endswith(("_loss", "_acc")):
            continue
        c, kind = next(iter(counts)), "loss" if key.endswith("_loss") else "accuracy"
        y = math.log(c) if kind == "loss" else acc_scale / c
        lo, hi = ax.get_ylim()
        if lo <= y <= hi:
            ax.axhline(y, color="0.35", ls=":", lw=0.9, zorder=1.5)
            drawn.setdefault(kind, set()).add(c)
    if not drawn:
        return ""
    if any(len(cs) > 1 for cs in drawn.values()):
        return "; dotted: chance (" + ", ".join({"loss": "loss ln C", "accuracy": "accuracy 100/C %"}[k]
                                                 for k in ("loss", "accuracy") if k in drawn) + " for C classes)"
    cs = set().union(*drawn.values())  # where panels of other class counts have none: whose line it is
    whose = f" for {next(iter(cs))} classes" if len(every - {None}) > 1 and len(cs) == 1 else ""
    return f"; dotted: chance{whose} (" + ", ".join(f"loss ln {c} = {math.log(c):.2f}" if k == "loss" else
                                                    f"accuracy {100 / c:.3g}%"
                                                    for k in ("loss", "accuracy") for c in drawn.get(k, ())) + ")"


def _coinciding(drawn: dict[tuple, list[tuple[str, np.ndarray]]], log_axes: set) -> str:
    """Lines of a panel that lie on one another (within half a percent of the panel's span, on its
    scale, at every epoch): the last drawn hides the others, and a reader took a regime for missing
    where baseline, frozen BN and weight norm trained alike. Named per panel, once where its rows (the
    metrics) agree, else per row: `Lines that coincide, each hiding the others: tanh: baseline = bn =
    wn; relu, test accuracy: baseline = gna.`; once for all where every panel says the same.
    `drawn`: (panel's name, row's name, axes) -> [(line's name, the values drawn)]."""
    said: dict[str, dict[str, list[str]]] = {}  # panel -> row -> its groups, as text
    for (panel, row, ax), series in drawn.items():
        groups_said = said.setdefault(panel, {}).setdefault(row, [])
        with np.errstate(divide="ignore"):  # a 0 (on the floor: _zeros_on_the_floor) is -inf, not compared
            named = [(name, np.log(m) if id(ax) in log_axes else m) for name, m in series if name]
        vals = np.concatenate([m for _, m in named]) if named else np.array([])
        vals = vals[np.isfinite(vals)]
        if len(named) < 2 or not len(vals):
            continue
        tol = 0.005 * max(vals.max() - vals.min(), 1e-12)
        groups: list[list[tuple[str, np.ndarray]]] = []
        for name, m in named:
            g = next((g for g in groups if len(g[0][1]) == len(m) and np.allclose(g[0][1], m, rtol=0, atol=tol,
                                                                                 equal_nan=True)), None)
            (g.append((name, m)) if g is not None else groups.append([(name, m)]))
        groups_said += _said_once([[name for name, _ in g] for g in groups if len(g) > 1], [name for name, _ in named])

    def text(rows: dict[str, list[str]], panel: str = "") -> list[str]:
        """A panel's groups: once where its rows agree, else per row that has any."""
        if len({tuple(gs) for gs in rows.values()}) == 1:
            gs = next(iter(rows.values()))
            return [f"{panel}: {'; '.join(gs)}" if panel else "; ".join(gs)] if gs else []
        return [f"{', '.join(filter(None, (panel, row.removesuffix(' (%)'))))}: {'; '.join(gs)}"
                for row, gs in rows.items() if gs]

    if not any(gs for rows in said.values() for gs in rows.values()):
        return ""
    if len(said) > 1 and len({tuple((r, tuple(gs)) for r, gs in rows.items()) for rows in said.values()}) == 1:
        return f"Lines that coincide in every panel, each hiding the others: {'; '.join(text(next(iter(said.values()))))}."
    return "Lines that coincide, each hiding the others: " + "; ".join(p for panel, rows in said.items()
                                                                       for p in text(rows, panel)) + "."


def _said_once(groups: list[list[str]], names: list[str]) -> list[str]:
    """Groups of coinciding lines as text, `a = b`; where lines named by several settings coincide with
    the lines of the same leading settings only, the groups alike said once: `baseline = gna at each init
    gain` (every value of it in the panel) or `at init gain=1.0, 2.0`, not `init gain=1.0 baseline =
    init gain=1.0 gna; init gain=2.0 baseline = ...`; three or more lines, all of the panel's, `all 5 lines`.
    `names`: the panel's lines."""
    def split(name: str) -> tuple[str, str]:
        lead, _, last = name.rpartition(" ")
        return lead, last

    out, alike = [], {}  # (the last setting's values) -> the leading settings they coincide at
    for g in groups:
        if len(g) == len(names) > 2:  # every line of the panel on one: not its five names in a row
            out.append(f"all {len(g)} lines")
            continue
        leads = {split(n)[0] for n in g}
        if len(leads) == 1 and "" not in leads:
            alike.setdefault(tuple(split(n)[1] for n in g), []).append(next(iter(leads)))
        else:
            out.append(" = ".join(g))
    everywhere = {split(n)[0] for n in names}
    for lasts, leads in alike.items():
        if len(leads) == 1:
            out.append(" = ".join(f"{leads[0]} {v}" for v in lasts))
            continue
        keys = {lead.partition("=")[0] for lead in leads}
        one = len(keys) == 1 and all(lead.count("=") == 1 for lead in leads)  # one setting: `init gain`
        where = (f"each {next(iter(keys))}" if one and set(leads) == everywhere else
                 f"{next(iter(keys))}=" + ", ".join(lead.partition("=")[2] for lead in leads) if one else
                 ", ".join(leads))
        out.append(f"{' = '.join(lasts)} at {where}")
    return out


def _title(ax, text: str, *more: str) -> None:
    """A panel's title, in lines as wide as its panel (four fifths of its share of the figure, the rest
    its axis labels; a character about 0.6 of the font's size): the titles of panels side by side ran into
    each other where three swept settings named each; `more` are lines of its own below it."""
    if not text:
        return
    cols = ax.get_subplotspec().get_gridspec().ncols
    width = max(16, int(ax.figure.get_figwidth() * 72 * 0.8 / cols / (0.6 * ax.title.get_fontsize())))
    ax.set_title("\n".join([textwrap.fill(text, width, break_long_words=False), *more]))


def _panel_name(labels: tuple[str, ...], combo: tuple) -> str:
    return f"{combo[0]}-layer networks" if labels == ("depth",) else _name(labels, combo)


def fig_results(d: pd.DataFrame, study: Study, spec: Figure, title: str, table_study: Study | None = None) \
        -> object | None:
    """The study's table as a figure: a place on the x axis per value of spec.x, a colour per value of
    spec.line (a marker shape per value of its other axes), a panel per value of spec.panel (and per
    data set where there are several). Kind `results`: each seed a small dot, the mean a larger one
    with a ±1 std bar, the published value a hollow diamond just right of it. Kind `deltas`: the
    table's delta to the baseline row with its 95% interval (paired by seed), the published delta as
    the diamond. A diamond only beside the cells the table compares with the published value
    (table.aggregate decides, with `table_study`, the study before swept settings joined its axes:
    the runs were made with the published setting)."""
    from vgsweep.results.table import aggregate, published_delta

    deltas, metric = spec.kind == "deltas", study.metrics[0]
    col = f"metric:{metric.key}"
    if col not in d or d[col].isna().all() or (deltas and not study.baseline):
        return None
    table_study = table_study or study
    own = {a.key for a in table_study.all_axes}
    if swept := [a.key for a in study.all_axes if a.key not in own]:  # blank where it does nothing, as in the table
        blank = reader.blank_inert(reader.fill_neutral(_params(d, study)), own)
        d = d.assign(**{k: blank[k] for k in swept})
    agg = aggregate(_params(d, study), table_study)
    panel_axes = (("dataset",) if d["dataset"].nunique() > 1 else ()) + spec.panel
    panels, xs, lines = _values(d, study, panel_axes), _values(d, study, spec.x), _values(d, study, spec.line)
    if deltas:  # the baseline's own places show no delta, nor a panel without one
        blabel, bvalue = study.baseline
        xs = [c for c in xs if dict(zip(spec.x, c)).get(blabel) != bvalue]
        lines = [c for c in lines if dict(zip(spec.line, c)).get(blabel) != bvalue]
        panels = [c for c in panels if _select(agg.astype({lab: str for lab in panel_axes}), panel_axes,
                                               tuple(map(str, c)))["delta"].notna().any()]
        if not xs or not lines or not panels:
            return None
    fig, axes, cols, slots = _wrapped(len(panels), 3, 2.4, 0.5, _lead_groups(panels))  # a row per data set
    width = 0.8 / len(lines)  # the markers of one x place share 0.8 of the unit between places
    shown_pub, seeds_n = False, []
    for j, panel in enumerate(panels):
        ax = axes.flat[slots[j]]
        for li, line in enumerate(lines):
            color = _color(str(line[-1]) if line else "", li)
            marker = _style(lines, line, MARKERS)
            for xi, place in enumerate(xs):
                labels, combo = panel_axes + spec.line + spec.x, panel + line + place
                v = (_select(d, labels, combo)[col].dropna() * metric.scale).to_numpy()
                row = agg
                for lab, val in zip(labels, combo):
                    row = row[row[lab].astype(str) == str(val)]
                if not len(v) or (deltas and (row.empty or pd.isna(row["delta"].iloc[0]))):
                    continue
                x = xi + (li - (len(lines) - 1) / 2) * width
                seeds_n.append(len(v))
                label = _name(spec.line, line) or "ours"
                pub = row["published"].iloc[0] if len(row) else np.nan
                if deltas:
                    r = row.iloc[0]
                    ci = None if pd.isna(r["delta_lo"]) else [[r["delta"] - r["delta_lo"]], [r["delta_hi"] - r["delta"]]]
                    ax.errorbar(x, r["delta"], yerr=ci, fmt=marker, ms=4, color=color, capsize=2, lw=1, label=label)
                    if not pd.isna(pub):  # the published delta: that cell against its published baseline
                        pub = published_delta(table_study, tuple(r[a.label] for a in table_study.all_axes))
                        pub = np.nan if pub is None else pub
                else:
                    jitter = np.linspace(-0.2, 0.2, len(v)) * width if len(v) > 1 else np.zeros(1)
                    ax.scatter(x + jitter, v, s=5, color=color, alpha=0.45, lw=0, label="_seed")  # _: no legend entry
                    ax.errorbar(x, v.mean(), yerr=v.std(ddof=1) if len(v) > 1 else None, fmt=marker, ms=4,
                                color=color, capsize=2, lw=1, label=label)
                if not pd.isna(pub):
                    shown_pub = True
                    ax.scatter([x + 0.3 * width], [pub], s=18, marker="D", facecolors="none", edgecolors="black",
                               lw=0.8, zorder=3, label="published")
        names = [_name(spec.x, place) for place in xs]
        # a name wider than its place (7 pt: about 0.055 in a character) would run into the next one
        tilt = max(map(len, names)) + 1 > PAGE_IN / cols * 0.9 / len(xs) / 0.055
        ax.set_xticks(range(len(xs)), names, rotation=30 if tilt else 0, ha="right" if tilt else "center")
        ax.set_xlim(-0.6, len(xs) - 0.4)
        _title(ax, _panel_name(panel_axes, panel))
        ax.grid(alpha=0.3, axis="y")
        if deltas:
            ax.axhline(0, color="k", lw=0.5)
    for ax in axes.flat:  # values that (nearly) agree: a span of 1 unit, not float noise on a 1e-17 axis
        lo, hi = ax.get_ylim()
        mid = 0.0 if deltas else (lo + hi) / 2
        lo, hi = min(lo, mid - 0.5), max(hi, mid + 0.5)
        if not deltas and metric.key.endswith("_acc"):  # a ±1 std bar past 0% or 100%: the axis stops just there
            pad = 0.02 * (hi - lo)
            lo, hi = max(lo, -pad), min(hi, metric.scale + pad)  # an accuracy of 1, scaled (100%)
        ax.set_ylim(lo, hi)
        ax.ticklabel_format(axis="y", useOffset=False)
    chance = "" if deltas else _chance_lines(
        [(axes.flat[slots[j]], metric.key, _classes(_select(d, panel_axes, panel))) for j, panel in enumerate(panels)],
        metric.scale)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric.label.replace(" (%)", "") + f": delta to {_name((blabel,), (bvalue,))}"
                      + (" (pp)" if "(%)" in metric.label else "") if deltas else metric.label)
    _legend_below(fig, axes, *_legend_order(spec.line, lines))
    n = f"{min(seeds_n)}" if min(seeds_n) == max(seeds_n) else f"{min(seeds_n)}-{max(seeds_n)}"
    if deltas:
        what = f"mean delta over seeds (n = {n})" + (", bar: its 95% interval, paired by seed" if max(seeds_n) > 1
                                                     else ", one seed: no interval")
    else:
        what = f"mean ± std over seeds (n = {n}), each seed a dot" if max(seeds_n) > 1 else "one seed per marker"
    fig.suptitle(f"{title}: {what}" + ("; ◇ published" if shown_pub else "") + chance, fontsize=8)
    return fig


def _trials(d: pd.DataFrame, study: Study, metric) -> pd.DataFrame:
    """A search's runs as its trials, grouped as the table groups them (table.keyed): one row per config,
    `_y` its runs' mean objective (display units), `_lo` / `_hi` their lowest and highest, `_n` how many,
    `start_time` its first run's (a trial confirmed over seeds is one trial, as in the table)."""
    from vgsweep.results.table import keyed

    runs, keys = keyed(d, study)
    rows = []
    for _, g in runs.groupby(keys, dropna=False, sort=False):
        v = pd.to_numeric(g[f"metric:{metric.key}"], errors="coerce").dropna() * metric.scale
        row = g.iloc[0].copy()
        row["_y"], row["_lo"], row["_hi"], row["_n"] = v.mean(), v.min(), v.max(), len(v)
        if "start_time" in g:
            row["start_time"] = pd.to_numeric(g["start_time"], errors="coerce").min()
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


def fig_search(d: pd.DataFrame, study: Study, spec: Figure, title: str) -> object | None:
    """A search's landscape: the objective (the study's first metric) of every trial against each
    searched setting (the study's numeric axes that vary), one panel per setting, and against SGD's
    effective step lr / (1 − momentum) where both were searched; points coloured by spec.line; a log
    axis where the values span more than two decades; each colour's best trial ringed. A trial
    confirmed over seeds (the command a search ends with) is its seeds' mean, a bar from the lowest
    to the highest, ringed where that mean is the best, as the table bolds it."""
    from vgsweep.results.table import best_trial

    metric = study.metrics[0]
    if f"metric:{metric.key}" not in d or d[f"metric:{metric.key}"].isna().all():
        return None  # no trial logged the objective (runs without a validation split): nothing to draw
    d = _trials(d, study, metric)
    numeric = [a for a in study.axes if a.numeric]
    searched = [a for a in numeric if d[a.label].nunique() > 1] or numeric[-1:]  # depth is fixed in a search
    xs = [(a.label, pd.to_numeric(d[a.label], errors="coerce")) for a in searched]
    if {"lr", "momentum"} <= {a.label for a in searched}:  # SGD's effective step: what the rate and momentum make
        xs.append(("lr / (1 − momentum)", pd.to_numeric(d["lr"]) / (1 - pd.to_numeric(d["momentum"]))))
    fig, axes = plt.subplots(1, len(xs), figsize=(PAGE_IN, 2.6), squeeze=False, layout="constrained")
    y = d["_y"]
    groups = _values(d, study, spec.line)
    seeds = d.index[d["_n"] > 1]
    for j, (xlabel, x) in enumerate(xs):
        ax = axes[0, j]
        bests, bars = [], []
        for gi, g in enumerate(groups):
            sel = _select(d, spec.line, g).index
            color = _color(str(g[-1]) if g else "", gi)
            ax.scatter(x[sel], y[sel], s=14, color=color, label=_name(spec.line, g) or "trials", alpha=0.8, lw=0)
            if len(over := sel.intersection(seeds)):
                bars.append((over, color))
            if (i := best_trial(y[sel], d["start_time"].loc[sel] if "start_time" in d else None,
                                higher_is_better(metric.key))) is not None:  # each group's best trial
                bests.append(i)
        ax.scatter(x[bests], y[bests], s=60, facecolors="none", edgecolors="black", lw=1, label="best")
        for over, color in bars:  # a confirmed trial's seeds, lowest to highest
            ax.vlines(x[over], d["_lo"][over], d["_hi"][over], color=color, lw=0.8, alpha=0.8, zorder=1)
        pos = x[x > 0]
        if len(pos) and pos.max() / pos.min() > 100:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if j == 0:
            ax.set_ylabel(metric.label)
    _legend_below(fig, axes, *_legend_order(spec.line, groups))
    over = (f" ({len(seeds)} of them over {_seed_counts(d['_n'][seeds])} seeds: the mean, a bar from the lowest "
            "to the highest)") if len(seeds) else ""
    fig.suptitle(f"{title}: {len(d)} trial{'s' if len(d) != 1 else ''}{over}", fontsize=8)
    return fig


def _seed_counts(n: pd.Series) -> str:
    """`5` or `3 to 5`: how many seeds the confirmed trials have."""
    return str(n.min()) if n.min() == n.max() else f"{n.min()} to {n.max()}"


def _mean_abs(diag) -> np.ndarray:
    return diag.grad[:, :, GRAD_COLS.index("grad/mean_abs")]  # (epochs, layers)


def _lead_groups(panels: list[tuple]) -> list[int] | None:
    """The panels' counts per value of their first setting, where they have several settings (init gain and
    regime): each value a row of its own in _wrapped (gain 1.0's regimes, then gain 2.0's), not wrapped
    across values."""
    if not panels or len(panels[0]) < 2:
        return None
    lead = [p[0] for p in panels]
    return [lead.count(v) for v in dict.fromkeys(lead)]


def _wrapped(n: int, max_cols: int, row_in: float, extra_in: float, groups: list[int] | None = None) \
        -> tuple[object, np.ndarray, int, list[int]]:
    """A figure of n panels sharing the y axis, at most max_cols to a row, the cells no panel takes hidden;
    `groups`: the panels' counts per leading setting (a data set), each group starting a row of its own
    (a row per data set, a column per depth). (figure, axes (rows, cols), cols, each panel's index in
    axes.flat)."""
    groups = groups or [n]
    cols = min(max(groups), max_cols)
    slots: list[int] = []
    rows = 0
    for g in groups:
        slots += [rows * cols + k for k in range(g)]
        rows += -(-g // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_IN, row_in * rows + extra_in), squeeze=False, sharey=True,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i not in slots:
            ax.set_visible(False)
    return fig, axes, cols, slots


def _zeros_on_the_floor(axes) -> str:
    """Values of 0 on the panels' shared log y axis: a mean |gradient| that underflowed float32 (a 1000-layer
    logistic net's first layers, past about 1e-45), or that is 0 (a zero init's first layer). Matplotlib
    leaves them out of a log axis, so a line's end, or a depth's point, was gone without a word: the runs
    that vanish most. Each is drawn as a ▼ a decade below the smallest value shown, a line running down to
    it. The note that says so, '' where there is none."""
    from matplotlib.collections import PathCollection

    visible = [ax for ax in np.ravel(axes) if ax.get_visible()]
    lines = [ln for ax in visible for ln in ax.get_lines()]
    dots = [c for ax in visible for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    ys = np.concatenate([np.asarray(ln.get_ydata(), float) for ln in lines]
                        + [np.asarray(c.get_offsets(), float)[:, 1] for c in dots] + [np.zeros(0)])
    if not (ys == 0).any():
        return ""
    pos = ys[np.isfinite(ys) & (ys > 0)]
    floor = 10.0 ** (np.floor(np.log10(pos.min())) - 1) if len(pos) else 1e-45  # float32's smallest: 1.4e-45
    for ln in lines:
        y = np.asarray(ln.get_ydata(), float)
        if (zero := y == 0).any():
            if ln.get_marker() not in (None, "None", "", " "):
                ln.set_markevery(np.flatnonzero(~zero).tolist())  # its own marker where it has a value
            ln.set_ydata(np.where(zero, floor, y))
            x = np.asarray(ln.get_xdata(), float)[zero]
            ln.axes.plot(x, np.full(len(x), floor), ls="none", marker="v", ms=4, color=ln.get_color(), clip_on=False)
    for c in dots:
        xy = np.asarray(c.get_offsets(), float)
        if (zero := xy[:, 1] == 0).any():
            c.set_offsets(xy[~zero])
            c.axes.scatter(xy[zero, 0], np.full(zero.sum(), floor), s=12, marker="v", color=c.get_facecolor()[:1],
                           lw=0, clip_on=False)
    for ax in visible:
        ax.relim()
        ax.autoscale_view()
    return (f"▼: a value of 0 (below float32's smallest number, about 1e-45, or exactly 0), drawn at {floor:g}, "
            "a decade below the smallest value shown.")


def fig_gradient_flow(client, d: pd.DataFrame, study: Study, spec: Figure, title: str, tmp: Path) -> object:
    """Mean |g| of each weight layer (mean over epochs and seeds); panels per spec.panel, lines per spec.line."""
    panels = _values(d, study, spec.panel)
    # a row of three: room for each layer's name; a row per value of the panels' first setting where several
    fig, axes, cols, slots = _wrapped(len(panels), 3, 2.2, 0.3, _lead_groups(panels))
    names: list[str] = []
    for j, panel in enumerate(panels):
        ax = axes.flat[slots[j]]
        dp = _select(d, spec.panel, panel)
        lines = _values(dp, study, spec.line)
        for li, line in enumerate(lines):
            diags = [x for r in _select(dp, spec.line, line).run_id if (x := reader.diagnostics(client, r, tmp))]
            if not diags:
                continue
            m = np.mean([_mean_abs(x).mean(0) for x in diags], 0)
            names = diags[0].layers if len(diags[0].layers) > len(names) else names
            ax.plot(np.arange(1, len(m) + 1), m, ls=_style(lines, line), marker="o", ms=2.5,
                    color=_color(str(line[-1]) if line else "", li), label=_name(spec.line, line))
        ax.set(yscale="log", xlabel="weight layer (1 = input side)" if slots[j] + cols not in slots else None)
        _title(ax, _name(spec.panel, panel))
        ax.grid(alpha=0.3, which="both")
    for ax in axes[:, 0]:
        ax.set_ylabel("mean |gradient| of weights")
    if len(names) <= 12:
        tilt = len(names) * cols > 12  # names side by side would run into each other
        for ax in axes.flat:
            ax.set_xticks(range(1, len(names) + 1), names, rotation=45 if tilt else 0, ha="right" if tilt else "center")
    else:  # numbered: layer 5, 10, ...; not 2.5, 7.5 (sharex=False: each panel's own locator)
        for ax in axes.flat:
            ax.xaxis.set_major_locator(ticker.MaxNLocator("auto", integer=True))
    zeros = _zeros_on_the_floor(axes)
    _legend_below(fig, axes, *_legend_order(spec.line, _values(d, study, spec.line)))
    fig.suptitle(f"Gradient flow, {_aside(title, 'mean over epochs and seeds')}", fontsize=8)
    _note(fig, zeros)
    return fig


def _aside(title: str, text: str) -> str:
    """The title with `text` in parentheses: inside those it ends with (its settings), not a second pair."""
    return f"{title[:-1]}; {text})" if title.endswith(")") else f"{title} ({text})"


def fig_gradient_ratio(client, d: pd.DataFrame, study: Study, spec: Figure, title: str, tmp: Path) -> object | None:
    """The vanishing verdict's ratio (diagnostics.first_to_last) against depth (spec.x): a panel per
    spec.panel, a line per spec.line through the geometric mean over seeds, each seed a dot; the verdict's
    threshold dashed. None where the runs have fewer than two depths (or no ratio to draw)."""
    xlab = spec.x[0]
    xs = [v for (v,) in _values(d, study, (xlab,))]
    if len(xs) < 2:
        return None
    panels = _values(d, study, spec.panel)
    fig, axes, cols, slots = _wrapped(len(panels), 3, 2.2, 0.3, _lead_groups(panels))
    drawn: dict[tuple, list[tuple[str, np.ndarray]]] = {}  # as fig_curves': the lines that hide each other
    for j, panel in enumerate(panels):
        ax = axes.flat[slots[j]]
        dp = _select(d, spec.panel, panel)
        lines = _values(dp, study, spec.line)
        for li, line in enumerate(lines):
            color, pts = _color(str(line[-1]) if line else "", li), []
            for x in xs:
                diags = [g for r in _select(_select(dp, spec.line, line), (xlab,), (x,)).run_id
                         if (g := reader.diagnostics(client, r, tmp)) is not None]
                r = np.array([first_to_last(g) for g in diags])
                r = r[np.isfinite(r) & (r >= 0)]  # a 0 (underflowed, a zero init's): on the axis' floor, below
                if len(r):
                    ax.scatter(np.full(len(r), float(x)), r, s=5, color=color, alpha=0.45, lw=0)
                    pts.append((float(x), float(np.exp(np.log(r).mean())) if r.all() else 0.0))
            if pts:
                ax.plot(*zip(*pts), ls=_style(lines, line), marker="o", ms=3, color=color, label=_name(spec.line, line))
                if len(pts) == len(xs):  # a line of every depth: comparable point by point
                    drawn.setdefault((_name(spec.panel, panel), "", ax), []).append(
                        (_name(spec.line, line), np.array([y for _, y in pts])))
        ax.set(yscale="log", xticks=[float(x) for x in xs], xticklabels=[str(x) for x in xs],
               xlabel=xlab if slots[j] + cols not in slots else None)  # no panel below it
        _title(ax, _name(spec.panel, panel))
        ax.grid(alpha=0.3, which="both")
    if not any(ax.get_lines() for ax in axes.flat):
        plt.close(fig)
        return None
    zeros = _zeros_on_the_floor(axes)
    col = "diagnostics.verdict.vanish_ratio"
    given = pd.to_numeric(d[col], errors="coerce").dropna().unique() if col in d else []
    threshold = float(given[0]) if len(given) == 1 else VerdictConfig().vanish_ratio
    for ax in axes.flat:
        if ax.get_visible():
            ax.axhline(threshold, color="k", ls="--", lw=0.6)
    for ax in axes[:, 0]:
        ax.set_ylabel("mean |g|, first layer / last")
    _legend_below(fig, axes, *_legend_order(spec.line, _values(d, study, spec.line)))
    fig.suptitle(f"Vanishing across depth, {title}", fontsize=8)
    _note(fig, f"Below the dashed line ({threshold:g}) a run's verdict is vanishing.")  # wrapped to the figure
    _note(fig, zeros)
    _note(fig, _coinciding(drawn, {id(ax) for ax in axes.flat}))  # on the log axis: by ratio
    return fig


def fig_gradient_flow_epochs(client, d: pd.DataFrame, study: Study, spec: Figure, title: str, tmp: Path) -> object:
    """One panel per spec.panel value (its first seed): one line per epoch across the layers."""
    panels = _values(d, study, spec.panel)
    fig, axes, _, _ = _wrapped(len(panels), 4, 2.3, 0.4)
    cmap = plt.get_cmap("viridis")
    # one colour scale for every panel, the colour bar's: a run that ended early (failed, killed, fewer epochs)
    # drew its last epoch in the last epoch's colour
    norm = plt.Normalize(1, max(int(d["train.epochs"].astype(int).max()), 2))
    lost: list[str] = []
    for j, panel in enumerate(panels):
        ax = axes.flat[j]
        run, diag = _first_readable(client, _select(d, spec.panel, panel), tmp, _name(spec.panel, panel), lost)
        if diag is None:
            continue
        g = _mean_abs(diag)  # (epochs, layers)
        for e in range(len(g)):
            ax.plot(np.arange(1, g.shape[1] + 1), g[e], color=cmap(norm(e + 1)), lw=0.8, alpha=0.8)
        step = max(1, g.shape[1] // 10)
        ax.set_xticks(range(1, g.shape[1] + 1, step), diag.layers[::step], rotation=90, fontsize=5)
        ax.set(yscale="log")
        _title(ax, f"{_name(spec.panel, panel)} {_seed_of(run)}")
        ax.grid(alpha=0.3, which="both")
    for ax in axes[:, 0]:
        ax.set_ylabel("mean |gradient|")
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=norm), ax=axes, label="epoch", shrink=0.8)
    bar.ax.yaxis.set_major_locator(ticker.MaxNLocator("auto", integer=True))  # epochs: not 1.2, 1.4, ...
    zeros = _zeros_on_the_floor(axes)
    fig.suptitle(f"Gradient flow per epoch, {title}: mean |g| of each layer's weights (input side left)", fontsize=8)
    _note(fig, zeros)
    _note(fig, _unread_seeds(lost))
    return fig


def fig_gradient_distribution(client, d: pd.DataFrame, study: Study, spec: Figure, title: str, tmp: Path) -> object:
    panels = _values(d, study, spec.panel)
    # a panel is two images (before and after the noise), at most three panels to a row: six side by side
    # (a study sweeping settings beside the regimes) left no room for their names. Where no run of the
    # figure has gradient noise, one image: the second was the first again, titled "after noise".
    col = "regime.grad_noise.enabled"
    noisy = col not in d or d[col].astype(str).str.lower().eq("true").any()
    per = 2 if noisy else 1
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(per * rows, cols, figsize=(PAGE_IN, (2.7 if noisy else 1.6) * rows + 0.5), squeeze=False,
                             sharey=True, constrained_layout=True)
    for k in range(len(panels), rows * cols):
        for i in range(per):
            axes[per * (k // cols) + i, k % cols].set_visible(False)
    im, lost, ends = None, [], set()
    for k, panel in enumerate(panels):
        top, j = per * (k // cols), k % cols
        run, diag = _first_readable(client, _select(d, spec.panel, panel), tmp, _name(spec.panel, panel), lost)
        if diag is None:
            continue
        edges = diag.hist_edges
        for i in range(per):
            h = diag.hist[:, i, 0, :].T  # (bins, epochs): first layer
            ends |= {e for e, row in ((edges[0], h[0]), (edges[-1], h[-1])) if row.any()}
            im = axes[top + i, j].imshow(np.log10(h + 1e-4), origin="lower", aspect="auto", cmap="viridis", vmin=-4,
                                         vmax=0, extent=(0.5, h.shape[1] + 0.5, edges[0], edges[-1]))
            axes[top + i, j].xaxis.set_major_locator(ticker.MaxNLocator("auto", integer=True))  # epochs: not 0.75
        _title(axes[top, j], f"{_name(spec.panel, panel)} {_seed_of(run)}", *(["before noise"] if noisy else []))
        if noisy:
            axes[top + 1, j].set_title("after noise")
        axes[top + per - 1, j].set_xlabel("epoch")
    for i in range(per * rows):
        axes[i, 0].set_ylabel("log10 |g|, first layer")
    if im is not None:
        fig.colorbar(im, ax=axes, label="log10 fraction of weights", shrink=0.8)
    fig.suptitle(f"Gradient distribution over training: {title}", fontsize=8)
    _note(fig, _end_rows(ends, edges) if ends else "")
    _note(fig, _unread_seeds(lost))
    return fig


def _end_rows(ends: set, edges: np.ndarray) -> str:
    """The note of a gradient distribution whose bottom or top row holds values: the histogram counts every
    |g| past its range in its end rows (probe.py), so a row at -10 held every gradient that underflowed to 0
    (a 1000-layer logistic net's first layer: all of them), read as 1e-10."""
    said = [f"the bottom row also counts every |g| below 1e{edges[0]:g} (0 included)" * (edges[0] in ends),
            f"the top row also counts every |g| above 1e{edges[-1]:g}" * (edges[-1] in ends)]
    text = "; ".join(filter(None, said))
    return text[:1].upper() + text[1:] + "."


def _seed_of(run) -> str:
    """`(seed 42)` with a no-break space: a panel's title wrapped between `(seed` and `42)`."""
    return f"(seed\u00a0{run.seed})"


def _first_readable(client, dp: pd.DataFrame, tmp: Path, name: str, lost: list[str]):
    """The run a one-run panel draws, and its diagnostics: the first seed's, or the next seed's where
    those cannot be read (None where no seed's can); `lost` gets the panel's line for _unread_seeds."""
    runs = dp.sort_values("seed")
    for i, run in enumerate(runs.itertuples(index=False)):
        if (diag := reader.diagnostics(client, run.run_id, tmp)) is not None:
            if i:
                lost.append(f"{name}, {_seeds(runs.seed.iloc[:i])} (seed {run.seed} drawn)")
            return run, diag
    lost.append(f"{name}, {_seeds(runs.seed)} (its panel empty)")
    return runs.iloc[0], None


def _seeds(seeds) -> str:
    s = [str(x) for x in seeds]
    return f"seed {s[0]}" if len(s) == 1 else f"seeds {', '.join(s[:-1])} and {s[-1]}"


def _unread_seeds(lost: list[str]) -> str:
    """The note of a figure of one run per panel drawn without some runs' diagnostics."""
    return f"Diagnostics that could not be read: {'; '.join(lost)}." if lost else ""


def build(uri: str, experiment: str, out: Path, activation: str | None = None, log_to_mlflow: bool = True,
          ended: pd.DataFrame | None = None, where: Sequence[reader.Where] = ()) -> list[Path]:
    """Every figure of the experiment's study; `activation` picks the gradient-distribution one's. `ended`:
    the experiment's ended runs where the caller has read them (reader.runs_frame: the report's table).
    `where` (reader.where_item): only the runs that meet it."""
    plots.start_curve_pool(plots.POOL_MIN_CURVES)  # the workers start while the runs are read
    try:
        with plt.rc_context(RC):  # this module's style, not the caller's matplotlib settings
            return _build(uri, experiment, out, activation, log_to_mlflow, ended, where)
    except BaseException as e:
        if not isinstance(e, Exception):  # Ctrl-C, SIGTERM: the figures the workers have not begun are dropped
            plots.stop_curve_pool(interrupted=True)
        _written(failed=True)  # no worker goes on writing into the folder after this returns
        raise


def _build(uri: str, experiment: str, out: Path, activation: str | None, log_to_mlflow: bool,
           ended: pd.DataFrame | None, where: Sequence[reader.Where]) -> list[Path]:
    client, exp = reader.open_experiment(uri, experiment)
    if ended is None:  # the runs, read once (a few ms per run)
        ended = reader.select(reader.runs_frame(client, exp.experiment_id), list(where))
    ended, left = reader.one_family(ended)
    if left:
        print(f"vgsweep figures: experiment {experiment!r}: {left}", file=sys.stderr, flush=True)
    # the curves, the gradient figures and the data files read the same runs; their artifacts where the
    # runs say, or beside the store where it was moved with them
    moved = tracking.moved_artifacts(uri, exp.artifact_location)
    raw, client = client, reader.Memo(client, ended, moved)
    probe = _finished(ended)
    if probe.empty:
        have = reader.held([_finished(reader.runs_frame(raw, exp.experiment_id))], list(where)) if where else ""
        raise SystemExit(f"vgsweep: no FINISHED runs in experiment {experiment!r}"
                         + (f" where {reader.said(where)}" if where else "")
                         + (f"; its FINISHED runs have {have}" if have else ""))
    study = study_for(str(probe["study"].iloc[0]) if "study" in probe else experiment,
                      str(probe["model.family"].iloc[0]), ended)
    runs = load_runs(ended, study)
    failed = load_unfinished(ended, study)
    swept, table_study = _with_swept_axes(runs, study), study  # the table's study: its swept settings blank where inert
    if study.name not in STUDIES:
        study = swept
        if added := [a.key for a in swept.all_axes if a.key not in {b.key for b in table_study.all_axes}]:
            # a swept setting that does nothing in a run is blank there, as in the table: no label of an
            # Adam run says `optimizer.momentum=0.5`
            own = {a.key for a in table_study.all_axes}
            blank = reader.blank_inert(reader.fill_neutral(_params(runs, table_study)), own)
            runs = runs.assign(**{k: blank[k] for k in added})
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    captions: dict[Path, tuple[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in study.figures:
            if spec.kind == "activations":
                paths += fig_activations(out, captions)
        for spec in swept.figures:  # one figure of every config side by side: a swept setting is a marker
            if spec.kind in ("results", "deltas") and (fig := fig_results(runs, swept, spec, study.name,
                                                                          table_study=table_study)) is not None:
                _note(fig, _not_drawn(failed, swept, spec, None, ()))
                paths += _save(fig, out, _stem(spec, None), captions)
        datasets = [v for (v,) in _values(runs, study, ("dataset",))]
        for ds in datasets:  # no figure mixes data sets (they are panels of the results figures only)
            ds_runs, ds_failed, ds_name = runs, failed, ""
            if len(datasets) > 1:
                ds_runs, ds_name = runs[runs["dataset"] == ds], str(ds)
                ds_failed = failed if failed.empty else failed[failed["dataset"].astype(str) == ds_name]
            for extra, part in _by_other_settings(ds_runs, study):  # nor runs of different configs
                suffix = "".join(f"_{v}" for v in [ds_name] if v) + "".join(f"_{_short(k)}-{_in_file_name(v)}"
                                                                           for k, v in extra)
                settings = ", ".join(x for x in [ds_name, *(_name((k,), (shown(v),)) for k, v in extra)]
                                     if x)  # init=he
                paths += _study_figures(client, part, study, out, activation, Path(tmp), suffix, settings, captions,
                                        lambda spec, by, act=None, f=ds_failed, extra=extra:
                                        _not_drawn(f, study, spec, by, extra, act))
        data = write_data(client, runs, study, out, Path(tmp))
    _written()
    paths.append(write_latex(out, experiment, captions))
    if log_to_mlflow and not where:  # the figures; their numbers are the store's own (all of its runs': a
        log_figures(client, exp.experiment_id, paths, moved)  # selection's do not replace them)
    for p in paths + data:
        print(p)
    return Made(paths + data, client.unreadable)


class Made(list):
    """The files a build wrote, and `unreadable`: the runs whose diagnostics could not be read, and why
    ({run id: the file and the error}): the gradient figures and gradients.csv.gz leave them out."""

    def __init__(self, paths: list[Path], unreadable: dict[str, str]):
        super().__init__(paths)
        self.unreadable = dict(unreadable)


def unreadable_line(experiment: str, unreadable: dict[str, str]) -> str:
    """The one line a command that drew the figures without some runs' diagnostics ends with (exit 1)."""
    first = next(iter(unreadable.items()))
    return (f"vgsweep: the diagnostics of {n_runs(len(unreadable))} of experiment {experiment!r} could not be read, "
            f"so its gradient figures and gradients.csv.gz leave them out (run {first[0]}: {first[1]})")


CURVE_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "val_loss", "val_acc", "epoch_seconds")
# gradients.csv.gz: what the gradient-flow figures draw and the verdict reads, of diagnostics.npz's GRAD_COLS
# (the std columns left out: 150 runs x 100 epochs x 3-6 layers are 67,500 rows, under 2 MB compressed)
GRADIENT_COLS = ("grad/mean_abs", "grad/norm", "grad_noisy/mean_abs", "update_ratio")


def _settings(runs: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Each run's id, name, study axes (by label, as table.csv), seed and the other settings that vary
    among the runs (by key), in the study's order of its axes, then by seed."""
    keys, params = _other_settings(runs, study)
    labels = [a.label for a in study.all_axes]
    cols = pd.concat([runs[["run_id", "run_name", *labels, "seed"]], params[keys]], axis=1)
    order = {c: i for i, c in enumerate(_values(runs, study, tuple(labels)))}
    rank = [order[tuple(r)] for r in runs[labels].itertuples(index=False)]
    return cols.assign(_rank=rank).sort_values(["_rank", "seed"], kind="stable").drop(columns="_rank")


def write_data(client, runs: pd.DataFrame, study: Study, out: Path, tmp: Path) -> list[Path]:
    """The numbers behind the figures, compressed (pandas, R and the like read .csv.gz as they are):
    curves.csv.gz, one row per FINISHED run (one per config, as the figures) and epoch (1-based), its
    per-epoch metrics as MLflow holds them (accuracies as fractions, every digit); gradients.csv.gz, one
    row per run with diagnostics, epoch and weight layer (1 = input side), the GRADIENT_COLS of its
    diagnostics.npz (float32 there: 9 significant digits keep them exactly). The files written."""
    if runs.empty:
        return []
    settings = _settings(runs, study)
    keys = [m for m in CURVE_METRICS if f"metric:{m}" in runs]
    curves = []
    for row in settings.to_dict("records"):
        got = {m: reader.by_step(client, row["run_id"], m) for m in keys}
        for step in sorted(set().union(*got.values())):
            curves.append({**row, "epoch": step + 1, **{m: got[m].get(step, np.nan) for m in keys}})
    paths = [out / "curves.csv.gz"]
    pd.DataFrame(curves, columns=[*settings.columns, "epoch", *keys]).to_csv(paths[0], index=False)
    grads = []
    cols = [(c, GRAD_COLS.index(c)) for c in GRADIENT_COLS]
    with_diag = set(runs.loc[runs["diagnostics"], "run_id"])
    for row in settings[settings["run_id"].isin(with_diag)].to_dict("records"):
        diag = reader.diagnostics(client, row["run_id"], tmp)
        if diag is None:
            continue
        for e in range(diag.grad.shape[0]):
            for li, layer in enumerate(diag.layers):
                grads.append({**row, "epoch": e + 1, "layer": layer, "layer_index": li + 1,
                              **{c: float(diag.grad[e, li, ci]) for c, ci in cols}})
    if grads:
        paths.append(out / "gradients.csv.gz")
        pd.DataFrame(grads).to_csv(paths[1], index=False, float_format="%.9g")
    else:
        (out / "gradients.csv.gz").unlink(missing_ok=True)  # an earlier build's, of runs no longer there
    return paths


def _params(runs: pd.DataFrame, study: Study) -> pd.DataFrame:
    """The runs as the store gave them (reader.runs_frame), without the columns load_runs added."""
    added = {a.label for a in study.all_axes if a.label != a.key} | {"diagnostics"}
    return runs.drop(columns=[c for c in added if c in runs])


def _other_settings(runs: pd.DataFrame, study: Study) -> tuple[list[str], pd.DataFrame]:
    """The settings that vary among the runs besides the study's axes and the seed (as the table's
    columns), and the runs' params with inert settings blank."""
    from vgsweep.results.table import grouping_keys

    axes = {a.key for a in study.all_axes}
    params = reader.blank_inert(reader.fill_neutral(_params(runs, study)), axes)
    params = params.assign(**{k: "" for k in axes if k not in params})
    return [k for k in grouping_keys(params, study) if k not in axes], params


def _with_swept_axes(runs: pd.DataFrame, study: Study) -> Study:
    """A study vgsweep does not know (a user's experiment file) asks about the settings it sweeps:
    they become its axes, lines of its curves and panels of its gradient figures, where a built-in
    study's figures would come one per value (a setting swept beside its own axes)."""
    keys = _other_settings(runs, study)[0] if not runs.empty else []
    if not keys:
        return study

    def numeric(k: str) -> bool:
        return bool(pd.to_numeric(runs[k], errors="coerce").notna().all())

    grows = {"curves": "line", "gradient_flow": "panel", "gradient_flow_epochs": "panel",
             "gradient_distribution": "panel", "gradient_ratio": "panel"}
    figs = tuple(replace(f, **{grows[f.kind]: getattr(f, grows[f.kind]) + tuple(keys)}) if f.kind in grows else
                 replace(f, line=tuple(keys) + f.line) if f.kind in ("results", "deltas") else f  # colours stay
                 for f in study.figures)
    return replace(study, axes=study.axes + tuple(Axis(k, k, numeric=numeric(k)) for k in keys), figures=figs)


def _by_other_settings(runs: pd.DataFrame, study: Study) -> list[tuple[tuple, pd.DataFrame]]:
    """The runs split by every setting that varies among them besides the study's axes and the seed
    (as the table's columns: e.g. `model.double_softmax` swept beside the paper grid): a figure's
    band is over seeds only. [((), runs)] when nothing else varies."""
    if runs.empty:
        return [((), runs)]
    keys, params = _other_settings(runs, study)
    if not keys:
        return [((), runs)]
    def fits(a: tuple, b: tuple) -> bool:  # a's settings are b's where a has one (a blank: inert, fits any)
        return all(x == y or x == "" for x, y in zip(a, b))

    from vgsweep.results.table import OPTION_ORDER, ordered

    rows = list(params[keys].astype(str).itertuples(index=False, name=None))
    # one figure per combination no other one fills in further, in the table's order (init: xavier first)
    rank = [{v: i for i, v in enumerate(ordered([r[j] for r in rows], Axis(k, k) if k in OPTION_ORDER else None))}
            for j, k in enumerate(keys)]
    combos = sorted(set(rows), key=lambda c: [rank[j][v] for j, v in enumerate(c)])
    widest = [c for c in combos if not any(o != c and fits(c, o) for o in combos)]
    return [(tuple((k, v) for k, v in zip(keys, c) if v != ""), runs[[fits(r, c) for r in rows]]) for c in widest]


def _study_figures(client, runs: pd.DataFrame, study: Study, out: Path, activation: str | None, tmp: Path,
                   suffix: str, settings: str, captions: dict[Path, tuple[str, float]],
                   not_drawn=lambda spec, by, act=None: "") -> list[Path]:
    """The study's figures (but the activations one) from these runs; `suffix` ends the file names,
    `settings` goes into the titles; not_drawn(spec, by value, activation) the line naming the configs a
    figure leaves out, having no finished run."""
    paths: list[Path] = []
    for spec in study.figures:
        if spec.kind in ("activations", "results", "deltas"):  # drawn once for all the runs (_build)
            continue
        for by in ([None] if spec.by is None else [v[0] for v in _values(runs, study, (spec.by,))]):
            d = runs if by is None else runs[runs[spec.by] == by]
            title = f"{by}-layer networks" if spec.by == "depth" else (f"{spec.by} {by}" if by else study.name)
            title += f" ({settings})" if settings else ""
            if spec.kind == "curves":
                fig = fig_curves(client, d, study, spec, title)
            elif spec.kind == "search":
                fig = fig_search(d, study, spec, title)
                if fig is None:
                    continue
            else:
                d = d[d["diagnostics"]]
                if d.empty:
                    continue
                if spec.kind == "gradient_distribution":
                    acts = [v for v in ACTIVATIONS if v in set(d["activation"])] or sorted(set(d["activation"]))
                    act = activation if activation in acts else acts[0]
                    fig = fig_gradient_distribution(client, d[d["activation"] == act], study, spec,
                                                    f"{act}, {title}", tmp)
                    _note(fig, not_drawn(spec, by, act))
                    paths += _save(fig, out, f"gradient_distribution_{act}" + _stem(spec, by)[len(spec.kind):] + suffix,
                                   captions)
                    continue
                draw = {"gradient_flow": fig_gradient_flow, "gradient_flow_epochs": fig_gradient_flow_epochs,
                        "gradient_ratio": fig_gradient_ratio}[spec.kind]
                fig = draw(client, d, study, spec, title, tmp)
                if fig is None:  # gradient_ratio of one depth
                    continue
                if spec.kind != "gradient_flow_epochs":  # of every run; that one of a run per panel says its own
                    _note(fig, _unread(client, d))
            if spec.kind != "search":
                _note(fig, not_drawn(spec, by))
            paths += _save(fig, out, _stem(spec, by) + suffix, captions)
    return paths


def _unread(client, d: pd.DataFrame) -> str:
    """The note of a gradient figure drawn without some of its runs' diagnostics (reader.diagnostics)."""
    lost = [r for r in d["run_id"] if r in getattr(client, "unreadable", {})]
    return f"Left out: the diagnostics of {n_runs(len(lost))} of its {len(d)}, which could not be read." if lost else ""


def n_runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def log_figures(client, exp_id: str, paths: list[Path], moved: tuple[str, str] | None = None) -> None:
    """The figures as the artifacts of the experiment's `figures` run, replacing the previous one
    once the new one is complete (a failure leaves the new run FAILED and the previous one as it was).
    `moved` (tracking.moved_artifacts): a store moved without its recorded artifact folder gets them
    beside its other runs', in the folder beside it, not in a new one made at the recorded path."""
    old = tracking.retry(client.search_runs, [exp_id], "tags.`vgsweep.kind` = 'figures'", max_results=1000)
    run = tracking.retry(client.create_run, exp_id, run_name="figures",
                         tags={**tracking.system_tags("vgsweep figures"), "vgsweep.kind": "figures"})
    log = functools.partial(client.log_artifact, run.info.run_id)
    path = tracking.local_path(run.info.artifact_uri)
    if moved is not None and path is not None and path.startswith(moved[0] + "/") and not Path(moved[0]).exists():
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        log = LocalArtifactRepository(moved[1] + path[len(moved[0]):]).log_artifact
    try:
        for p in paths:
            tracking.retry(log, str(p), "figures")
    except BaseException as e:  # Ctrl-C included: the run this process started does not stay RUNNING
        # interrupted (Ctrl-C, or SIGTERM/SIGHUP raised as app.Terminated): KILLED, as a sweep's runs are
        signal = "SIGINT (Ctrl-C)" if isinstance(e, KeyboardInterrupt) else getattr(e, "name", None) \
            if hasattr(e, "signum") else None
        status = "KILLED" if signal else "FAILED"
        try:
            client.set_tag(run.info.run_id, tracking.TAG_FAILURE,
                           f"interrupted by {signal}" if signal else f"{type(e).__name__}: {e}"[:5000])
            client.set_terminated(run.info.run_id, status)
        except Exception as again:  # noqa: BLE001 - the store itself failed: say so, raise the first error
            print(f"the figures run {run.info.run_id} could not be marked {status}: {again}", file=sys.stderr)
        raise
    tracking.retry(client.set_terminated, run.info.run_id, "FINISHED")
    for r in old:
        tracking.retry(client.delete_run, r.info.run_id)


def _ids(uri: str, experiment: str):
    client, exp = reader.open_experiment(uri, experiment)
    return client, exp.experiment_id


def main(argv: list[str] | None = None) -> int:
    ap = command_line("vgsweep figures", __doc__.splitlines()[0])
    reader.store_args(ap)
    ap.add_argument("--out", default="results/figures", type=home_path,
                    help="folder for the figures, one subfolder per experiment (default: results/figures)")
    reader.activation_arg(ap)
    ap.add_argument("--no-mlflow", action="store_true", help="do not log the figures to MLflow (with --where they "
                                                             "are not: the store's figures stay those of every run)")
    reader.where_arg(ap)
    a = ap.parse_args(argv)
    uri, out = reader.store_uri(a.tracking_uri), reader.out_dir("--out", a.out)
    failed = 0
    names = reader.chosen(uri, a.experiment)
    selected: dict[str, pd.DataFrame] = {}  # with --where and no experiment named: the runs of those that have some
    if a.where and not a.experiment:
        ended = {n: reader.runs_frame(*_ids(uri, n)) for n in names}
        selected = {n: runs for n in names if not (runs := reader.select(ended[n], a.where)).empty}
        if not selected:
            raise SystemExit(reader.none_where(uri, a.where, list(ended.values())))
        names = list(selected)
    if a.where and not a.no_mlflow:
        print(f"vgsweep figures: the figures of the runs where {reader.said(a.where)} are not logged to MLflow: the "
              "store's figures run stays that of every run", file=sys.stderr)
    for name in names:  # results/figures/<experiment>/
        made = build(uri, name, out / reader.folder(name), a.activation, not a.no_mlflow, selected.get(name), a.where)
        if made.unreadable:
            print(unreadable_line(name, made.unreadable), file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
