"""The config schema, its validation, and the config hash.

Hydra composes `conf/` on top of the dataclasses registered here (see `register_configs`), so a
misspelt key or a value of the wrong type fails at composition. Every number of the schema says
which values it accepts (`rule`); `validate` checks them all (NaN and inf are refused everywhere),
then what a rule per key cannot express (a known activation, depth = len(hidden), ...), and raises
`ConfigError` naming the key, the value and what is accepted, before anything trains or is written.

This module imports neither torch nor MLflow: a bad command line is answered in about a second.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict, read_write

# conf/ of the checkout (vgsweep/conf links to it), or of an installed vgsweep (its wheel holds the files there)
CONF_DIR = (Path(__file__).resolve().parent / "conf").resolve()


class ConfigError(ValueError):
    """A config value that cannot be trained; the message names key, value and what is accepted."""

    KIND = "config"

    def __init__(self, key: str, value: Any, accepted: str, hint: str = "", where: str = ""):
        self.key, self.value, self.accepted, self.hint, self.where = key, value, accepted, hint, where
        msg = f"invalid {self.KIND}{where}: {key}={value!r} is not accepted; expected {accepted}"
        super().__init__(msg + (f". {hint}" if hint else ""))


class Shown(str):
    """A value a ConfigError shows as written (no quotes): `depth=7`, `seed=(deleted)`."""

    def __repr__(self) -> str:
        return str(self)


class ArgumentError(ConfigError):
    """A bad argument of a results command (`vgsweep table --tracking-uri ...`): the same one line."""

    KIND = "argument"


def command_line(prog: str, description: str):
    """The argument parser of a vgsweep subcommand: what argparse itself refuses (an unknown option,
    a value that is not a number, a choice it does not offer) is one line, exit 2, as every other bad
    input; argparse would print its usage first."""
    import argparse
    import sys

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            sys.stderr.write(f"vgsweep: {message} ({self.prog} --help lists its arguments)\n")
            raise SystemExit(2)

    return Parser(prog=prog, description=description)


# --- accepted values of the numbers --------------------------------------------------------------
# Every int or float field of the schema carries one of these rules (`rule(default, name)`); a field
# without one accepts any finite number. NaN and inf are refused everywhere.
RULES: dict[str, tuple[Any, str]] = {
    "positive": (lambda v: v > 0, "a positive {kind}"),  # {kind}: int or float
    "non_negative": (lambda v: v >= 0, "{a} {kind} >= 0"),
    "unit_open": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "fraction": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "finite": (lambda v: True, "a finite {kind}"),
}


INT64_MAX = 2**63 - 1
# An MLP's most hidden layers: model.width makes a list of model.depth widths before validate reads them
# (model.depth=10**9 would hold the machine's memory first).
MAX_DEPTH = 10_000


def rule(default: Any, name: str, **kw: Any) -> Any:
    """A dataclass field whose value must satisfy RULES[name]."""
    assert name in RULES, name
    if isinstance(default, (list, dict)) and default is not MISSING:
        return field(default_factory=lambda: type(default)(default), metadata={"rule": name}, **kw)
    return field(default=default, metadata={"rule": name}, **kw)


class NoiseUnit(str, Enum):
    epoch = "epoch"  # t = 0-based epoch index (the original code)
    step = "step"  # t = 0-based optimiser step (Neelakantan et al. 2015)


class NoiseGives(str, Enum):
    std = "std"  # s_t is the standard deviation (the original code)
    variance = "variance"  # s_t is the variance (the paper's formula)


class BNPlacement(str, Enum):
    none = "none"
    last = "last"  # one layer after the last hidden activation, before the output (the paper)
    all = "all"  # after every hidden activation


class BNMode(str, Enum):
    frozen = "frozen"  # Keras inference mode: gamma * h / sqrt(1 + eps) + beta (the original code)
    batch = "batch"  # real batch norm: batch statistics in training, running ones in evaluation
    layer = "layer"  # layer normalisation: each example over its features, the same in both


class WNInit(str, Enum):
    weights = "weights"  # g = ||v||: the net starts as the init drew it
    data = "data"  # Salimans & Kingma's data-dependent init: each unit's pre-activation mean 0, std 1 on a batch


class Precision(str, Enum):
    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"


class Schedule(str, Enum):
    constant = "constant"
    cosine = "cosine"  # eta_min + (lr - eta_min) (1 + cos(pi t / t_max)) / 2, PyTorch's CosineAnnealingLR


class Every(str, Enum):
    epoch = "epoch"  # t counts epochs (0-based): the rate is constant within an epoch
    step = "step"  # t counts optimiser steps


class VGGNorm(str, Enum):
    none = "none"
    processing = "processing"  # BatchNorm2d after every conv of the processing blocks ("VGG38 BN")
    all = "all"  # ... and of the reduction blocks too ("VGG38 BN + RC")


class VGGSkip(str, Enum):
    none = "none"
    processing = "processing"  # x + f(x) around every processing block, added before its last activation


@dataclass
class ActivationConfig:
    name: str = "logistic"
    negative_slope: float = rule(0.2, "finite")  # leaky_relu only; 0.2 is TF's default (PyTorch's is 0.01)


@dataclass
class InitConfig:
    name: str = "xavier"
    std: float = rule(0.05, "non_negative")  # `normal` only: N(0, std^2) weights (Keras RandomNormal default)
    # xavier, he, torch_default: the drawn weights times gain (torch.nn.init's gain; the Theano tutorials
    # use 4 for the logistic, whose slope at 0 is a quarter of tanh's, for which Glorot & Bengio 2010
    # derived Xavier's scale). Biases are not scaled. normal has its std instead.
    gain: float = rule(1.0, "positive")


GAINLESS_INITS = ("normal", "zero")  # the schemes init.gain leaves as drawn (it is inert there)


@dataclass
class GradNoiseConfig:
    enabled: bool = False
    eta: float = rule(1.0, "non_negative")
    gamma: float = rule(0.55, "non_negative")
    unit: NoiseUnit = NoiseUnit.epoch
    gives: NoiseGives = NoiseGives.std


@dataclass
class BNConfig:
    placement: BNPlacement = BNPlacement.none
    mode: BNMode = BNMode.frozen
    eps: float = rule(1e-3, "positive")  # Keras default
    momentum: float = rule(0.99, "unit_open")  # running-statistics decay in `batch` mode (Keras convention)


@dataclass
class RegimeConfig:
    name: str = "baseline"
    grad_noise: GradNoiseConfig = field(default_factory=GradNoiseConfig)
    bn: BNConfig = field(default_factory=BNConfig)  # the MLP family's normalisation layers
    # Weight normalisation (Salimans & Kingma 2016) of every dense layer: W = g * v / ||v|| per
    # output unit, trained as direction v and length g.
    weight_norm: bool = False
    # How g (and the bias) start with weight_norm: `weights` (g = ||v||). To first order an SGD step on v
    # and g then moves W as a step on W would, so the run tracks the plain one closely; `data`
    # sets g and b so that each unit's pre-activation has mean 0 and std 1 on the first train.batch_size
    # training images, layer by layer (the paper's initialisation)
    wn_init: WNInit = WNInit.weights


@dataclass
class MLPConfig:
    """model=mlp: the feed-forward nets of Agarap et al. 2019 (depth=... picks the widths)."""

    family: str = "mlp"
    # Set by the depth group (conf/depth/*.yaml), which comes before the model in the defaults list.
    depth: int = rule(MISSING, "positive")  # number of hidden layers; must equal len(hidden)
    hidden: list[int] = rule(MISSING, "positive")
    # every hidden layer this wide, depth of them (settle makes hidden [width] * depth): any depth in one
    # override, `model.depth=50 model.width=256`, where hidden would be a list of 50. null: hidden as set
    width: Optional[int] = rule(None, "positive")
    double_softmax: bool = False  # softmax output fed to softmax cross-entropy (original code's bug)
    residual: bool = False  # h_{i+1} = f(W h_i + b) + h_i wherever a hidden layer keeps its width
    # s in h_{i+1} = s * f(W h_i + b) + h_i (residual: true). Each skip adds its branch's variance, so a deep
    # net's activations grow with depth at s = 1 (30 ReLU layers at Xavier init: NaN in the first epoch);
    # s = 1/sqrt(depth) holds them (as Fixup / SkipInit scale the branch)
    residual_scale: float = rule(1.0, "positive")


@dataclass
class VGGConfig:
    """model=vgg08 | vgg38 | vgg38_bn | vgg38_rc | vgg38_bn_rc: the course framework's ConvolutionalNetwork."""

    family: str = "vgg"
    name: str = "vgg08"  # the row label of the study's table
    blocks_per_stage: int = rule(0, "non_negative")  # processing blocks per stage: VGG08 0, VGG38 5
    stages: int = rule(3, "positive")  # each ends with a reduction block (2x2 average pool)
    filters: int = rule(32, "positive")  # channels of every convolution (3x3, padding 1)
    bn: VGGNorm = VGGNorm.none  # where BatchNorm2d goes, after the conv, before the activation
    residual: VGGSkip = VGGSkip.none  # where skip connections go
    entry_bn: bool = True  # the entry block's BatchNorm2d, there even in the "no BN" models
    bn_eps: float = rule(1e-5, "positive")  # PyTorch's BatchNorm2d defaults
    bn_momentum: float = rule(0.1, "fraction")  # PyTorch convention: running = (1 - m) running + m batch


@dataclass
class ScheduleConfig:
    name: Schedule = Schedule.constant
    eta_min: float = rule(0.0, "non_negative")  # cosine: the rate it anneals to
    every: Every = Every.epoch  # the unit of t
    t_max: Optional[int] = rule(None, "positive")  # cosine period / 2 in units of `every`; None = the whole training


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    lr: float = rule(3e-4, "positive")
    momentum: float = rule(0.9, "unit_open")  # sgd
    beta1: float = rule(0.9, "unit_open")  # adam
    beta2: float = rule(0.999, "unit_open")  # adam
    eps: float = rule(1e-7, "positive")  # adam (Keras default; PyTorch's is 1e-8)
    weight_decay: float = rule(0.0, "non_negative")  # L2: grad += weight_decay * w, as torch.optim.Adam/SGD
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class TrainConfig:
    epochs: int = rule(100, "positive")
    batch_size: int = rule(1024, "positive")
    drop_last: bool = True  # the original drops the last partial batch
    # null: each epoch a uniform permutation; B: TensorFlow's Dataset.shuffle(B) over the file's order, as the
    # original code shuffled (shuffle(2 x batch)); data/order.py
    shuffle_buffer: Optional[int] = rule(None, "positive")


@dataclass
class AugmentConfig:
    crop_padding: int = rule(0, "non_negative")  # random crop of the image zero-padded by this many pixels
    flip: bool = False  # random horizontal flip (p = 0.5)


@dataclass
class DataConfig:
    name: str = "mnist"
    root: str = "data"  # relative paths are taken from the directory the command was started in
    download: bool = True  # fetch through torchvision when the files are missing
    verify: bool = True  # check the known data sets' checksums and sizes before training
    input_noise_std: float = rule(0.05, "non_negative")  # fixed N(0, std^2) added once to the training inputs
    limit_train: Optional[int] = rule(None, "positive")  # use only the first N training examples (quick checks)
    limit_test: Optional[int] = rule(None, "positive")
    val_size: int = rule(0, "non_negative")  # hold out this many training examples for validation
    split_seed: int = rule(0, "non_negative")  # train = RandomState(split_seed).choice(N, N - val_size), in that order
    pad_to: Optional[int] = rule(None, "positive")  # zero-pad images to pad_to x pad_to (MNIST 28 -> 32 for the CNNs)
    mean: Optional[list[float]] = rule(None, "finite")  # per channel; images become (x - mean) / std
    std: Optional[list[float]] = rule(None, "positive")
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # None: MLFLOW_TRACKING_URI where set, else sqlite:///<project root>/mlflow.db
    experiment: str = "${study}"
    artifact_root: Optional[str] = None  # None: <dir of the sqlite file>/mlartifacts
    learning_curve: bool = True  # log a learning-curve PNG per run
    save_weights: bool = False  # log each run's trained parameters (model/weights.pt): vgsweep.saved.load_run
    heartbeat_s: float = rule(60.0, "positive")  # a training process stamps its RUNNING runs this often
    stale_after_s: float = rule(600.0, "non_negative")  # a RUNNING run with no stamp for this long is dead; 0 = never
    retry_s: float = rule(300.0, "positive")  # how long a store that does not answer (locked, full) is retried
    flush_s: float = rule(0.5, "positive")  # buffered metrics go to the store this often (by a writer thread)


@dataclass
class CheckpointConfig:
    every: int = rule(20, "non_negative")  # epochs between checkpoints; 0 = never
    dir: Optional[str] = None  # None: checkpoints/ beside the SQLite store (./checkpoints for a server)


@dataclass
class VerdictConfig:
    chance_factor: float = rule(1.5, "positive")  # not_learning: final test accuracy below chance_factor / classes
    vanish_ratio: float = rule(0.01, "positive")  # vanishing: first layer's mean |grad| below this x the last layer's
    collapse_ratio: float = rule(0.001, "positive")  # ... or its fall from the first epoch to the last, below this x the last layer's
    explode_norm: float = rule(1000.0, "positive")  # exploding: any layer's grad norm above this (or a NaN/inf loss)
    dead_fraction: float = rule(0.5, "fraction")  # dead_units: a hidden layer with more than this fraction dead


@dataclass
class DiagnosticsConfig:
    enabled: bool = True
    grad_samples: int = rule(4, "positive")  # steps per epoch whose gradients are measured (evenly spaced, last included)
    probe_examples: int = rule(10000, "positive")  # training examples in the end-of-epoch pass for saturated/dead units
    saturation_threshold: float = rule(0.01, "non_negative")  # a unit is saturated on an example when f'(z) < this
    hist_bins: int = rule(48, "positive")  # histogram of log10|g| per layer, last step of each epoch
    hist_min: float = rule(-10.0, "finite")
    hist_max: float = rule(2.0, "finite")
    metrics_every: int = rule(5, "positive")  # per-layer metrics go to MLflow every N epochs (all epochs: the artifact)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)


@dataclass
class Config:
    study: str = "agarap2019"  # names the MLflow experiment
    seed: int = rule(42, "finite")
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Precision = Precision.fp32
    deterministic: bool = False  # deterministic CUDA kernels (torch.use_deterministic_algorithms)
    cuda_graph: bool = True  # on CUDA, capture a pack's training step once and replay it (same numbers)
    compile: bool = False  # torch.compile the step's forward pass and update (fewer, fused kernels; rounds differently)
    rerun: bool = False  # train even if a FINISHED run of the same config is in the store
    objective: str = "test_acc"  # the final metric the job returns to Hydra: what a sweeper optimises
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    init: InitConfig = field(default_factory=InitConfig)
    regime: RegimeConfig = field(default_factory=RegimeConfig)
    model: Any = MISSING  # a model family's schema, from the `model` group (MLPConfig, VGGConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


# The schema of each model family (model.family -> dataclass); conf/model/<option>.yaml extends one.
MODEL_SCHEMAS: dict[str, type] = {"mlp": MLPConfig, "vgg": VGGConfig}


def register_configs() -> None:
    """Store the schemas so that conf/ can extend them (`defaults: [vgsweep_schema]`, `[mlp_schema]`)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="vgsweep_schema", node=Config)
    for family, schema in MODEL_SCHEMAS.items():
        cs.store(group="model", name=f"{family}_schema", node=schema)


# Settings that name a folder or file: `~` at their start is the home folder, as in a shell (a shell
# does not expand `data.root=~/data` everywhere: zsh leaves it, Hydra's grammar wants it quoted, a YAML
# file never expands it). tracking.uri: the path of a sqlite:/// URI.
HOME_PATHS = ("data.root", "checkpoint.dir", "tracking.artifact_root", "tracking.uri")


def expand_home(value: str) -> str:
    """A path setting's value with a leading `~` (or `~user`) made the home folder's path; a sqlite:///
    URI's path too. Any other value as it is."""
    if value.startswith("sqlite:///~"):
        return "sqlite:///" + os.path.expanduser(value[len("sqlite:///"):])
    return os.path.expanduser(value) if value.startswith("~") else value


def nonempty(value: str) -> str:
    """A command's text argument (argparse's type) that is not blank: `--out ''` wrote into the current folder,
    `--experiment ''` read every experiment, `vgsweep ui --host ''` listened on every address of the machine."""
    import argparse

    if not value.strip():
        raise argparse.ArgumentTypeError(f"{value!r} is not accepted; expected a value (leave the option out for "
                                         "its default)")
    return value


def home_path(value: str) -> Path:
    """A command's path argument (argparse's type), `~` expanded: a shell leaves `--out=~/results` as it
    is (it expands a `~` only at the start of a word), which made a folder named `~` in the current one."""
    return Path(expand_home(nonempty(value)))


def expand_home_paths(cfg: DictConfig) -> None:
    """expand_home on each of the config's HOME_PATHS, in place."""
    for key in HOME_PATHS:
        v = OmegaConf.select(cfg, key)
        if isinstance(v, str) and expand_home(v) != v:
            with read_write(cfg), open_dict(cfg):
                OmegaConf.update(cfg, key, expand_home(v), merge=False)


def short_decimal(x: float) -> float:
    """x, or the short decimal it is a few float roundings away from: Hydra's `range(0.1, 1, 0.1)` gives
    0.30000000000000004 (0.1 + 2 x 0.1), which the command line would write 0.3. Within 8 units in the last
    place of a decimal of at most 12 digits; anything else (an Optuna trial's 0.01567667719550607) as it is."""
    if isinstance(x, bool) or not isinstance(x, float) or not math.isfinite(x) or x == 0:
        return x
    s = float(f"{x:.12g}")
    return s if s != x and abs(s - x) <= 8 * math.ulp(x) else x


def settle_override(override: str) -> str:
    """A `key=value` override as its job runs it: a number short_decimal settles written as that decimal
    (`eta=0.30000000000000004`, from Hydra's range, is `eta=0.3`), the rest as it is."""
    key, eq, value = override.partition("=")
    try:
        x = float(value)
    except ValueError:
        return override
    s = short_decimal(x)
    return f"{key}={s!r}" if eq and s is not x else override  # is: nan != nan


def settle(cfg: DictConfig) -> None:
    """A job's config as it is run, recorded and hashed, in place: expand_home_paths, and each float
    (in a list too) that is a short decimal's neighbour by float arithmetic made that decimal, so that
    `eta=range(0.1,1,0.1)`'s third job is the config `eta=0.3` (one hash, one row of the table)."""
    expand_home_paths(cfg)
    m = cfg.get("model")
    if isinstance(m, DictConfig) and m.get("family") == "mlp" and isinstance(w := m.get("width"), int) and w > 0:
        depth = m.get("depth")
        if isinstance(depth, int) and 0 < depth <= MAX_DEPTH:  # else validate names model.depth
            with read_write(m), open_dict(m):
                m.hidden = [w] * depth
    for key, v in flatten(to_container(cfg)).items():
        new = [short_decimal(x) for x in v] if isinstance(v, list) else short_decimal(v)
        if new != v:
            with read_write(cfg), open_dict(cfg):
                OmegaConf.update(cfg, key, new, merge=False)


# Keys that do not change what a run computes: left out of the config hash, so the same experiment
# logged to another store, read from another data folder or run on another device is "the same".
# model.width: settle has written it into model.hidden, which the hash holds (`depth=30` is the config
# `model.depth=30 model.width=256`).
HASH_EXCLUDE = ("tracking", "data.root", "data.download", "data.verify", "device", "study", "rerun",
                "checkpoint", "deterministic", "diagnostics", "cuda_graph", "objective", "model.width")


def _zero(text: str) -> bool:
    try:
        return float(text) == 0
    except ValueError:
        return False


# Settings that do nothing under another setting's value: `init.std` unless init.name=normal, `init.gain`
# with normal or zero, the noise's schedule where there is no noise, ... The results leave them blank
# there: a table row is paired with the baseline that differs from it only in them, and a figure of
# such a setting draws those runs too (`vgsweep table`, `figures`).
def inert_keys(params: dict) -> set[str]:
    """The keys of a run's flattened params (MLflow's strings) whose value changes nothing it computes."""

    def get(k: str) -> str:
        return str(params.get(k, "")).lower()

    out = set()
    if get("init.name") != "normal":
        out.add("init.std")
    if get("init.name") in GAINLESS_INITS:
        out.add("init.gain")
    if get("activation.name") != "leaky_relu":
        out.add("activation.negative_slope")
    schedule = {"regime.grad_noise.gamma", "regime.grad_noise.unit", "regime.grad_noise.gives"}
    if get("regime.grad_noise.enabled") != "true":
        out |= schedule | {"regime.grad_noise.eta"}
    elif _zero(get("regime.grad_noise.eta")):
        out |= schedule
    if get("regime.bn.placement") in ("none", ""):
        out |= {"regime.bn.mode", "regime.bn.eps", "regime.bn.momentum"}
    elif get("regime.bn.mode") != "batch":
        out.add("regime.bn.momentum")  # running statistics are kept in batch mode only
    if get("optimizer.schedule.name") in ("constant", ""):
        out |= {"optimizer.schedule.eta_min", "optimizer.schedule.every", "optimizer.schedule.t_max"}
    if get("optimizer.name") == "sgd":  # optim.sgd_step reads lr and momentum only
        out |= {"optimizer.beta1", "optimizer.beta2", "optimizer.eps"}
    elif get("optimizer.name") == "adam":  # optim.update_of: lr, beta1, beta2, eps
        out.add("optimizer.momentum")
    if get("regime.weight_norm") != "true":
        out.add("regime.wn_init")
    if get("model.residual") != "true":  # an MLP's skips (a VGG's are model.residual: none | processing)
        out.add("model.residual_scale")
    if _zero(get("data.val_size")) or get("data.val_size") == "":  # no validation split to draw
        out.add("data.split_seed")
    return out


# What a job may return to Hydra (`objective`): a metric every run ends with, or one that a
# validation split (data.val_size > 0) gives it. What a sweeper such as Optuna optimises.
OBJECTIVES = ("test_acc", "test_loss", "train_acc", "train_loss")
VAL_OBJECTIVES = ("val_acc", "val_loss", "best_val_acc", "test_acc_at_best_val", "test_loss_at_best_val")


def higher_is_better(metric: str) -> bool:
    """An accuracy is maximised, a loss minimised (a sweeper's direction, a search's best trial)."""
    return metric.endswith("acc")


# Keys added after runs were first recorded: left out of the hash while they hold these values (the
# behaviour from before they existed), so older runs keep their hash and resumed sweeps skip them.
HASH_NEUTRAL: dict[str, Any] = {
    "compile": False,
    "regime.weight_norm": False,
    "model.family": "mlp",
    "optimizer.weight_decay": 0.0,
    "optimizer.schedule.name": "constant",
    "optimizer.schedule.eta_min": 0.0,
    "optimizer.schedule.every": "epoch",
    "optimizer.schedule.t_max": None,
    "data.val_size": 0,
    "data.split_seed": 0,
    "data.pad_to": None,
    "data.mean": None,
    "data.std": None,
    "data.augment.crop_padding": 0,
    "data.augment.flip": False,
    "train.shuffle_buffer": None,
    "init.gain": 1.0,
    "model.residual_scale": 1.0,
    "regime.wn_init": "weights",
}


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def resolve(cfg: DictConfig, where: str = "") -> None:
    """The config's interpolations resolved in place (`${study}`, `${hydra:job.num}`, `${oc.env:HOME}`); one
    that does not resolve is bad input: a ConfigError naming its key, the value as written and why."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:  # OmegaConf.resolve does not say where: the first key that fails
        why = str(e).strip().splitlines()[0]
        for key, raw in flatten(OmegaConf.to_container(cfg, resolve=False)).items():
            try:
                node = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
                if OmegaConf.is_config(node):  # a list: its items
                    OmegaConf.to_container(node, resolve=True)
            except OmegaConfBaseException:
                raise ConfigError(key, Shown(raw), "an interpolation that resolves", why, where) from None
        raise ConfigError("interpolation", Shown("?"), "one that resolves", why, where) from None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def excluded(key: str) -> bool:
    """Whether a flattened key is one that does not change what a run computes."""
    return any(key == x or key.startswith(x + ".") for x in HASH_EXCLUDE)


_INERT_DEFAULTS: dict[str, Any] = {}


def inert_defaults() -> dict[str, Any]:
    """The schema's default of every setting that may be inert (inert_keys): what such a setting is
    hashed as where it changes nothing. Every option of conf/ leaves its inert settings at these
    defaults (tests/test_config.py checks), so no config of theirs changes its hash for it."""
    if not _INERT_DEFAULTS:
        for prefix, schema in (("activation.", ActivationConfig), ("init.", InitConfig), ("regime.", RegimeConfig),
                               ("optimizer.", OptimizerConfig), ("data.", DataConfig)):
            _INERT_DEFAULTS.update(flatten(to_container(OmegaConf.structured(schema)), prefix))
        _INERT_DEFAULTS["model.residual_scale"] = MLPConfig.residual_scale  # the MLP schema's other keys are never inert
    return _INERT_DEFAULTS


def effective(flat: dict[str, Any]) -> dict[str, Any]:
    """A flattened config with each setting that changes nothing it computes (inert_keys: `init.std` of a
    xavier run, the noise schedule of a run without noise) at its default: what the run computes."""
    canon = inert_defaults()
    inert = inert_keys({k: str(v) for k, v in flat.items()})
    return {k: canon[k] if k in inert and k in canon else v for k, v in flat.items()}


def inert_differences(a: DictConfig, b: DictConfig) -> list[str]:
    """The settings two configs of one hash differ in (each inert where it is set), for saying why they
    are one config."""
    fa, fb = flatten(to_container(a)), flatten(to_container(b))
    return sorted(k for k in fa.keys() | fb.keys() if not excluded(k) and fa.get(k) != fb.get(k))


def config_hash(cfg: DictConfig) -> str:
    """sha256 (first 16 hex digits) of the resolved config without the keys in HASH_EXCLUDE, its inert
    settings at their defaults (effective): `init=xavier init.std=0.01` is the config `init=xavier`,
    trained once, the same run in the store and in the table."""
    return _hash(effective(flatten(to_container(cfg))))


def config_hashes(cfg: DictConfig) -> tuple[str, Optional[str]]:
    """(config_hash, the hash of vgsweep before 2026-12-05, which took inert settings as given, where it
    differs, else None), flattening the config once (Job.earlier_key: runs recorded so still count)."""
    flat = flatten(to_container(cfg))
    eff = effective(flat)
    return _hash(eff), (_hash(flat) if eff != flat else None)


def _hash(flat: dict[str, Any]) -> str:
    kept = {k: v for k, v in flat.items()
            if not excluded(k) and not (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k])}
    blob = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def enum_value(v: Any) -> Any:
    """The plain value of a config enum (OmegaConf hands enums back as Enum members)."""
    return v.value if isinstance(v, Enum) else v


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files in conf/<group>/, numbers in numeric order."""
    import re

    def natural(s: str) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]

    return sorted((p.stem for p in (CONF_DIR / group).glob("*.yaml")), key=natural)


# --- validation ----------------------------------------------------------------------------------
def _check_number(key: str, value: Any, rule_name: str | None, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return  # a type the schema already checked (a string, a bool)
    test, text = RULES[rule_name or "finite"]
    accepted = text.format(kind=kind.__name__, a="an" if kind is int else "a")
    if kind is float and not math.isfinite(value):
        raise ConfigError(key, value, accepted + " (NaN and inf are not)")
    if kind is int and abs(value) > INT64_MAX:  # torch, NumPy and MLflow's store hold no larger int
        raise ConfigError(key, value, accepted + f" of at most {INT64_MAX} in size (64 bits)")
    if not test(value):
        raise ConfigError(key, value, accepted)


def unknown_key(key: str, value: Any, known, missing: str | None = None) -> ConfigError:
    """A key the schema does not have (Hydra's `+key=value` adds one): vgsweep would read none of it.

    missing: the first part of `key` the schema lacks, where that is not `key` itself (`train.noise`
    of `train.noise.eta=1`); `known` are its parent's keys. The hint names a close sibling
    (`train.epoch` -> `train.epochs`), else a key of that name elsewhere (`train.lr` -> `optimizer.lr`)."""
    import difflib

    parent, _, name = (missing or key).rpartition(".")
    close = [parent + "." + c if parent else c for c in difflib.get_close_matches(name, list(known), n=1)]
    if not close:
        leaf = key.rpartition(".")[2]
        named = {p: p.rpartition(".")[2] for p in schema_keys()}
        near = difflib.get_close_matches(leaf, set(named.values()), n=1)
        close = [p for p, n in named.items() if n == leaf][:2] or [p for p, n in named.items() if n in near][:2]

    def whose(k: str) -> str:  # a key of another model family than this one (model.hidden with a VGG)
        if parent != "model" or k.rpartition(".")[2] in known:
            return ""
        return "model.family=" + " and ".join(f for f, sch in MODEL_SCHEMAS.items() if k in schema_keys(sch, "model."))

    expected = f"a key of {parent or 'the config'}: " + ", ".join(sorted(known))
    if (missing or key) in close:
        return ConfigError(key, value, expected, f"{missing or key} is a key of {whose(missing or key)} only")
    said = [f"{c} (a key of {whose(c)} only)" if whose(c) else c for c in close]
    return ConfigError(key, value, expected, f"did you mean {' or '.join(said)}?" if close else "vgsweep reads no other key")


def first_leaf(key: str, value: Any) -> tuple[str, Any]:
    """The first key under `value` with its value, named from `key`: (`train.noise`, {eta: 1}) ->
    (`train.noise.eta`, 1), as the command line or a file wrote it."""
    while isinstance(value, (dict, DictConfig)) and len(value):
        first = next(iter(value))
        key, value = f"{key}.{first}", value[first]
    return key, value


@functools.lru_cache(maxsize=None)
def type_hints(schema: type) -> dict[str, Any]:
    """A schema dataclass's field types, evaluated once: typing.get_type_hints compiles each of this
    module's annotations (strings, `from __future__ import annotations`) every call, 17% of a validate."""
    import typing

    return typing.get_type_hints(schema)


def schema_keys(schema: type | None = None, prefix: str = "") -> list[str]:
    """Every key of the training config's schema, dotted (under `model.`, every family's)."""
    schema = schema or Config
    keys: list[str] = []
    for name, hint in type_hints(schema).items():
        if dataclasses.is_dataclass(hint):
            keys += schema_keys(hint, f"{prefix}{name}.")
        elif schema is Config and name == "model":
            keys += dict.fromkeys(k for family in MODEL_SCHEMAS.values() for k in schema_keys(family, "model."))
        else:
            keys.append(prefix + name)
    return keys


def schema_hint(key: str) -> Any:
    """The type the training config's schema declares for a dotted key (under `model.`, that of the first
    family that has it); None for a key it does not have."""
    if key.startswith("model."):
        return next((h for family in MODEL_SCHEMAS.values() if (h := _hint_in(family, key[6:])) is not None), None)
    return _hint_in(Config, key)


def _hint_in(schema: Any, key: str) -> Any:
    for part in key.split("."):
        if not dataclasses.is_dataclass(schema):
            return None
        schema = type_hints(schema).get(part)
    return schema


def check_schema(node: Any, schema: type, prefix: str) -> None:
    """Check `node` against `schema`: no key it lacks, a list where it wants one, and every number
    against the rule its field declares (the training config's and the launcher's options alike: one
    place for what a value accepts)."""
    import typing

    hints = type_hints(schema)
    if isinstance(node, DictConfig):
        known = {f.name for f in dataclasses.fields(schema)}
        for k in node:
            if k not in known:
                raise unknown_key(*first_leaf(f"{prefix}{k}", node.get(k)), known, f"{prefix}{k}")
    for f in dataclasses.fields(schema):
        key, value = f"{prefix}{f.name}", node.get(f.name) if isinstance(node, DictConfig) else None
        hint = hints[f.name]
        if isinstance(node, DictConfig) and f.name not in node:  # Hydra's `~key` deletes one
            raise ConfigError(key, Shown("(deleted)"), "a value: vgsweep reads every key of its schema",
                              f"~{key} removed it; set it instead ({key}=...)")
        if dataclasses.is_dataclass(hint):
            check_schema(value, hint, key + ".")
            continue
        if value is None:
            continue
        base = hint
        if typing.get_origin(hint) is typing.Union:  # Optional[X] -> X
            base = next(a for a in typing.get_args(hint) if a is not type(None))
        item = typing.get_args(base)[0] if typing.get_origin(base) is list else None
        if item is not None and not isinstance(value, ListConfig):
            raise ConfigError(key, value, f"a list of {item.__name__}s, e.g. [{'64,64' if item is int else '0.5'}]")
        if isinstance(value, ListConfig):
            for i, v in enumerate(value):
                _check_number(f"{key}[{i}]", v, f.metadata.get("rule"), item or float)
        elif base in (int, float):
            _check_number(key, value, f.metadata.get("rule"), base)


def one_of(key: str, value: Any, options) -> None:
    if value not in options:
        raise ConfigError(key, value, "one of " + ", ".join(sorted(options)))


def validate(cfg: DictConfig, devices_here: bool = True) -> None:
    """Raise ConfigError for the first value that cannot be trained. Types were checked by Hydra.

    devices_here: also check `device` and `precision` against this machine's devices (check_device);
    false where the packs train on other machines (SLURM), which check them there. Imports nothing
    heavy unless the config asks for CUDA or a GPU precision."""
    from vgsweep.data.sets import DATASETS

    family = cfg.model.get("family") if isinstance(cfg.get("model"), DictConfig) else None
    if family not in MODEL_SCHEMAS:
        raise ConfigError("model.family", family, "one of " + ", ".join(MODEL_SCHEMAS),
                          "pick a model=... option")
    known = {f.name for f in dataclasses.fields(MODEL_SCHEMAS[family])}
    for k in cfg.model:
        if k in ("depth", "hidden", "width") and k not in known:
            raise ConfigError(f"model.{k}", cfg.model[k], f"a key of model.family={family}: " + ", ".join(sorted(known)),
                              "depth=... sets the MLP's widths; it does not apply to this family" if k == "depth"
                              else f"model.{k} (the MLP's widths) is a key of model.family=mlp only")
    check_schema(cfg, Config, "")
    check_schema(cfg.model, MODEL_SCHEMAS[family], "model.")
    for key in ("study", "tracking.experiment"):
        if not str(OmegaConf.select(cfg, key) or "").strip():
            raise ConfigError(key, OmegaConf.select(cfg, key), "a non-empty name", "it names the MLflow experiment")
    # A blank place, as a shell variable that is not set gives it (`tracking.uri=$STORE`): the runs went into
    # the project's own store as if it were null, the checkpoints into the folder the command ran in.
    for key, what in (("tracking.uri", "a URI, or null for MLFLOW_TRACKING_URI's store, else the project's mlflow.db"),
                      ("tracking.artifact_root", "a folder, or null for mlartifacts/ beside the store"),
                      ("checkpoint.dir", "a folder, or null for checkpoints/ beside the store"),
                      ("data.root", "a folder")):
        if isinstance(v := OmegaConf.select(cfg, key), str) and not v.strip():
            raise ConfigError(key, v, what)
    one_of("activation.name", cfg.activation.name, group_options("activation"))
    one_of("init.name", cfg.init.name, group_options("init"))
    one_of("optimizer.name", cfg.optimizer.name, group_options("optimizer"))
    one_of("data.name", cfg.data.name, DATASETS)
    if family == "mlp":
        hidden, width = list(cfg.model.hidden), cfg.model.get("width")
        if cfg.model.depth > MAX_DEPTH:
            raise ConfigError("model.depth", cfg.model.depth, f"a positive int of at most {MAX_DEPTH}")
        if not hidden:
            raise ConfigError("model.hidden", hidden, "a non-empty list of positive layer widths")
        if width is None and cfg.model.depth != len(hidden):  # with a width, hidden is made from it (settle)
            raise ConfigError("model.depth", cfg.model.depth, f"len(model.hidden) = {len(hidden)}",
                              "set both, or pick a depth=... option, or give every layer one width: "
                              f"model.width={max(hidden)}")
    else:
        if enum_value(cfg.regime.bn.placement) != "none" or cfg.regime.weight_norm:
            raise ConfigError("regime.name", cfg.regime.name, "a regime without regime.bn or weight_norm "
                              f"(baseline, gna) with model.family={family}",
                              "its batch norm and skips are model.bn and model.residual")
        if cfg.model.double_softmax if "double_softmax" in cfg.model else False:
            raise ConfigError("model.double_softmax", True, "false for this family")
    spec = DATASETS[cfg.data.name]
    for k, n in (("mean", spec.channels), ("std", spec.channels)):
        v = cfg.data[k]
        if v is not None and len(v) != n:
            raise ConfigError(f"data.{k}", list(v), f"null or {n} values, one per channel of {cfg.data.name}")
    if (cfg.data.mean is None) != (cfg.data.std is None):
        raise ConfigError("data.std" if cfg.data.std is None else "data.mean", None, "set together with "
                          + ("data.mean" if cfg.data.std is None else "data.std"))
    if cfg.data.pad_to is not None and cfg.data.pad_to < spec.shape[-1]:
        raise ConfigError("data.pad_to", cfg.data.pad_to, f"null or at least {spec.shape[-1]} ({cfg.data.name} "
                          f"images are {spec.shape[-2]}x{spec.shape[-1]})")
    if family == "vgg":  # each stage ends in a 2x2 average pool: past 1x1 the pool fails, after training started
        side = cfg.data.pad_to or min(spec.shape[-2:])
        if cfg.model.stages > (most := side.bit_length() - 1):
            sides = [side >> i for i in range(most + 1)]
            raise ConfigError("model.stages", cfg.model.stages, f"at most {most} for {side}x{side} images",
                              "each stage ends in a 2x2 average pool that halves them: "
                              + " -> ".join(map(str, sides)))
    if family == "mlp" and (cfg.data.augment.crop_padding or cfg.data.augment.flip):
        raise ConfigError("data.augment.crop_padding" if cfg.data.augment.crop_padding else "data.augment.flip",
                          cfg.data.augment.crop_padding or True, "0 / false for the MLP family",
                          "crops and flips act on images; the MLP sees flat vectors")
    side = cfg.data.pad_to or min(spec.shape[-2:])  # the image the crop is taken from
    if cfg.data.augment.crop_padding >= side:  # `crop_padding=40` for 4: crops of zeros, trained silently
        raise ConfigError("data.augment.crop_padding", cfg.data.augment.crop_padding,
                          f"at most {side - 1} for {cfg.data.name}'s {side}x{side} images",
                          "A crop from a larger padding may hold none of the image's pixels (4 is usual)")
    n_train = min(spec.n_train, cfg.data.limit_train or spec.n_train)
    one_of("objective", cfg.objective, OBJECTIVES + VAL_OBJECTIVES)
    if cfg.objective in VAL_OBJECTIVES and not cfg.data.val_size:
        raise ConfigError("objective", cfg.objective, "one of " + ", ".join(OBJECTIVES) + " without a validation split",
                          "set data.val_size (e.g. 5000) to tune on held-out training examples, not on the test set")
    if cfg.data.val_size >= n_train:
        raise ConfigError("data.val_size", cfg.data.val_size, f"fewer than the {n_train} training examples")
    if cfg.optimizer.schedule.eta_min > cfg.optimizer.lr:
        raise ConfigError("optimizer.schedule.eta_min", cfg.optimizer.schedule.eta_min,
                          f"at most optimizer.lr = {cfg.optimizer.lr:g}")
    if 0 < cfg.tracking.stale_after_s <= 2 * cfg.tracking.heartbeat_s:
        raise ConfigError("tracking.stale_after_s", cfg.tracking.stale_after_s,
                          f"0 (never) or more than 2 x tracking.heartbeat_s = {2 * cfg.tracking.heartbeat_s:g}",
                          "a live run would be taken for dead between two heartbeats")
    if cfg.regime.weight_norm and cfg.init.name == "zero":
        raise ConfigError("init.name", "zero", "xavier, he or normal when regime.weight_norm=true",
                          "weight normalisation divides each unit's weights by their norm, and zero has none")
    dg = cfg.diagnostics
    if not dg.hist_min < dg.hist_max:
        raise ConfigError("diagnostics.hist_max", dg.hist_max, f"a number above diagnostics.hist_min={dg.hist_min}")
    dev = str(cfg.device)
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError("device", dev, "auto, cpu, cuda or cuda:N")
    if cfg.precision != Precision.fp32 and dev == "cpu":
        raise ConfigError("precision", enum_value(cfg.precision), "fp32 on the CPU",
                          "tf32 and bf16 are GPU options")
    if devices_here:
        check_device(cfg)


def check_device(cfg: DictConfig) -> None:
    """The checks of `device` and `precision` against the devices of this machine: where the packs train.
    On a SLURM node each pack job makes them itself (executors.PackJob), not the login node."""
    dev = str(cfg.device)
    if not dev.startswith("cuda") and cfg.precision == Precision.fp32:
        return  # nothing to ask torch (not imported)
    import torch

    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device", dev, "auto or cpu", "no CUDA device is visible to torch")
        n = torch.cuda.device_count()
        if dev.startswith("cuda:") and int(dev[5:]) >= n:  # else every pack would fail on its first tensor
            raise ConfigError("device", dev, "cuda" + "".join(f", cuda:{i}" for i in range(n)) + " or cpu",
                              f"torch sees {n} CUDA device{'s' * (n != 1)} here"
                              + (f" (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']})"
                                 if "CUDA_VISIBLE_DEVICES" in os.environ else ""))
    if cfg.precision == Precision.fp32:
        return
    gpu = resolve_device(dev)
    if gpu.type != "cuda":
        raise ConfigError("precision", enum_value(cfg.precision), "fp32 on the CPU",
                          "tf32 and bf16 are GPU options, and torch sees no CUDA device here")
    major, minor = torch.cuda.get_device_capability(gpu)
    if (major, minor) < (8, 0):  # tf32 would quietly be fp32 there, and bf16 emulated, slower than fp32
        raise ConfigError("precision", enum_value(cfg.precision), "fp32 on this GPU",
                          f"{torch.cuda.get_device_name(gpu)} (compute capability {major}.{minor}) has no "
                          "TF32 or bfloat16 tensor cores; they need compute capability 8.0 (Ampere) or newer")


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
