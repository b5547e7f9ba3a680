"""The config schema, its validation, and the config hash.

Hydra composes `conf/` on top of the dataclasses registered here (see `register_configs`), so a
misspelt key or a value of the wrong type fails at composition. `validate` then checks what a
type cannot express (positive sizes, a known activation, ...) and raises `ConfigError` naming the
key, the value and what is accepted, before any training starts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value that cannot be trained; the message names key, value and what is accepted."""

    def __init__(self, key: str, value: Any, accepted: str, hint: str = "", where: str = ""):
        self.key, self.value, self.accepted, self.hint, self.where = key, value, accepted, hint, where
        msg = f"invalid config{where}: {key}={value!r} is not accepted; expected {accepted}"
        super().__init__(msg + (f". {hint}" if hint else ""))


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


class Precision(str, Enum):
    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"


@dataclass
class ActivationConfig:
    name: str = "logistic"
    negative_slope: float = 0.2  # leaky_relu only; 0.2 is TF's default (PyTorch's is 0.01)


@dataclass
class InitConfig:
    name: str = "xavier"
    std: float = 0.05  # `normal` only: N(0, std^2) weights (Keras RandomNormal default)


@dataclass
class GradNoiseConfig:
    enabled: bool = False
    eta: float = 1.0
    gamma: float = 0.55
    unit: NoiseUnit = NoiseUnit.epoch
    gives: NoiseGives = NoiseGives.std


@dataclass
class BNConfig:
    placement: BNPlacement = BNPlacement.none
    mode: BNMode = BNMode.frozen
    eps: float = 1e-3  # Keras default
    momentum: float = 0.99  # running-statistics decay in `batch` mode (Keras convention)


@dataclass
class RegimeConfig:
    name: str = "baseline"
    grad_noise: GradNoiseConfig = field(default_factory=GradNoiseConfig)
    bn: BNConfig = field(default_factory=BNConfig)
    # Weight normalisation (Salimans & Kingma 2016) of every dense layer: W = g * v / ||v|| per
    # output unit, trained as direction v and length g (g starts at ||v||, so the start is the init).
    weight_norm: bool = False


@dataclass
class ModelConfig:
    depth: int = 2  # number of hidden layers; must equal len(hidden)
    hidden: list[int] = field(default_factory=lambda: [512, 512])
    double_softmax: bool = False  # softmax output fed to softmax cross-entropy (original code's bug)
    residual: bool = False  # h_{i+1} = f(W h_i + b) + h_i wherever a hidden layer keeps its width


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 3e-4
    momentum: float = 0.9  # sgd
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    eps: float = 1e-7  # adam (Keras default)


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 1024
    drop_last: bool = True  # the original drops the last partial batch


@dataclass
class DataConfig:
    name: str = "mnist"
    root: str = "data"  # relative paths are taken from the directory the command was started in
    download: bool = True  # fetch through torchvision when the files are missing
    verify: bool = True  # check the known data sets' checksums and sizes before training
    input_noise_std: float = 0.05  # fixed N(0, std^2) added once to the training inputs
    limit_train: Optional[int] = None  # use only the first N training examples (quick checks)
    limit_test: Optional[int] = None


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # None: sqlite:///<project root>/mlflow.db
    experiment: str = "${study}"
    artifact_root: Optional[str] = None  # None: <dir of the sqlite file>/mlartifacts
    learning_curve: bool = True  # log a learning-curve PNG per run
    heartbeat_s: float = 60.0  # a training process stamps its RUNNING runs this often (tag vgsweep.heartbeat)
    stale_after_s: float = 600.0  # a RUNNING run with no stamp for this long is dead (any host); 0 = never


@dataclass
class CheckpointConfig:
    every: int = 20  # epochs between checkpoints; 0 = never
    dir: Optional[str] = None  # None: checkpoints/ beside the SQLite store (./checkpoints for a server)


@dataclass
class VerdictConfig:
    chance_factor: float = 1.5  # not_learning: final test accuracy below chance_factor / classes
    vanish_ratio: float = 0.01  # vanishing: first layer's mean |grad| below this fraction of the last layer's
    collapse_ratio: float = 0.001  # ... or below this fraction of its own first-epoch value at the end
    explode_norm: float = 1000.0  # exploding: any layer's grad norm above this (or a NaN/inf loss)
    dead_fraction: float = 0.5  # dead_units: a hidden layer with more than this fraction of dead units


@dataclass
class DiagnosticsConfig:
    enabled: bool = True
    grad_samples: int = 4  # steps per epoch whose gradients are measured (evenly spaced, last included)
    probe_examples: int = 10000  # training examples in the end-of-epoch pass for saturated/dead units
    saturation_threshold: float = 0.01  # a unit is saturated on an example when f'(z) is below this
    hist_bins: int = 48  # histogram of log10|g| per layer, last step of each epoch
    hist_min: float = -10.0
    hist_max: float = 2.0
    metrics_every: int = 5  # per-layer metrics go to MLflow every N epochs (all epochs: the artifact)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)


@dataclass
class Config:
    study: str = "agarap2019"  # names the MLflow experiment
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Precision = Precision.fp32
    deterministic: bool = False  # deterministic CUDA kernels (torch.use_deterministic_algorithms)
    rerun: bool = False  # train even if a FINISHED run of the same config is in the store
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    init: InitConfig = field(default_factory=InitConfig)
    regime: RegimeConfig = field(default_factory=RegimeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


def register_configs() -> None:
    """Store the schema so that `conf/config.yaml` can extend it (`defaults: [vgsweep_schema]`)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="vgsweep_schema", node=Config)


# Keys that do not change what a run computes: left out of the config hash, so the same experiment
# logged to another store, read from another data folder or run on another device is "the same".
HASH_EXCLUDE = ("tracking", "data.root", "data.download", "data.verify", "device", "study", "rerun",
                "checkpoint", "deterministic", "diagnostics")


# Keys added after runs were first recorded: left out of the hash while they hold these values (the
# behaviour from before they existed), so older runs keep their hash and resumed sweeps skip them.
HASH_NEUTRAL = {"regime.weight_norm": False}


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_hash(cfg: DictConfig) -> str:
    """sha256 (first 16 hex digits) of the resolved config without the keys in HASH_EXCLUDE."""
    flat = flatten(to_container(cfg))
    kept = {k: v for k, v in flat.items() if not any(k == x or k.startswith(x + ".") for x in HASH_EXCLUDE)
            and not (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k])}
    blob = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _positive(key: str, value: Any, kind: type = int) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
        raise ConfigError(key, value, f"a positive {kind.__name__}")


def _non_negative(key: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(key, value, "a number >= 0")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value that cannot be trained. Types were checked by Hydra."""
    from vgsweep.data import DATASETS
    from vgsweep.nn import ACTIVATIONS, INITS
    from vgsweep.optim import OPTIMIZERS

    def one_of(key: str, value: Any, options) -> None:
        if value not in options:
            raise ConfigError(key, value, "one of " + ", ".join(sorted(options)))

    one_of("activation.name", cfg.activation.name, ACTIVATIONS)
    one_of("init.name", cfg.init.name, INITS)
    one_of("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    one_of("data.name", cfg.data.name, DATASETS)
    _positive("train.epochs", cfg.train.epochs)
    _positive("train.batch_size", cfg.train.batch_size)
    _positive("optimizer.lr", cfg.optimizer.lr, float)
    if not 0.0 <= cfg.optimizer.momentum < 1.0:
        raise ConfigError("optimizer.momentum", cfg.optimizer.momentum, "a number in [0, 1)")
    for k in ("beta1", "beta2"):
        if not 0.0 <= cfg.optimizer[k] < 1.0:
            raise ConfigError(f"optimizer.{k}", cfg.optimizer[k], "a number in [0, 1)")
    _positive("optimizer.eps", cfg.optimizer.eps, float)
    hidden = list(cfg.model.hidden)
    if not hidden:
        raise ConfigError("model.hidden", hidden, "a non-empty list of positive layer widths")
    for i, h in enumerate(hidden):
        _positive(f"model.hidden[{i}]", h)
    if cfg.model.depth != len(hidden):
        raise ConfigError("model.depth", cfg.model.depth, f"len(model.hidden) = {len(hidden)}",
                          "set both, or pick a depth=... option")
    _non_negative("data.input_noise_std", cfg.data.input_noise_std)
    for k in ("limit_train", "limit_test"):
        if cfg.data[k] is not None:
            _positive(f"data.{k}", cfg.data[k])
    gn = cfg.regime.grad_noise
    _non_negative("regime.grad_noise.eta", gn.eta)
    _non_negative("regime.grad_noise.gamma", gn.gamma)
    _positive("regime.bn.eps", cfg.regime.bn.eps, float)
    if not 0.0 <= cfg.regime.bn.momentum < 1.0:
        raise ConfigError("regime.bn.momentum", cfg.regime.bn.momentum, "a number in [0, 1)")
    _non_negative("init.std", cfg.init.std)
    _positive("tracking.heartbeat_s", cfg.tracking.heartbeat_s, float)
    _non_negative("tracking.stale_after_s", cfg.tracking.stale_after_s)
    if 0 < cfg.tracking.stale_after_s <= 2 * cfg.tracking.heartbeat_s:
        raise ConfigError("tracking.stale_after_s", cfg.tracking.stale_after_s,
                          f"0 (never) or more than 2 x tracking.heartbeat_s = {2 * cfg.tracking.heartbeat_s:g}",
                          "a live run would be taken for dead between two heartbeats")
    if cfg.regime.weight_norm and cfg.init.name == "zero":
        raise ConfigError("init.name", "zero", "xavier, he or normal when regime.weight_norm=true",
                          "weight normalisation divides each unit's weights by their norm, and zero has none")
    dg = cfg.diagnostics
    for k in ("grad_samples", "probe_examples", "hist_bins", "metrics_every"):
        _positive(f"diagnostics.{k}", dg[k])
    if not dg.hist_min < dg.hist_max:
        raise ConfigError("diagnostics.hist_max", dg.hist_max, f"a number above diagnostics.hist_min={dg.hist_min}")
    for k in ("chance_factor", "vanish_ratio", "collapse_ratio", "explode_norm", "dead_fraction"):
        _non_negative(f"diagnostics.verdict.{k}", dg.verdict[k])
    if cfg.checkpoint.every < 0:
        raise ConfigError("checkpoint.every", cfg.checkpoint.every, "an int >= 0 (0 = no checkpoints)")
    dev = str(cfg.device)
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError("device", dev, "auto, cpu, cuda or cuda:N")
    if dev.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device", dev, "auto or cpu", "no CUDA device is visible to torch")
    if cfg.precision != Precision.fp32 and resolve_device(dev).type != "cuda":
        raise ConfigError("precision", enum_value(cfg.precision), "fp32 on the CPU",
                          "tf32 and bf16 are GPU options")


def enum_value(v: Any) -> Any:
    """The plain value of a config enum (OmegaConf hands enums back as Enum members)."""
    return v.value if isinstance(v, Enum) else v


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
