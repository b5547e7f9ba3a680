"""Jobs: validate every config, group them into packs, train each pack, record each job in MLflow.

Both launchers end here: Hydra's basic launcher calls `run_jobs` with one job at a time (from the
task function in app.py), the packed launcher with all jobs of a sweep. One code path.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig

import vgsweep
from vgsweep import tracking
from vgsweep.config import ConfigError, config_hash, flatten, to_container, validate
from vgsweep.trainer import EpochReport, pack_key, train_pack

log = logging.getLogger(__name__)


@dataclass
class Job:
    cfg: DictConfig
    output_dir: Optional[Path] = None  # the job's Hydra output dir (holds .hydra/ and the log)
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides


@dataclass
class Outcome:
    status: str  # FINISHED | FAILED
    run_id: Optional[str]
    final: dict[str, float]  # last epoch's metrics
    reason: str = ""


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.data.name}-d{cfg.model.depth}-{cfg.activation.name}-{cfg.regime.name}-s{cfg.seed}"


def check_all(jobs: list[Job]) -> None:
    """Validate every job before any trains; the error names the job's overrides too."""
    for j in jobs:
        try:
            validate(j.cfg)
        except ConfigError as e:
            where = f" in job [{' '.join(j.overrides)}]" if j.overrides else ""
            raise ConfigError(e.key, e.value, e.accepted + where) from None


def group_packs(jobs: list[Job], max_pack: int | None = None) -> list[list[int]]:
    """Indices of jobs grouped by pack key, in first-seen order, each pack at most `max_pack`."""
    groups: dict[tuple, list[int]] = {}
    for i, j in enumerate(jobs):
        groups.setdefault(pack_key(j.cfg), []).append(i)
    packs = []
    for idx in groups.values():
        n = max_pack or len(idx)
        packs += [idx[i:i + n] for i in range(0, len(idx), n)]
    return packs


def _tags(job: Job, pack_size: int, device: str) -> dict[str, str]:
    return {
        tracking.TAG_HASH: config_hash(job.cfg),
        tracking.TAG_OVERRIDES: " ".join(job.overrides),
        "vgsweep.version": vgsweep.__version__,
        "vgsweep.git_commit": tracking.git_commit(),
        "vgsweep.torch_version": torch.__version__,
        "vgsweep.device": device,
        "vgsweep.pack_size": str(pack_size),
    }


def run_pack(jobs: list[Job]) -> list[Outcome]:
    """Train one pack and record every job of it as its own MLflow run."""
    from vgsweep.config import resolve_device
    from vgsweep.trainer import device_name

    device = device_name(resolve_device(jobs[0].cfg.device))
    loggers = []
    for j in jobs:
        uri = tracking.resolve_uri(j.cfg)
        client = tracking.client_for(uri)
        exp = tracking.experiment_id(client, j.cfg.tracking.experiment, tracking.artifact_root(uri, j.cfg))
        params = flatten(to_container(j.cfg))
        loggers.append(tracking.RunLogger(client, exp, run_name(j.cfg), params, _tags(j, len(jobs), device)))
        log.info("run %s: %s", loggers[-1].run_id, run_name(j.cfg))

    def on_epoch(r: EpochReport) -> None:
        for k, lg in enumerate(loggers):
            if r.metrics[k] is not None:
                lg.log_metrics({**r.metrics[k], "epoch_seconds": r.seconds}, step=r.epoch)
        done = [m for m in r.metrics if m is not None]
        best = max((m["test_acc"] for m in done), default=float("nan"))
        log.info("epoch %d/%d: %d runs, %.2f s, best test acc %.4f", r.epoch + 1,
                 jobs[0].cfg.train.epochs, len(done), r.seconds, best)

    try:
        result = train_pack([j.cfg for j in jobs], on_epoch=on_epoch)
    except Exception as e:  # noqa: BLE001 - every run of the pack is recorded as FAILED, then re-raised
        reason = f"{type(e).__name__}: {e}"
        for lg in loggers:
            lg.set_tags({"vgsweep.failure": reason[:5000]})
            lg.finish("FAILED")
        log.error("pack failed: %s\n%s", reason, traceback.format_exc())
        raise

    outcomes = []
    for j, lg, hist, div in zip(jobs, loggers, result.history, result.diverged_at):
        final = hist[-1] if hist else {}
        if j.cfg.tracking.learning_curve and hist:
            from vgsweep import plots

            fig = plots.learning_curve(hist, run_name(j.cfg))
            lg.log_figure(fig, "learning_curve.png")
            plots.close(fig)
        lg.log_config(j.cfg, j.output_dir / ".hydra" if j.output_dir else None)
        if div is None:
            lg.finish("FINISHED")
            outcomes.append(Outcome("FINISHED", lg.run_id, final))
        else:
            reason = f"training loss became non-finite at epoch {div}"
            lg.set_tags({"vgsweep.failure": reason, "vgsweep.failed_epoch": str(div)})
            lg.finish("FAILED")
            outcomes.append(Outcome("FAILED", lg.run_id, final, reason))
    return outcomes


def run_jobs(jobs: list[Job], max_pack: int | None = None) -> list[Outcome]:
    """Validate all jobs, then train them pack by pack. Returns one Outcome per job, in order."""
    check_all(jobs)
    outcomes: list[Optional[Outcome]] = [None] * len(jobs)
    for pack in group_packs(jobs, max_pack):
        for i, o in zip(pack, run_pack([jobs[i] for i in pack])):
            outcomes[i] = o
    return outcomes  # type: ignore[return-value]
