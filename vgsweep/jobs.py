"""A job (one config of a sweep, one MLflow run) and what became of it. No torch, no MLflow."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig


@dataclass
class Job:
    cfg: DictConfig
    output_dir: Optional[Path] = None  # the job's Hydra output dir (holds .hydra/ and the log)
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides
    log_file: Optional[Path] = None  # per-epoch lines of this job are appended here
    hydra_later: bool = False  # its .hydra/ files are attached to its run by its own task call, later
    label: str = ""  # the swept settings its name does not show (`init=he`), set by the launcher
    # set by the planning step:
    hash: str = ""
    resume_run: Optional[str] = None  # MLflow run to continue
    resume_state: Optional[dict] = None  # its checkpoint
    queued_in: Optional[tuple[str, float]] = None  # (SLURM job id, submitted) of an earlier sweep's pack job for it

    def __post_init__(self) -> None:
        from vgsweep.config import settle, settle_override

        settle(self.cfg)  # `data.root=~/data`: the home folder's; range()'s 0.30000000000000004: 0.3
        # and so its overrides, where its label, the dry run's list and the run's overrides tag read them
        self.overrides = [settle_override(o) for o in self.overrides]

    @property
    def name(self) -> str:
        """Its MLflow run name: the config's name, then the swept settings that name does not show."""
        return run_name(self.cfg) + (f" {self.label}" if self.label else "")

    def key(self) -> str:
        """The config hash (computed once)."""
        if not self.hash:
            from vgsweep.config import config_hashes

            self.hash, self._earlier = config_hashes(self.cfg)
        return self.hash

    def earlier_key(self) -> Optional[str]:
        """The hash vgsweep gave this config before settings that do nothing in it (`init.std` of a xavier
        run) were hashed at their defaults, where that differs: the store's runs of it still count."""
        self.key()
        return getattr(self, "_earlier", None)  # None too where `hash` was given when the job was made

    @property
    def start_epoch(self) -> int:
        """The first epoch it trains, from 0: its checkpoint's epochs where it resumes."""
        return int(self.resume_state["epochs_done"]) if self.resume_state else 0

    @property
    def where(self) -> str:
        return f" in job [{' '.join(self.overrides)}]" if self.overrides else ""


@dataclass
class Outcome:
    status: str  # FINISHED | FAILED | SKIPPED (already FINISHED in the store, or running elsewhere)
    run_id: Optional[str]
    final: dict[str, float]  # last epoch's metrics
    reason: str = ""
    made_at: str = ""  # a skipped FINISHED run's vgsweep commit, where it is known and not this one's
    other_data: bool = False  # a skipped FINISHED run trained on other examples than the job's data gives now

    def label(self, job_name: str) -> str:
        """How a failure line names it: its run and its config's name (with the swept settings the name
        does not show: two runs of one name told apart), or the job when it failed before a run was made."""
        return f"run {self.run_id} ({job_name})" if self.run_id else f"{job_name} (no run was made)"


# The override keys a run name shows already (run_name), per model family.
NAMED = {"mlp": {"dataset", "data.name", "depth", "model.depth", "activation", "activation.name", "regime",
                 "regime.name", "seed"},
         "vgg": {"dataset", "data.name", "model", "model.name", "vgg_row", "optimizer.lr", "regime", "regime.name",
                 "seed"}}


def label(overrides: list[str], swept: list[str], family: str) -> str:
    """The swept settings among a job's overrides that its run name does not show (`shown`): `init=he`,
    `optimizer.lr=0.01568 optimizer.momentum=0.708` (an Optuna trial)."""
    given = override_values(overrides)
    out = []
    for k in swept:
        v = given.get(k)
        if v is None or k in NAMED.get(family, set()):
            continue
        out.append(f"{k}={shown(v)}")
    return " ".join(out)


def override_values(overrides: list[str]) -> dict[str, str]:
    """A job's `key=value` overrides as {key: value} (as written on the command line)."""
    return dict(o.split("=", 1) for o in overrides if "=" in o)


def widths(hidden) -> str:
    """An MLP's hidden widths as a dry run shows them: `512-512-256-256-128`; three or more equal widths in
    a row as one `256x20` (a 30-layer net's 30 widths made a line of 120 characters)."""
    parts, ws = [], [int(w) for w in hidden]
    i = 0
    while i < len(ws):
        j = i
        while j < len(ws) and ws[j] == ws[i]:
            j += 1
        parts += [f"{ws[i]}x{j - i}"] if j - i >= 3 else [str(w) for w in ws[i:j]]
        i = j
    return "-".join(parts)


def compact(v) -> str:
    """A list of ints as a param holds it, with three or more equal in a row, as widths() writes it (`[8, 8,
    8, ...]` of a 1000-layer net as `8x1000`); anything else as str() writes it."""
    s = str(v)
    if s.startswith("[") and re.fullmatch(r"\[\d+(, \d+)*\]", s):
        ws = s[1:-1].split(", ")
        if any(ws[i] == ws[i + 1] == ws[i + 2] for i in range(len(ws) - 2)):
            return widths(ws)
    return s


def shown(v) -> str:
    """A setting as names and tables show it: a long number to 4 significant digits (0.01568 for an
    Optuna trial's 0.01567667719550607; the params and table.csv keep every digit), a list of widths
    compact (`8x1000`), the rest as it is."""
    s = compact(v)
    if len(s) <= 8 or not any(c in s for c in ".eE"):
        return s
    try:
        return f"{float(s):.4g}"
    except ValueError:
        return s


def run_name(cfg: DictConfig) -> str:
    m = cfg.model
    if m.family == "mlp":
        return f"{cfg.data.name}-d{m.depth}-{cfg.activation.name}-{cfg.regime.name}-s{cfg.seed}"
    return f"{cfg.data.name}-{m.name}-lr{cfg.optimizer.lr:g}-{cfg.regime.name}-s{cfg.seed}"


class SweepStopped(Exception):
    """The sweep cannot go on (its store stopped answering); the message says what to do. Exit 3."""

    exit_code = 3
