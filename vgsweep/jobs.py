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
    log_file: Optional[Path] = None  # per-epoch lines of this job are appended here


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


def group_packs(jobs: list[Job], max_pack: int | None = None, memory_budget_gb: float | None = None) -> list[list[int]]:
    """Indices of jobs grouped by pack key, in first-seen order; a pack holds at most `max_pack`
    runs and at most what fits the memory budget, split into near-equal parts."""
    from vgsweep.config import resolve_device
    from vgsweep.trainer import bytes_per_run, memory_budget

    groups: dict[tuple, list[int]] = {}
    for i, j in enumerate(jobs):
        groups.setdefault(pack_key(j.cfg), []).append(i)
    packs = []
    for idx in groups.values():
        cfg = jobs[idx[0]].cfg
        fit = max(1, memory_budget(resolve_device(cfg.device), memory_budget_gb) // bytes_per_run(cfg))
        n = min(max_pack or len(idx), fit, len(idx))
        parts = -(-len(idx) // n)  # ceil: as few packs as allowed, of near-equal size
        size = -(-len(idx) // parts)
        packs += [idx[i:i + size] for i in range(0, len(idx), size)]
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


def run_pack(jobs: list[Job], progress=None) -> list[Outcome]:
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

    files = [open(j.log_file, "a") if j.log_file else None for j in jobs]  # noqa: SIM115

    def on_epoch(r: EpochReport) -> None:
        for k, lg in enumerate(loggers):
            m = r.metrics[k]
            if m is not None:
                lg.log_metrics({**m, "epoch_seconds": r.seconds}, step=r.epoch)
                if files[k]:
                    files[k].write(f"epoch {r.epoch + 1}: " + " ".join(f"{n}={v:.6g}" for n, v in m.items())
                                   + f" (pack of {len(jobs)}, {r.seconds:.3f} s)\n")
        done = [m for m in r.metrics if m is not None]
        if progress is not None:
            progress.epoch_done(r.epoch, len(done))
        else:
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
    finally:
        for f in files:
            if f:
                f.close()

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


def run_jobs(jobs: list[Job], max_pack: int | None = None, memory_budget_gb: float | None = None,
             progress: str | None = None) -> list[Outcome]:
    """Validate all jobs, then train them pack by pack. Returns one Outcome per job, in order.

    progress: None logs every epoch (a single job); auto | bar | log show the sweep's progress."""
    from vgsweep.progress import Progress

    check_all(jobs)
    packs = group_packs(jobs, max_pack, memory_budget_gb)
    log.info("%d jobs in %d packs: %s", len(jobs), len(packs), ", ".join(str(len(p)) for p in packs))
    prog = Progress([(len(p), int(jobs[p[0]].cfg.train.epochs)) for p in packs], progress) if progress else None
    outcomes: list[Optional[Outcome]] = [None] * len(jobs)
    for pack in packs:
        for i, o in zip(pack, run_pack([jobs[i] for i in pack], prog)):
            outcomes[i] = o
        if prog:
            prog.pack_done()
    return outcomes  # type: ignore[return-value]
