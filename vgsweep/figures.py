"""The studies' figures, regenerated from MLflow alone: `python -m vgsweep.figures` (make figures).

- gradient_distribution_<act>_d<depth>.png: the distribution of log10|g| of the first layer's
  weights over the epochs, one panel per regime, before (top) and after (bottom) the added noise;
- curves_d<depth>.png: training loss and accuracy per activation, the regimes overlaid, mean over
  seeds with a ±1 std band;
- gradient_flow_d<depth>.png: mean |g| of each layer's weights (averaged over epochs), per
  regime, one line per activation: a healthy net keeps it level, a vanishing one drops toward
  the input;
- activations.png: the activation functions and their derivatives.

Each is written as PNG and PDF, sized for a paper's column (3.5 in) or page (7 in) width, and the
set is logged to the experiment as the artifacts of one MLflow run named `figures`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from vgsweep import tracking
from vgsweep.diagnostics import GRAD_COLS, RunDiagnostics
from vgsweep.plots import plt
from vgsweep.table import ACT_ORDER, REGIME_ORDER

COLUMN_IN, PAGE_IN = 3.5, 7.0
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
      "ytick.labelsize": 7, "lines.linewidth": 1.2, "axes.spines.top": False, "axes.spines.right": False}
REGIME_COLORS = {"baseline": "#444444", "gna": "#1f77b4", "gna_bn": "#d62728"}
ACT_COLORS = {"logistic": "#1f77b4", "tanh": "#ff7f0e", "relu": "#2ca02c", "leaky_relu": "#9467bd",
              "swish": "#8c564b"}


def _order(values, preferred):
    vals = list(dict.fromkeys(values))
    return [v for v in preferred if v in vals] + sorted(v for v in vals if v not in preferred)


def load_runs(client, exp_id: str) -> pd.DataFrame:
    """FINISHED runs with a config hash: one per hash (the newest), with the keys figures group by."""
    rows = []
    for r in tracking.training_runs(client, exp_id, "attributes.status = 'FINISHED'"):
        p = r.data.params
        rows.append({"run_id": r.info.run_id, "hash": r.data.tags[tracking.TAG_HASH], "dataset": p.get("data.name"),
                     "depth": int(p.get("model.depth", 0)), "activation": p.get("activation.name"),
                     "regime": p.get("regime.name"), "seed": int(p.get("seed", 0)),
                     "diagnostics": p.get("diagnostics.enabled") == "True"})
    df = pd.DataFrame(rows)
    return df.drop_duplicates("hash", keep="first") if not df.empty else df


def _history(client, run_id: str, key: str) -> np.ndarray:
    h = sorted(tracking.retry(client.get_metric_history, run_id, key), key=lambda m: m.step)
    return np.array([m.value for m in h])


def _diag(client, run_id: str, tmp: Path) -> RunDiagnostics | None:
    try:
        p = tracking.retry(client.download_artifacts, run_id, "diagnostics/diagnostics.npz", str(tmp))
    except Exception:  # noqa: BLE001 - a run without diagnostics
        return None
    return RunDiagnostics.from_npz(Path(p).read_bytes())


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def fig_activations(out: Path) -> list[Path]:
    import torch

    from vgsweep.nn import ACTIVATIONS, DERIVATIVES

    z = torch.linspace(-6, 6, 601)
    fig, (a, b) = plt.subplots(1, 2, figsize=(COLUMN_IN * 1.5, 1.9), constrained_layout=True)
    for name in ACT_ORDER:
        ls = "--" if name == "leaky_relu" else "-"  # it lies on relu for z > 0
        a.plot(z, ACTIVATIONS[name](z, 0.2), ls, color=ACT_COLORS[name], label=name)
        b.plot(z, DERIVATIVES[name](z, 0.2), ls, color=ACT_COLORS[name], label=name)
    a.set(xlabel="z", ylabel="f(z)", title="activation", ylim=(-1.5, 3))
    b.set(xlabel="z", ylabel="f'(z)", title="derivative", ylim=(-0.1, 1.2))
    for ax in (a, b):
        ax.axhline(0, color="k", lw=0.4)
        ax.grid(alpha=0.3)
    b.legend(frameon=False, loc="upper left")
    return _save(fig, out, "activations")


def fig_curves(client, runs: pd.DataFrame, depth: int, out: Path) -> list[Path]:
    d = runs[runs.depth == depth]
    acts = _order(d.activation, ACT_ORDER)
    regimes = _order(d.regime, REGIME_ORDER)
    fig, axes = plt.subplots(2, len(acts), figsize=(PAGE_IN, 3.4), sharex=True, squeeze=False, layout="constrained")
    for j, act in enumerate(acts):
        for reg in regimes:
            sel = d[(d.activation == act) & (d.regime == reg)]
            for i, key in enumerate(("train_loss", "train_acc")):
                hs = [_history(client, r, key) for r in sel.run_id]
                n = min(len(h) for h in hs) if hs else 0
                if n == 0:
                    continue
                a = np.stack([h[:n] for h in hs]) * (100 if key == "train_acc" else 1)
                mean, std = a.mean(0), a.std(0)
                x = np.arange(1, n + 1)
                ax = axes[i, j]
                color = REGIME_COLORS.get(reg)
                ax.plot(x, mean, color=color, label=f"{reg} (n={len(hs)})")
                if len(hs) > 1:
                    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        axes[0, j].set_title(act)
        axes[1, j].set_xlabel("epoch")
    axes[0, 0].set_ylabel("training loss")
    axes[1, 0].set_ylabel("training accuracy (%)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    fig.suptitle(f"{depth}-layer networks: mean over seeds, band ±1 std", fontsize=8)
    return _save(fig, out, f"curves_d{depth}")


def fig_gradient_distribution(client, runs: pd.DataFrame, act: str, depth: int, out: Path, tmp: Path) -> list[Path]:
    d = runs[(runs.depth == depth) & (runs.activation == act) & runs.diagnostics]
    regimes = _order(d.regime, REGIME_ORDER)
    fig, axes = plt.subplots(2, len(regimes), figsize=(PAGE_IN, 3.0), squeeze=False, sharey=True,
                             constrained_layout=True)
    im = None
    for j, reg in enumerate(regimes):
        run = d[d.regime == reg].sort_values("seed").iloc[0]
        diag = _diag(client, run.run_id, tmp)
        if diag is None:
            continue
        edges = diag.hist_edges
        for i in range(2):
            h = diag.hist[:, i, 0, :].T  # (bins, epochs): first layer
            im = axes[i, j].imshow(np.log10(h + 1e-4), origin="lower", aspect="auto", cmap="viridis", vmin=-4,
                                   vmax=0, extent=(0.5, h.shape[1] + 0.5, edges[0], edges[-1]))
        axes[0, j].set_title(f"{reg} (seed {run.seed})\nbefore noise")
        axes[1, j].set_title("after noise")
        axes[1, j].set_xlabel("epoch")
    for i in range(2):
        axes[i, 0].set_ylabel("log10 |g|, first layer")
    if im is not None:
        fig.colorbar(im, ax=axes, label="log10 fraction of weights", shrink=0.8)
    fig.suptitle(f"Gradient distribution over training: {act}, {depth} layers", fontsize=8)
    return _save(fig, out, f"gradient_distribution_{act}_d{depth}")


def fig_gradient_flow(client, runs: pd.DataFrame, depth: int, out: Path, tmp: Path) -> list[Path]:
    d = runs[(runs.depth == depth) & runs.diagnostics]
    regimes = _order(d.regime, REGIME_ORDER)
    col = GRAD_COLS.index("grad/mean_abs")
    fig, axes = plt.subplots(1, len(regimes), figsize=(PAGE_IN, 2.3), squeeze=False, sharey=True,
                             constrained_layout=True)
    for j, reg in enumerate(regimes):
        ax = axes[0, j]
        for act in _order(d[d.regime == reg].activation, ACT_ORDER):
            curves = [x.grad[:, :, col].mean(0) for r in d[(d.regime == reg) & (d.activation == act)].run_id
                      if (x := _diag(client, r, tmp)) is not None]
            if not curves:
                continue
            m = np.mean(curves, 0)
            ax.plot(np.arange(1, len(m) + 1), m, marker="o", ms=3, color=ACT_COLORS.get(act), label=act)
        ax.set(yscale="log", xlabel="layer (1 = input side)", title=reg)
        ax.set_xticks(range(1, depth + 2))
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("mean |gradient| of weights")
    axes[0, -1].legend(frameon=False)
    fig.suptitle(f"Gradient flow, {depth}-layer networks (mean over epochs and seeds)", fontsize=8)
    return _save(fig, out, f"gradient_flow_d{depth}")


def build(uri: str, experiment: str, out: Path, activation: str | None = None, log_to_mlflow: bool = True) -> list[Path]:
    import tempfile

    plt.rcParams.update(RC)
    client = tracking.client_for(uri)
    exp = tracking.retry(client.get_experiment_by_name, experiment)
    if exp is None:
        raise SystemExit(f"no experiment {experiment!r} in {uri}: run a sweep first")
    runs = load_runs(client, exp.experiment_id)
    if runs.empty:
        raise SystemExit(f"no FINISHED runs in experiment {experiment!r}")
    out.mkdir(parents=True, exist_ok=True)
    paths = fig_activations(out)
    with tempfile.TemporaryDirectory() as tmp:
        for depth in sorted(runs.depth.unique()):
            paths += fig_curves(client, runs, depth, out)
            dd = runs[(runs.depth == depth) & runs.diagnostics]
            if dd.empty:
                continue
            paths += fig_gradient_flow(client, runs, depth, out, Path(tmp))
            acts = _order(dd.activation, ACT_ORDER)
            act = activation if activation in acts else acts[0]
            paths += fig_gradient_distribution(client, runs, act, depth, out, Path(tmp))
    if log_to_mlflow:
        run = tracking.retry(client.create_run, exp.experiment_id, run_name="figures",
                             tags={"vgsweep.kind": "figures"})
        for p in paths:
            tracking.retry(client.log_artifact, run.info.run_id, str(p), "figures")
        tracking.retry(client.set_terminated, run.info.run_id, "FINISHED")
    for p in paths:
        print(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vgsweep.figures", description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: the project's mlflow.db)")
    ap.add_argument("--experiment", default="agarap2019")
    ap.add_argument("--out", default="results/figures", type=Path)
    ap.add_argument("--activation", default="logistic", help="activation of the gradient-distribution figure")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log the figures to MLflow")
    a = ap.parse_args(argv)
    build(a.tracking_uri or tracking.default_uri(), a.experiment, a.out, a.activation, not a.no_mlflow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
