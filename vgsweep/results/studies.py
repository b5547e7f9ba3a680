"""Study descriptions: what a study's table and figures are made of, and the published values.

A study names its axes (the params its rows and columns are keyed on, in display order), the metrics
its cells show, the baseline its deltas are taken against, the published values and the settings
under which they apply (the overrides that compose the published setting of a row), and its
figures. The table, figures and report read this; adding a study is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional


@dataclass(frozen=True)
class Axis:
    label: str  # column name in the table
    key: str  # the MLflow param
    order: tuple[str, ...] = ()  # preferred order of values (others follow, sorted)
    numeric: bool = False  # sort numerically


@dataclass(frozen=True)
class Metric:
    label: str  # column title
    key: str  # the MLflow metric (last value)
    scale: float = 1.0  # shown x scale (accuracies as %)
    digits: int = 2


@dataclass(frozen=True)
class Figure:
    kind: str  # curves | gradient_flow | gradient_flow_epochs | gradient_ratio | gradient_distribution | activations |
    #   search | results | deltas
    by: Optional[str] = None  # one figure per value of this axis (label)
    panel: tuple[str, ...] = ()  # one panel per value of these axes ("metric": one per metric)
    line: tuple[str, ...] = ()  # one line (results: one colour of markers) per value of these axes
    metrics: tuple[str, ...] = ()  # curves: the metrics shown
    x: tuple[str, ...] = ()  # results: one place on the x axis per value of these axes; gradient_ratio: its one
    #   numeric axis (depth)


@dataclass(frozen=True)
class Study:
    name: str  # the `study` config value (and default MLflow experiment name)
    title: str
    axes: tuple[Axis, ...]  # row keys of the table, in order; the first is the data set
    column: Optional[Axis]  # spread over the table's columns (None: one column block)
    metrics: tuple[Metric, ...]  # the first is the primary one (deltas, intervals, published difference)
    baseline: Optional[tuple[str, str]]  # (axis label, value): deltas against that row of the same other axes
    published: dict[tuple, dict[str, float]]  # (axis values as strings, in axes + column order) -> metric -> value
    paper_overrides: Callable[[dict], list[str]]  # a row's axis values -> the overrides of its published setting
    source: str  # the published values' source, for the footnote
    figures: tuple[Figure, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    published_notes: tuple[str, ...] = ()  # said only below a table that shows published values

    @property
    def all_axes(self) -> tuple[Axis, ...]:
        return self.axes + ((self.column,) if self.column else ())


ACTIVATIONS = ("logistic", "tanh", "relu", "leaky_relu", "swish")
REGIMES = ("baseline", "gna", "gna_bn")

# Agarap et al. 2019, Table 1 (test accuracy %, MNIST): (activation, regime) -> {depth: value}.
_AGARAP = {
    ("logistic", "baseline"): {2: 65.12, 5: 10.28}, ("logistic", "gna"): {2: 75.05, 5: 11.35},
    ("logistic", "gna_bn"): {2: 76.37, 5: 11.35},
    ("tanh", "baseline"): {2: 91.12, 5: 91.27}, ("tanh", "gna"): {2: 91.61, 5: 91.78},
    ("tanh", "gna_bn"): {2: 91.81, 5: 92.15},
    ("relu", "baseline"): {2: 91.62, 5: 88.65}, ("relu", "gna"): {2: 92.37, 5: 83.62},
    ("relu", "gna_bn"): {2: 92.49, 5: 84.40},
    ("leaky_relu", "baseline"): {2: 91.38, 5: 90.43}, ("leaky_relu", "gna"): {2: 92.02, 5: 83.34},
    ("leaky_relu", "gna_bn"): {2: 92.12, 5: 92.39},
    ("swish", "baseline"): {2: 89.95, 5: 37.18}, ("swish", "gna"): {2: 90.92, 5: 83.10},
    ("swish", "gna_bn"): {2: 91.03, 5: 91.65},
}

AGARAP = Study(
    name="agarap2019",
    title="Agarap et al. 2019: gradient noise and batch norm against vanishing gradients (MNIST MLPs)",
    axes=(Axis("dataset", "data.name"), Axis("regime", "regime.name", REGIMES),
          Axis("activation", "activation.name", ACTIVATIONS)),
    column=Axis("depth", "model.depth", numeric=True),
    metrics=(Metric("test accuracy (%)", "test_acc", 100.0),),
    baseline=("regime", "baseline"),
    published={("mnist", r, a, str(d)): {"test_acc": v} for (a, r), by_d in _AGARAP.items() for d, v in by_d.items()},
    paper_overrides=lambda row: [f"depth={row['depth']}", f"activation={row['activation']}", f"regime={row['regime']}",
                                 f"dataset={row['dataset']}"],
    source="Agarap et al. 2019, Table 1 (one run, seed 42)",
    figures=(Figure("curves", by="depth", panel=("activation",), line=("regime",), metrics=("train_loss", "train_acc")),
             Figure("gradient_flow", by="depth", panel=("regime",), line=("activation",)),
             Figure("gradient_ratio", panel=("regime",), line=("activation",), x=("depth",)),
             Figure("gradient_distribution", by="depth", panel=("regime",)),
             Figure("activations"),
             Figure("results", panel=("depth",), x=("activation",), line=("regime",)),
             Figure("deltas", panel=("depth",), x=("activation",), line=("regime",))),
)

VGG_ROWS = ("vgg08", "vgg38", "vgg38_bn", "vgg38_rc", "vgg38_bn_rc")
# The report's table (CIFAR-100; train loss, train acc %, val loss, val acc %; test acc % of the best model).
# VGG38's accuracy is printed as 0.01: read as a fraction (1%, chance with 100 classes), like its loss 4.61 = ln 100.
_VGG = {
    ("vgg08", "0.001"): (1.74, 51.59, 1.95, 46.84, None),
    ("vgg38", "0.001"): (4.61, 1.0, 4.61, 1.0, None),
    ("vgg38_bn", "0.01"): (1.70, 52.28, 1.99, 46.72, None),
    ("vgg38_bn", "0.001"): (1.82, 49.39, 2.12, 43.92, None),
    ("vgg38_rc", "0.001"): (1.33, 61.52, 1.84, 52.32, None),
    ("vgg38_bn_rc", "0.001"): (0.626, 80.43, 1.661, 59.0, None),
    ("vgg38_bn_rc", "0.01"): (0.524, 83.22, 1.85, 61.36, 61.09),
}
_VGG_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc_at_best_val")

VGG = Study(
    name="vgg_cifar100",
    title="VGG08 and VGG38 on CIFAR-100: batch norm and residual connections (MLP course framework)",
    axes=(Axis("dataset", "data.name"), Axis("model", "model.name", VGG_ROWS), Axis("lr", "optimizer.lr", numeric=True)),
    column=None,
    metrics=(Metric("val acc (%)", "val_acc", 100.0), Metric("val loss", "val_loss", 1.0, 3),
             Metric("train acc (%)", "train_acc", 100.0), Metric("train loss", "train_loss", 1.0, 3),
             Metric("test acc at best val (%)", "test_acc_at_best_val", 100.0)),
    baseline=None,
    published={("cifar100", m, lr): {k: v for k, v in zip(_VGG_KEYS, vals) if v is not None}
               for (m, lr), vals in _VGG.items()},
    paper_overrides=lambda row: ["experiment=vgg_cifar100", f"model={row['model']}", f"optimizer.lr={row['lr']}",
                                 f"dataset={row['dataset']}"],
    source="the VGG report's table (one run each; 60 K / 336 K / 339 K parameters); test accuracy only for its best model",
    figures=(Figure("curves", panel=("metric",), line=("model", "lr"),
                    metrics=("train_loss", "val_loss", "train_acc", "val_acc")),
             Figure("gradient_flow_epochs", panel=("model", "lr")),
             Figure("gradient_flow", line=("model", "lr")),
             Figure("results", x=("model", "lr"))),
    published_notes=("VGG38's published accuracy 0.01 is read as a fraction (1%: chance with 100 classes).",),
)

# Why the paper grid's cells come out as they do (issue 9): each one command, each its own experiment.
NOISE_SCALE = Study(
    name="noise_scale",
    title="The gradient noise's scale: gna with eta from 0 (no noise) to 1 (the original code's), MNIST MLPs",
    axes=(Axis("dataset", "data.name"), Axis("noise eta", "regime.grad_noise.eta", numeric=True),
          Axis("activation", "activation.name", ACTIVATIONS)),
    column=Axis("depth", "model.depth", numeric=True),
    metrics=(Metric("test accuracy (%)", "test_acc", 100.0),),
    baseline=("noise eta", "0.0"),
    published={}, paper_overrides=AGARAP.paper_overrides, source="",
    figures=(Figure("curves", by="depth", panel=("activation",), line=("noise eta",), metrics=("train_loss", "test_acc")),
             Figure("gradient_flow", by="depth", panel=("noise eta",), line=("activation",)),
             Figure("gradient_ratio", panel=("noise eta",), line=("activation",), x=("depth",)),
             Figure("results", panel=("depth",), x=("activation",), line=("noise eta",)),
             Figure("deltas", panel=("depth",), x=("activation",), line=("noise eta",))),
    notes=("eta = 0 is the same net and schedule without noise: the deltas are the noise's effect.",),
)

# Whether gradient noise still helps once the weights start larger (results/cpu-check: the noise helps the
# logistic nets by enlarging their weights): Xavier times init.gain, with and without the noise.
INIT_SCALE = Study(
    name="init_scale",
    title="The initial weights' scale: Xavier times a gain, without and with gradient noise (MNIST MLPs)",
    axes=(Axis("dataset", "data.name"), Axis("init gain", "init.gain", numeric=True),
          Axis("regime", "regime.name", REGIMES), Axis("activation", "activation.name", ACTIVATIONS)),
    column=Axis("depth", "model.depth", numeric=True),
    metrics=(Metric("test accuracy (%)", "test_acc", 100.0),),
    baseline=("regime", "baseline"),
    published={}, paper_overrides=AGARAP.paper_overrides, source="",
    figures=(Figure("curves", by="depth", panel=("activation",), line=("init gain", "regime"),
                    metrics=("train_loss", "test_acc")),
             Figure("gradient_flow", by="depth", panel=("init gain", "regime"), line=("activation",)),
             Figure("gradient_ratio", panel=("init gain", "regime"), line=("activation",), x=("depth",)),
             Figure("results", panel=("depth",), x=("activation",), line=("init gain", "regime")),
             Figure("deltas", panel=("depth",), x=("activation",), line=("init gain", "regime"))),
    notes=("Deltas are gna against baseline at the same gain: the noise's effect at that weight scale.",),
)

DOUBLE_SOFTMAX = Study(
    name="double_softmax",
    title="The original code's double softmax against the plain loss, on the paper grid (MNIST MLPs)",
    axes=(Axis("dataset", "data.name"), Axis("double softmax", "model.double_softmax", ("False", "True")),
          Axis("regime", "regime.name", REGIMES), Axis("activation", "activation.name", ACTIVATIONS)),
    column=Axis("depth", "model.depth", numeric=True),
    metrics=(Metric("test accuracy (%)", "test_acc", 100.0),),
    baseline=("regime", "baseline"),
    published={("mnist", ds, r, a, str(d)): {"test_acc": v}
               for ds in ("False", "True") for (a, r), by_d in _AGARAP.items() for d, v in by_d.items()},
    paper_overrides=lambda row: [*AGARAP.paper_overrides(row), f"model.double_softmax={row['double softmax'].lower()}"],
    source="Agarap et al. 2019, Table 1 (one run, seed 42), beside both variants",
    figures=(Figure("curves", by="depth", panel=("activation",), line=("double softmax", "regime"),
                    metrics=("train_loss", "test_acc")),
             Figure("results", panel=("depth",), x=("activation",), line=("double softmax", "regime")),
             Figure("deltas", panel=("depth",), x=("activation",), line=("double softmax", "regime"))),
)

# Table 1 as the original code ran each column (results/cpu-check/): its 2-layer scripts output
# logits, its 5-layer script a softmax fed to softmax cross-entropy. Same layout and published values.
AGARAP_AS_CODED = replace(
    AGARAP, name="agarap2019_as_coded",
    title="Agarap et al. 2019, Table 1 as its code ran it: 2-layer column plain loss, 5-layer column double softmax",
    paper_overrides=lambda row: [f"paper_column={row['depth']}", f"activation={row['activation']}",
                                 f"regime={row['regime']}", f"dataset={row['dataset']}"],
    source="Agarap et al. 2019, Table 1 (one run, seed 42); the 5-layer column's runs use the double softmax",
)

# A hyper-parameter search (experiment=lr_search, Optuna): one row per trial, in the order of its
# learning rate; the cells are the objective it was tuned on and the test accuracy of that epoch.
LR_SEARCH = Study(
    name="lr_search",
    title="SGD's learning rate and momentum, searched by Optuna on a validation split (MNIST MLPs)",
    axes=(Axis("dataset", "data.name"), Axis("regime", "regime.name", REGIMES),
          Axis("activation", "activation.name", ACTIVATIONS), Axis("depth", "model.depth", numeric=True),
          Axis("lr", "optimizer.lr", numeric=True), Axis("momentum", "optimizer.momentum", numeric=True)),
    column=None,
    metrics=(Metric("best val acc (%)", "best_val_acc", 100.0), Metric("test acc at best val (%)",
                                                                      "test_acc_at_best_val", 100.0)),
    baseline=None, published={}, paper_overrides=AGARAP.paper_overrides, source="",
    figures=(Figure("search", line=("activation",)),),
    notes=("Each row is one trial; the search chose its settings from the trials before it (Optuna's TPE).",),
)

STUDIES: dict[str, Study] = {s.name: s for s in (AGARAP, VGG, NOISE_SCALE, INIT_SCALE, DOUBLE_SOFTMAX,
                                                 AGARAP_AS_CODED, LR_SEARCH)}


def study_for(name: str, family: str = "mlp", params=None) -> Study:
    """The description of study `name`; an unknown name gets its family's study without published values,
    as does a known one whose layout needs a setting no run has (`params`: the runs' frame; a VGG trained
    into the MLP study, `vgsweep -m model=vgg08 study=agarap2019`, has no model.depth). Where no run logged
    the study's first metric (a validation accuracy, of runs trained without a validation split:
    `experiment=vgg_cifar100 data.val_size=0`), the test accuracy leads, and the metrics no run has are left
    out (the table showed `— ()` and n = 0)."""
    def has(key: str) -> bool:
        return params is None or (key in params and bool(params[key].notna().any()))

    def logged(metrics: tuple) -> tuple:
        if has(f"metric:{metrics[0].key}"):
            return metrics
        return (Metric("test accuracy (%)", "test_acc", 100.0),) + tuple(
            m for m in metrics[1:] if has(f"metric:{m.key}"))

    if name in STUDIES and all(has(a.key) for a in STUDIES[name].all_axes):
        known = STUDIES[name]
        metrics = logged(known.metrics)
        return known if metrics == known.metrics else replace(known, metrics=metrics)
    base = AGARAP if family == "mlp" else VGG
    return Study(name, f"{name} ({base.name}'s layout)", base.axes, base.column, logged(base.metrics), base.baseline,
                 {}, base.paper_overrides, "", base.figures)
