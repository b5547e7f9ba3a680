"""A job (one config of a sweep, one MLflow run) and what became of it. No torch, no MLflow."""

from __future__ import annotations

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
    # set by the planning step:
    hash: str = ""
    resume_run: Optional[str] = None  # MLflow run to continue
    resume_state: Optional[dict] = None  # its checkpoint

    def key(self) -> str:
        """The config hash (computed once)."""
        if not self.hash:
            from vgsweep.config import config_hash

            self.hash = config_hash(self.cfg)
        return self.hash

    @property
    def where(self) -> str:
        return f" in job [{' '.join(self.overrides)}]" if self.overrides else ""


@dataclass
class Outcome:
    status: str  # FINISHED | FAILED | SKIPPED (already FINISHED in the store, or running elsewhere)
    run_id: Optional[str]
    final: dict[str, float]  # last epoch's metrics
    reason: str = ""


def run_name(cfg: DictConfig) -> str:
    m = cfg.model
    if m.family == "mlp":
        return f"{cfg.data.name}-d{m.depth}-{cfg.activation.name}-{cfg.regime.name}-s{cfg.seed}"
    return f"{cfg.data.name}-{m.name}-lr{cfg.optimizer.lr:g}-{cfg.regime.name}-s{cfg.seed}"


class SweepStopped(Exception):
    """The sweep cannot go on (its store stopped answering); the message says what to do. Exit 3."""

    exit_code = 3
